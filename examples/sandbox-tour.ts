/**
 * npm run demo:sandbox — what a sandbox looks like from inside, and what it refuses.
 * The launcher the plugins run on, without the plugin host (npm run demo shows that).
 */
import { Sandbox } from '../lib/sandbox/sandbox';
import type { SpawnOptions } from '../lib/sandbox/types';

async function show(title: string, options: SpawnOptions): Promise<void> {
  const sb = Sandbox.spawn({ stdio: ['ignore', 'pipe', 'pipe'], ...options });
  let out = '';
  const drained = [sb.stdout!, sb.stderr!].map((s) => new Promise((resolve) => s.setEncoding('utf8').on('data', (d: string) => (out += d)).on('end', resolve)));
  // `exited` can come before the pipes are drained: wait for both.
  const [r] = await Promise.all([sb.exited, ...drained]);
  const verdict = r.violation ? `killed: ${r.violation.kind} violation (syscall ${r.violation.syscall})` : r.signal ? `killed by ${r.signal}` : `exit ${r.code}`;
  process.stdout.write(`\n== ${title}\n${out.trimEnd().replace(/^/gm, '   ')}\n   -> ${verdict}\n`);
}

async function main(): Promise<void> {
  const sh = (script: string): SpawnOptions => ({ command: ['/bin/sh', '-c', script] });
  process.stdout.write(`warden demo, host uid ${process.getuid?.()}${process.getuid?.() === 0 ? ' (root: the sandbox maps to a host uid of its own)' : ' (unprivileged: through a user namespace)'}\n`);
  await show('who am I, where am I', sh('echo "uid $(id -u), hostname $(hostname), pid $$"; echo "processes: $(ls /proc | grep -cE "^[0-9]+$")"; echo "network: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " ")"'));
  await show('the filesystem: system dirs read-only, host files invisible', sh('ls /; touch /usr/evil 2>&1; cat /etc/shadow 2>&1; ls /home 2>&1; echo ok > /tmp/scratch && echo "/tmp is private and writable"'));
  await show('privileges: none', sh('grep -E "^(CapEff|CapBnd|NoNewPrivs|Seccomp):" /proc/self/status'));
  await show('an escape attempt: a new user namespace (seccomp violation, reported by name)', sh('echo trying; unshare -Ur id'));
  await show('the strict profile (an allow-list)', { command: ['/bin/ls', '-d', '/usr'], seccomp: 'strict' });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

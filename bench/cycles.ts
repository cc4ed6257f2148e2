/**
 * npm run bench:cycles — N spawn/exit cycles with cgroup limits (default 1000), then what is left:
 * fds of this process, sandbox cgroups, and processes whose parent is this process. All three must
 * be back where they started; exits 1 otherwise.
 */
import * as fs from 'node:fs';
import { Sandbox } from '../lib/sandbox/sandbox';
import { listSandboxCgroups } from '../lib/limits';

const N = Number(process.env.WARDEN_CYCLES ?? 1000);

function children(): number {
  let n = 0;
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === process.pid) n++;
    } catch {
      /* gone */
    }
  }
  return n;
}

async function main(): Promise<void> {
  const fdTargets = () => fs.readdirSync('/proc/self/fd').map((fd) => {
    try {
      return `${fd} → ${fs.readlinkSync(`/proc/self/fd/${fd}`)}`;
    } catch {
      return `${fd} (closed while listed)`;
    }
  });
  // After a pause: what the last teardown closes a moment later (Node's own handles) is not counted.
  const settle = () => new Promise((resolve) => setTimeout(resolve, 100));
  const snapshot = async () => {
    await settle();
    const fds = fdTargets();
    return { fds: fds.length, fdList: fds, cgroups: listSandboxCgroups().length, children: children() };
  };
  // One warm-up spawn: the addon, the seccomp programs and the cgroup layout are loaded once.
  await Sandbox.spawn({ command: ['/bin/true'], stdio: ['ignore', 'ignore', 'ignore'], limits: { memory: '64M', pids: 16 } }).exited;
  const before = await snapshot();
  const t0 = Date.now();
  for (let i = 0; i < N; i++) {
    const sb = Sandbox.spawn({ command: ['/bin/sh', '-c', 'sleep 0 & exit 0'], stdio: ['ignore', 'ignore', 'ignore'], limits: { memory: '64M', pids: 16 } });
    const r = await sb.exited;
    if (r.code !== 0) throw new Error(`cycle ${i}: exit ${JSON.stringify(r)}`);
  }
  const ms = Date.now() - t0;
  const after = await snapshot();
  process.stdout.write(`${N} spawn/exit cycles with memory and pids limits in ${ms} ms (${(ms / N).toFixed(2)} ms each)\n`);
  process.stdout.write(`fds ${before.fds} -> ${after.fds}; sandbox cgroups ${before.cgroups} -> ${after.cgroups}; child processes ${before.children} -> ${after.children}\n`);
  const ok = after.fds === before.fds && after.cgroups === 0 && after.children === 0;
  if (after.fds !== before.fds) {
    process.stdout.write(`fds only before: ${before.fdList.filter((f) => !after.fdList.includes(f)).join(', ') || '-'}\n`);
    process.stdout.write(`fds only after: ${after.fdList.filter((f) => !before.fdList.includes(f)).join(', ') || '-'}\n`);
  }
  process.stdout.write(ok ? 'nothing left behind\n' : 'LEAK\n');
  process.exitCode = ok ? 0 : 1;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

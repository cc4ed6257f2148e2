/**
 * The host that the crash test kills: a PluginHost over a test world (its config comes as JSON in
 * argv[2]), watching its plugins and trust list (hot reload), with an audit log and checkpoint, and
 * calling every plugin in a loop. It reports on stdout, one JSON object a line:
 *   { pids: [...] }            each time it sees a plugin's sandbox pid it had not reported yet
 *   { active: N, statuses }    after start() and then every 200 ms
 * It never exits by itself: the test kills it.
 */
import { PluginHost } from '../../lib/plugins';
import { TrustStore, loadPublicKey } from '../../lib/trust';

interface Config {
  pluginsDir: string;
  trustFile: string;
  statePath: string;
  auditPath: string;
  checkpointPath: string;
  publicKey: string;
}

async function main(): Promise<void> {
  const c = JSON.parse(process.argv[2]!) as Config;
  const key = await loadPublicKey(c.publicKey);
  const host = new PluginHost({
    pluginDirs: [c.pluginsDir],
    trust: { store: new TrustStore({ anchor: { keys: [key], threshold: 1 }, statePath: c.statePath }), file: c.trustFile },
    hostApiVersion: '1.2.0',
    hooks: [{ name: 'ping', mode: 'parallel', timeout: 5000 }],
    audit: c.auditPath,
    auditCheckpoint: c.checkpointPath,
    watch: { debounceMs: 20 },
  });
  const seen = new Set<number>();
  const report = () => {
    const infos = host.plugins();
    const fresh = infos.map((p) => p.pid).filter((pid): pid is number => pid !== undefined && !seen.has(pid));
    for (const pid of fresh) seen.add(pid);
    if (fresh.length > 0) process.stdout.write(`${JSON.stringify({ pids: fresh })}\n`);
    return infos;
  };
  const timer = setInterval(report, 20);
  // Calls under way at every moment: the kill may land in the middle of one.
  let calls = 0;
  const load = async (): Promise<void> => {
    for (;;) {
      await host.invoke('ping', []).catch(() => undefined);
      calls++;
      await new Promise((r) => setImmediate(r));
    }
  };
  await host.start();
  void load();
  const status = () => {
    const infos = report();
    process.stdout.write(`${JSON.stringify({ active: infos.filter((p) => p.status === 'active').length, statuses: infos.map((p) => `${p.name}@${p.version ?? '?'}:${p.status}`), calls })}\n`);
  };
  status();
  setInterval(status, 200);
  void timer;
}

main().catch((e) => {
  process.stderr.write(`crash-host: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});

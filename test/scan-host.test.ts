/**
 * The plugin host scans each plugin version at load, once per digest, and audits the summary as a
 * `scan` line; the load does not wait for it and is never refused by it.
 */
import t from 'tap';
import { readAuditLog } from '../lib/audit';
import { PluginWorld } from './helpers/plugins';

async function scanLines(w: PluginWorld, plugin: string) {
  return (await readAuditLog(w.auditPath, { plugin, event: 'scan' })).events;
}

t.test('a scan line at load, once per digest; the load is not refused by it', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  // Uses fs and exec, requests (and is granted) only net:outbound: the scan says so, the load goes on.
  w.writePlugin('sneaky', {
    code: `const cp = require('child' + '_process');\nexports.activate = (host) => host.hook('greet', () => require('fs').existsSync('/'));\n`,
    hooks: ['greet'], permissions: ['net:outbound'],
  });
  w.writePlugin('quiet', { code: `exports.activate = () => {};\n` });
  await w.trust('sneaky', { permissions: ['net:outbound'] });
  await w.trust('quiet');
  await w.publish();
  const host = w.host({ hooks: [{ name: 'greet', mode: 'parallel' }] });
  t.teardown(() => host.close());
  await host.start();
  t.equal(host.status('sneaky'), 'active', 'a scan is advice: the plugin loads');

  let lines = await scanLines(w, 'sneaky');
  const end = Date.now() + 20_000;
  while (lines.length === 0 && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    lines = await scanLines(w, 'sneaky');
  }
  t.equal(lines.length, 1, 'one scan line');
  const s = lines[0]!;
  t.equal(s.severity, 'notice', 'used but not requested: notice');
  t.equal(s.version, '1.0.0');
  t.match(s.details, { cached: false, implied: ['fs:*', 'sys:exec'], usedNotRequested: ['fs:*', 'sys:exec'], requestedUnused: ['net:outbound'], complete: true });
  t.match(s.details?.digest, /^sha3-512:/);

  let quiet = await scanLines(w, 'quiet');
  while (quiet.length === 0 && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    quiet = await scanLines(w, 'quiet');
  }
  t.equal(quiet[0]?.severity, 'info');
  t.match(quiet[0]?.details, { findings: 0, implied: [], usedNotRequested: [], risky: 0 });

  // The scan feeds the reputation: two capabilities used but not requested, at -10 each; the
  // non-literal-looking require('child' + '_process') folds to a constant, so nothing risky.
  const rep = host.plugins().find((p) => p.name === 'sneaky')?.reputation;
  t.match(rep?.contributions.find((c) => c.signal === 'used but not requested'), { value: 'fs:*, sys:exec', points: -20 }, 'the scan is a signal of the reputation');
  t.match(host.plugins().find((p) => p.name === 'quiet')?.reputation?.contributions.find((c) => c.signal === 'used but not requested'), { value: 'none', points: 0 });

  // The same bytes again: from the cache, at once.
  await host.reload('sneaky');
  lines = await scanLines(w, 'sneaky');
  t.equal(lines.length, 2);
  t.equal(lines[1]?.details?.cached, true, 'a reload of the same digest is not scanned again');
});

t.test('scanAtLoad: false scans nothing', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('quiet', { code: `exports.activate = () => {};\n` });
  await w.trust('quiet');
  await w.publish();
  const host = w.host({ scanAtLoad: false });
  await host.start();
  t.equal(host.status('quiet'), 'active');
  await new Promise((r) => setTimeout(r, 500));
  await host.close();
  t.same(await scanLines(w, 'quiet'), []);
});

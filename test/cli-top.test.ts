/** `warden top` against a live host's dashboard. */
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';

import { PluginWorld } from './helpers/plugins';

const run = promisify(execFile);
const BIN = path.join(__dirname, '..', '..', 'bin', 'warden');

t.test('warden top shows the plugins of a running host', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('greeter', { code: `exports.activate = (h) => { h.hook('work', () => 'hi'); };`, hooks: ['work'] });
  await w.trust('greeter');
  await w.publish();
  const host = w.host({ hooks: [{ name: 'work', mode: 'parallel' }], dashboard: { token: 'a-token-of-sixteen-chars' } });
  t.teardown(() => host.close());
  await host.start();
  for (let i = 0; i < 3; i++) await host.invoke('work');
  const base = host.dashboard.url!.split('/?')[0]!;
  const { stdout } = await run(BIN, ['top', '--url', base, '--token', 'a-token-of-sixteen-chars', '--once']);
  t.match(stdout, /^1 plugins, 1 sandboxes, 0 failed, 0 quarantined/, 'the summary');
  const line = stdout.split('\n').find((l) => l.startsWith('greeter'));
  t.match(line, /^greeter\s+active\s+\S+\s+\S+ \/ \S+\s+\S+\s+\S+\s+3\s+0\s/, `greeter active with 3 calls, 0 errors: ${line}`);
  const wrong = await run(BIN, ['top', '--url', base, '--token', 'not-the-token-at-all', '--once']).then(() => undefined, (e: { code: number; stderr: string }) => e);
  t.equal(wrong?.code, 1, 'a wrong token: exit 1');
  t.match(wrong?.stderr, /401 \(wrong token\)/);
});

t.test('the dashboard option refuses a non-loopback address and a short token', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  await w.publish();
  const host = w.host();
  t.teardown(() => host.close());
  await t.rejects(host.dashboard.listen({ host: '0.0.0.0' }), { code: 'ERR_INVALID_OPTION', field: 'dashboard.host' });
  await t.rejects(host.dashboard.listen({ token: 'short' }), { code: 'ERR_INVALID_OPTION', field: 'dashboard.token' });
});

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

t.test('warden top escapes what the dashboard answers: it may be any process at --url', async (t) => {
  const { formatTop } = await import('../lib/cli/top');
  const evil = {
    at: 0,
    host: { sandboxes: '\u001b]0;owned\u0007', byStatus: { failed: '\u001b[2J' }, violations24h: 0, critical24h: 0 },
    plugins: [
      {
        name: 'a\u202egnp.exe', status: 'active\u001b[31m', cpu: { cores: '\u001b[1A' }, memory: { bytes: 1048576, limitBytes: '\u2066' },
        pids: { current: 3 }, calls: { total: '\u009b2J', errors: 0, p99Ms: 1.25 }, violations: { seccomp: '\u001b' }, restarts: 0, pressure: ['\u2028x'],
      },
      { name: 'bare' },
    ],
  };
  const text = formatTop(evil as never);
  t.notOk(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/.test(text), `no control or bidi character reaches the terminal: ${JSON.stringify(text)}`);
  t.match(text, /a\\u202egnp\.exe/, 'a bidi override in a name is shown escaped');
  t.match(text, /active\\u001b\[31m/, 'so is an escape sequence in a status');
  t.match(text, /\\u2028x/, 'and a line separator in a warning');
  t.match(text, /^1 plugins|^2 plugins/, 'the summary is there');
  t.match(text, /– sandboxes, – failed/, 'numbers that are not numbers are shown as –');
  t.match(text, /\nbare\s+–/, 'a plugin with nothing but a name is a row of –');
  t.throws(() => formatTop({ plugins: 'x' } as never), /not a usage report/, 'a shape that is no report is refused');
});

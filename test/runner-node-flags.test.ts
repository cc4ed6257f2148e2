/**
 * Every runner starts node with RUNNER_NODE_FLAGS (no baseline compiler: see plugin-process.ts),
 * seen from inside the sandbox by the plugin itself.
 */
import t from 'tap';

import { RUNNER_NODE_FLAGS } from '../lib/process/plugin-process';
import { PluginWorld } from './helpers/plugins';

t.test("a plugin's runner runs node with the runner's flags", async (t) => {
  t.same(RUNNER_NODE_FLAGS, ['--no-sparkplug']);
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('flags', { code: `exports.activate = (h) => { h.hook('argv', () => process.execArgv); };`, hooks: ['argv'] });
  await w.trust('flags');
  await w.publish();
  const host = w.host({ hooks: [{ name: 'argv', mode: 'parallel' }] });
  t.teardown(() => host.close());
  await host.start();
  const r = await host.invoke('argv', []);
  t.same(r.values, [['--no-sparkplug']], 'execArgv inside the sandbox');
});

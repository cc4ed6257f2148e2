/**
 * A plugin's hook call is cancelled when the host gives up on it: the hook's timeout passes, or the
 * caller of invoke() aborts. The plugin's handler sees `this.signal` abort in its sandbox (the
 * host listens through the handler context's onAbort, not an AbortSignal per call).
 */
import t from 'tap';

import { PluginWorld, until } from './helpers/plugins';

// The handler waits for its signal and then tells the host, through a host method, that it saw it.
const CODE = `exports.activate = (host) => {
  host.hook('work', function (tag) {
    return new Promise((resolve) => {
      this.signal.addEventListener('abort', () => { host.call('saw', tag).catch(() => {}); resolve('late'); });
    });
  });
};`;

t.test("a plugin's hook call is cancelled in its sandbox when the hook times out or the caller aborts", async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('waiter', { code: CODE, hooks: ['work'] });
  await w.trust('waiter');
  await w.publish();
  const saw: unknown[] = [];
  const host = w.host({
    hooks: [{ name: 'work', mode: 'parallel' }],
    methods: { saw: (tag: unknown) => void saw.push(tag) },
  });
  t.teardown(() => host.close());
  await host.start();

  const ac = new AbortController();
  const aborted = host.invoke('work', ['caller'], { signal: ac.signal });
  setTimeout(() => ac.abort(new Error('the caller gave up')), 100);
  await t.rejects(aborted, { code: 'ERR_HOOK_ABORTED' }, 'the invoke rejects with the abort');
  await until(() => saw.includes('caller'), 5000, "the plugin to see its signal abort after the caller's abort");
  t.equal(host.plugins().find((p) => p.name === 'waiter')?.status, 'active', "the caller's abort is not the plugin's violation");

  const again = new AbortController();
  const second = host.invoke('work', ['again'], { signal: again.signal });
  setTimeout(() => again.abort(), 50);
  await t.rejects(second, { code: 'ERR_HOOK_ABORTED' });
  await until(() => saw.length === 2, 5000, 'the second abort');
  t.same(saw, ['caller', 'again'], 'each cancelled call reached the plugin once, in order');

  // The hook's own timeout: the call is given up on and the plugin is unloaded for it.
  const timedOut = await host.invoke('work', ['timeout'], { timeout: 300 });
  t.equal(timedOut.outcomes[0]!.timedOut, true, 'the hook timed out');
  await until(() => host.plugins().find((p) => p.name === 'waiter')?.status !== 'active', 5000, 'the plugin to be unloaded');
  t.equal(host.plugins().find((p) => p.name === 'waiter')?.reason?.kind, 'timeout', 'a timeout violation');
});

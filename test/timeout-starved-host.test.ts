/**
 * A host starved of cpu must not call a plugin's answer a timeout. The event loop runs its timers
 * before it reads what arrived: after the host's thread could not run for longer than a call's
 * timeout (a parallel hook waking a thousand runners on two cores), the deadline fired while the
 * answer already sat in the channel, and the plugin was unloaded for a timeout. Here the host's loop
 * is blocked on purpose past the timeout right after the call is sent; the plugin answers at once.
 * And a plugin that really does not answer still times out.
 */
import t from 'tap';
import * as fs from 'node:fs';

import { Invocation, type Entry } from '../lib/hooks/invoke';
import { PluginHost } from '../lib/plugins';
import { scaleHooks, scaleWorld } from './helpers/scale';
import { isRoot as root } from './helpers/sandbox';

/** Keeps this thread busy for `ms`: the event loop runs no phase meanwhile. */
function block(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // spin
  }
}

const entry = (owner: string, handler: Entry['handler']): Entry => ({ owner, handler, priority: 0, kind: 'plugin', seq: 0 });

t.test('hooks: an answer that arrived while the loop was blocked past the timeout counts', async (t) => {
  // fs.stat completes on the thread pool during the block; its callback waits for the poll phase.
  const answered = entry('answers', () => new Promise((resolve) => fs.stat(__filename, () => resolve('ok'))));
  const silent = entry('silent', () => new Promise(() => undefined));
  const p = new Invocation('h', 'parallel', [answered, silent], [], 50, undefined).run();
  block(200);
  const r = await p;
  t.same(r.outcomes.map((o) => [o.owner, o.ok, o.timedOut]), [['answers', true, false], ['silent', false, true]],
    'the arrived answer is taken; the handler that never answers still times out');
});

t.test('plugins: a starved host keeps a plugin that answered in time', async (t) => {
  const { world, names } = await scaleWorld(1);
  t.teardown(() => world.cleanup());
  const host = new PluginHost({
    pluginDirs: [world.pluginsDir],
    trust: { store: world.store(), file: world.trustFile },
    hostApiVersion: '1.2.0',
    // Both clocks short: the channel's call timeout and the hook's own.
    hooks: scaleHooks(names).map((h) => ({ ...h, timeout: 300 })),
    audit: world.auditPath,
    limits: { callTimeout: '300ms' },
    allowDegradedLimits: !root,
  });
  t.teardown(() => host.close());
  await host.start();
  const name = names[0]!;
  t.equal(host.status(name), 'active');
  // Warm: the runner's first call compiles its call path.
  t.same((await host.invoke('scale.all', [0])).values, [name]);
  for (let i = 1; i <= 3; i++) {
    const p = host.invoke('scale.all', [i]);
    block(800); // the runner answers within milliseconds; its answer waits in the ring
    const r = await p;
    t.same(r.outcomes.map((o) => [o.ok, o.timedOut, o.error?.message]), [[true, false, undefined]], `call ${i}: answered, not timed out`);
    t.equal(host.status(name), 'active', `call ${i}: the plugin is still loaded`);
  }
});

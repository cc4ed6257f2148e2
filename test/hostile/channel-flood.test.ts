/**
 * A plugin cannot make its host's memory grow without bound, nor keep it busy for good: every
 * host-side queue it can fill has a bound (past it the plugin is throttled), and a plugin that
 * stays past one is unloaded with a `flood` violation.
 */
import t from 'tap';

import { expectUnloaded, HostMeter, hostileWorld } from '../helpers/hostile';

t.test('a plugin that sends calls and never reads the answers', async (t) => {
  const { host } = await hostileWorld(t, {
    // Calls a method the host does not have (each error answer is larger than the call) without
    // ever returning to its event loop, so it reads none of the answers: before the bound, the host
    // queued them all (RSS 110 MiB → 2 GiB in 40 s). About 20,000 calls a second, under the rate.
    deaf: `exports.activate = (host) => { host.on('go', () => {
      const end = Date.now() + 60000;
      while (Date.now() < end) {
        for (let i = 0; i < 1000; i++) host.call('nope').catch(() => {});
        const pause = Date.now() + 50;
        while (Date.now() < pause);
      }
    }); };`,
  });
  const meter = new HostMeter();
  host.process('deaf')!.notify('go');
  // While it attacks, the host serves the others.
  await new Promise((r) => setTimeout(r, 500));
  t.same((await host.invoke('ping', [])).values, ['pong'], 'the good plugin answers during the attack');
  await expectUnloaded(t, host, 'deaf', 'flood', /unread/);
  meter.check(t, 'unread answers');
});

t.test('floods of notifications and of logs', async (t) => {
  const { host } = await hostileWorld(t, {
    shouter: `exports.activate = (host) => { host.on('go', () => {
      const tick = () => { for (let i = 0; i < 1000; i++) host.emit('noise', i, 'x'.repeat(100)); setImmediate(tick); };
      tick();
    }); };`,
    chatter: `exports.activate = (host) => { host.on('go', () => {
      const tick = () => { for (let i = 0; i < 1000; i++) console.log('line', i, 'y'.repeat(200)); setImmediate(tick); };
      tick();
    }); };`,
  });
  let events = 0;
  let logs = 0;
  host.on('event', () => events++);
  host.on('log', () => logs++);
  for (const name of ['shouter', 'chatter']) {
    const meter = new HostMeter();
    host.process(name)!.notify('go');
    await new Promise((r) => setTimeout(r, 500));
    t.same((await host.invoke('ping', [])).values, ['pong'], `the good plugin answers while ${name} floods`);
    await expectUnloaded(t, host, name, 'flood', /messages or .* bytes a second/);
    meter.check(t, name);
  }
  t.ok(events > 50000 && logs > 50000, `the host took a burst of each first (${events} events, ${logs} logs)`);
});

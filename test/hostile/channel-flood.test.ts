/**
 * A plugin cannot make its host's memory grow without bound, nor keep it busy for good: every
 * host-side queue it can fill has a bound (past it the plugin is throttled), and a plugin that
 * stays past one is unloaded with a `flood` violation.
 */
import t from 'tap';
import { performance } from 'node:perf_hooks';

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
  const dropped: string[] = [];
  host.on('event', () => events++);
  host.on('log', (plugin: string, level: string, message: string) => {
    if (plugin !== 'chatter') return;
    if (message.startsWith('[warden]')) dropped.push(`${level} ${message}`);
    else logs++;
  });
  let chatterMs = 0;
  for (const name of ['shouter', 'chatter']) {
    const meter = new HostMeter();
    const t0 = performance.now();
    host.process(name)!.notify('go');
    await new Promise((r) => setTimeout(r, 500));
    t.same((await host.invoke('ping', [])).values, ['pong'], `the good plugin answers while ${name} floods`);
    await expectUnloaded(t, host, name, 'flood', /messages or .* bytes a second/);
    if (name === 'chatter') chatterMs = performance.now() - t0;
    meter.check(t, name);
  }
  t.ok(events > 50000, `the host took a burst of events first (${events})`);
  // Log lines have a rate of their own: 100 a second, a burst of 1,000; the rest are counted.
  // Before: every line (over 50,000) went to the application.
  t.ok(logs >= 1000 && logs <= 1000 + Math.ceil(chatterMs / 10) + 10, `log lines passed on: ${logs} in ${chatterMs.toFixed(0)} ms`);
  t.ok(dropped.length >= 1 && dropped.length <= Math.ceil(chatterMs / 1000) + 1, `the drops are reported about once a second (${dropped.length})`);
  t.match(dropped[0], /^warn \[warden\] \d+ log lines dropped: more than 100 a second$/);
  const lost = dropped.reduce((n, m) => n + Number(/(\d+) log line/.exec(m)![1]), 0);
  t.ok(lost > 40000, `every dropped line is counted (${lost})`);
});

// Structured-clone data of 20,000 empty ArrayBuffers: 40 KB, within every per-message budget
// (64 KiB of structured bytes), ~5 ms for the plugin to encode and ~18 ms for the host to decode.
const COSTLY = `const costly = new Set(Array.from({ length: 20000 }, () => new ArrayBuffer(0)));`;

t.test('messages costly to decode, each within the per-message budget, at an allowed rate', async (t) => {
  const { host } = await hostileWorld(t, {
    // ~190 messages a second, far under the message and byte rates. Before: never unloaded, and
    // the host spent a whole core decoding them for as long as the plugin liked.
    grinder: `${COSTLY}
      exports.activate = (host) => { host.on('go', () => {
        const tick = () => { host.emit('noise', costly); setImmediate(tick); };
        tick();
      }); };`,
  });
  let events = 0;
  host.on('event', (plugin: string) => { if (plugin === 'grinder') events++; });
  const meter = new HostMeter();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  host.process('grinder')!.notify('go');
  await new Promise((r) => setTimeout(r, 500));
  t.same((await host.invoke('ping', [])).values, ['pong'], 'the good plugin answers while it grinds');
  await expectUnloaded(t, host, 'grinder', 'flood', /ms a second decoding its messages/);
  const cpu = process.cpuUsage(cpu0);
  const wall = performance.now() - t0;
  meter.check(t, 'costly messages');
  // The allowance (200 ms a second, a burst of 400 ms) and the grace (2 s) bound what it took.
  t.ok(events > 10, `the host took its first messages (${events})`);
  t.comment(`host cpu ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms over ${wall.toFixed(0)} ms until the plugin was unloaded`);
});

t.test('answers costly to decode, to calls the host makes', async (t) => {
  const { host } = await hostileWorld(t, {
    // The host chose to call it, but the plugin chose the answer: its decoding is the plugin's.
    answerer: `${COSTLY}
      exports.costly = () => costly;
      exports.activate = () => {};`,
  });
  const meter = new HostMeter();
  const proc = host.process('answerer')!;
  let answered = 0;
  const end = performance.now() + 30_000;
  while (host.status('answerer') === 'active' && performance.now() < end) {
    // Four calls in flight, as a busy host would make.
    const r = await Promise.allSettled([0, 1, 2, 3].map(() => proc.call('costly')));
    answered += r.filter((x) => x.status === 'fulfilled').length;
  }
  t.ok(answered > 10, `the host took its first answers (${answered})`);
  await expectUnloaded(t, host, 'answerer', 'flood', /ms a second decoding its messages/, 1000);
  meter.check(t, 'costly answers');
});

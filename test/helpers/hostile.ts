/**
 * What the hostile-plugin tests share: a meter of the host while it is under attack, a world with a
 * well-behaved plugin beside the attackers, and the plugin-side code that writes messages straight
 * into the channel's ring through /proc/self/mem (bypassing the runner's encoder).
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { Test } from 'tap';

import type { PluginHost, PluginHostOptions } from '../../lib/plugins';
import { PluginWorld, until } from './plugins';

/**
 * What the host may grow by while under attack (RSS over the baseline taken when the attack
 * starts). The attacks these tests reproduce grew it without bound before their fixes (unread
 * answers: 110 MiB to 2 GiB in 40 s). With the fixes, the costliest (test/hostile/channel-flood.test.ts,
 * `costly messages`: garbage the collector takes its time over) reads 61-124 MiB here, and 217 once
 * in a CI run on a busy machine, against the 200 this bound was: 300 leaves room for the collector's
 * timing and still fails at a small fraction of any unbounded growth.
 */
export const RSS_BOUND_MIB = 300;
/**
 * The longest the host's event loop may be held at once while under attack. Before their fixes
 * these attacks held it for seconds (set-aside messages: ~30 s). With them, the worst reads 57-97
 * ms here (costly messages, fresh keys: a young-generation collection of the plugin's values), and
 * 102-114 ms in three of the last six CI runs on a busy machine, against the 100 this bound was.
 */
export const LOOP_BOUND_MS = 150;

/**
 * Measures the host process from construction to stop(): its RSS growth, and the longest time its
 * event loop was held. A 10 ms interval timer notes each late tick; the lateness counts as a block
 * only as far as the process spent CPU meanwhile (process.cpuUsage), because on a loaded machine a
 * runnable host also waits for a core, which no code of the host can help. `rawMaxMs` (the wall
 * lateness, also from monitorEventLoopDelay) is reported beside it.
 */
export class HostMeter {
  private readonly hist = monitorEventLoopDelay({ resolution: 10 });
  private readonly baseline = process.memoryUsage.rss();
  private peak = this.baseline;
  private maxBlock = 0;
  private maxLate = 0;
  private last = performance.now();
  private lastCpu = process.cpuUsage();
  private readonly timer: NodeJS.Timeout;

  constructor() {
    this.hist.enable();
    this.timer = setInterval(() => {
      const now = performance.now();
      const cpu = process.cpuUsage();
      const late = now - this.last - 10;
      const used = (cpu.user - this.lastCpu.user + cpu.system - this.lastCpu.system) / 1000;
      this.maxLate = Math.max(this.maxLate, late);
      this.maxBlock = Math.max(this.maxBlock, Math.min(late, used));
      this.last = now;
      this.lastCpu = cpu;
      this.peak = Math.max(this.peak, process.memoryUsage.rss());
    }, 10);
  }

  stop(): { rssGrowthMiB: number; maxBlockMs: number; rawMaxMs: number } {
    clearInterval(this.timer);
    this.hist.disable();
    this.peak = Math.max(this.peak, process.memoryUsage.rss());
    return {
      rssGrowthMiB: (this.peak - this.baseline) / (1 << 20),
      maxBlockMs: this.maxBlock,
      rawMaxMs: Math.max(this.maxLate, this.hist.max / 1e6),
    };
  }

  /** Stops and asserts the bounds. */
  check(t: Test, what: string): void {
    const m = this.stop();
    t.ok(m.rssGrowthMiB < RSS_BOUND_MIB, `${what}: host RSS grew ${m.rssGrowthMiB.toFixed(1)} MiB (bound ${RSS_BOUND_MIB})`);
    t.ok(m.maxBlockMs < LOOP_BOUND_MS, `${what}: host event loop held at most ${m.maxBlockMs.toFixed(1)} ms (bound ${LOOP_BOUND_MS}; ${m.rawMaxMs.toFixed(1)} ms wall, waiting for a core included)`);
  }
}

export const HOOKS = [{ name: 'ping', mode: 'parallel' as const, timeout: 5000 }];

/** A plugin that answers `ping`: it must keep answering while the others attack. */
export const GOOD = `exports.activate = (host) => { host.hook('ping', () => 'pong'); };`;

/**
 * A world holding `good` and the given attackers (each its index.js; it listens to the host's
 * 'go' notification to attack), all trusted and loaded. Attackers get 512 MiB so that what ends
 * them is the host's verdict, not their own memory limit.
 */
export async function hostileWorld(
  t: Test,
  attackers: Record<string, string>,
  opts: Partial<PluginHostOptions> = {},
): Promise<{ w: PluginWorld; host: PluginHost }> {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('good', { code: GOOD, hooks: ['ping'] });
  await w.trust('good');
  for (const [name, code] of Object.entries(attackers)) {
    w.writePlugin(name, { code, limits: { memory: '512M' } });
    await w.trust(name, { limits: { memory: 512 * 1024 * 1024 } });
  }
  await w.publish();
  const host = w.host({ hooks: HOOKS, ...opts });
  t.teardown(() => host.close());
  // What the application does with plugin events and logs: listens.
  host.on('event', () => undefined);
  host.on('log', () => undefined);
  await host.start();
  for (const name of ['good', ...Object.keys(attackers)]) t.equal(host.status(name), 'active', `${name} loaded`);
  return { w, host };
}

/** Starts one attacker, waits for its end, and checks its reason and that `good` still answers. */
export async function expectUnloaded(t: Test, host: PluginHost, name: string, kind: string, message?: RegExp, ms = 30000): Promise<void> {
  await until(() => host.status(name) !== 'active', ms, `${name} to be unloaded`);
  const info = host.info(name);
  t.equal(info.status, 'failed', `${name} is unloaded`);
  t.equal(info.reason?.kind, kind, `${name}: ${info.reason?.message}`);
  if (message !== undefined) t.match(info.reason?.message, message);
  t.equal(info.pid, undefined, `${name} has no process any more`);
  const r = await host.invoke('ping', []);
  t.same(r.values, ['pong'], `the good plugin still answers after ${name}`);
}

/**
 * Plugin-side code (a string put in front of an attacker's index.js): `ringWriter()` finds the
 * channel's shared mapping in /proc/self/maps and returns `inject(kind, id, envelope)`, which
 * writes one message as a whole frame at the head of the sandbox → host ring, publishes it by
 * moving the head in the control block, and wakes the host through its eventfd (fd 5). The
 * runner's own encoder is not told: after an injection the runner must stay silent.
 * `enc` builds envelope values in the codec's tagged form (lib/channel/codec.ts).
 */
export const RING_WRITER = `
const fs = require('fs');
function ringWriter() {
  const line = fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').find((l) => l.includes('warden-channel'));
  const [start, end] = line.split(' ')[0].split('-').map((x) => parseInt(x, 16));
  const size = (end - start - 4096) / 2;
  const fd = fs.openSync('/proc/self/mem', 'r+');
  const put = (off, buf) => fs.writeSync(fd, buf, 0, buf.length, start + off);
  const head = () => { const b = Buffer.alloc(8); fs.readSync(fd, b, 0, 8, start + 128); return b.readBigUInt64LE(0); };
  return {
    inject(kind, id, envelope) {
      const msg = Buffer.alloc(9 + envelope.length);
      msg[0] = kind; msg.writeUInt32LE(id >>> 0, 1); msg.writeUInt32LE(envelope.length, 5); envelope.copy(msg, 9);
      const span = 16 + ((msg.length + 7) & ~7);
      const frame = Buffer.alloc(span);
      frame.writeUInt32LE(msg.length, 0); frame[4] = 1; frame.writeBigUInt64LE(BigInt(msg.length), 8); msg.copy(frame, 16);
      const h = head();
      const pos = Number(h % BigInt(size));
      const first = Math.min(span, size - pos);
      put(4096 + size + pos, frame.subarray(0, first));
      if (first < span) put(4096 + size, frame.subarray(first));
      const nh = Buffer.alloc(8); nh.writeBigUInt64LE(h + BigInt(span)); put(128, nh);
      const one = Buffer.alloc(8); one.writeBigUInt64LE(1n);
      try { fs.writeSync(5, one); } catch {}
    },
  };
}
const enc = {
  tag: (t, n) => { const h = Buffer.alloc(5); h[0] = t; h.writeUInt32LE(n >>> 0, 1); return h; },
  str: (s) => { const b = Buffer.from(s); return Buffer.concat([enc.tag(6, b.length), b]); },
  int: (n) => enc.tag(4, n),
  arr: (items) => Buffer.concat([enc.tag(8, items.length), ...items]),
  obj: (entries) => Buffer.concat([enc.tag(9, entries.length), ...entries.flatMap(([k, v]) => [enc.str(k), v])]),
};
`;

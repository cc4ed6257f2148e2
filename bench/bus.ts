/**
 * npm run bench:bus — the plugin bus against the plugins' own host calls, in the same run:
 *   - plugin → plugin service call (two hops through the host) p50, against plugin → host call p50
 *     (target: at most 2.5×);
 *   - one event fanned out to SUBS subscribers (default 100), time until every handler ran.
 * Real sandboxed plugins under PluginHost. SUBS, N (calls per measure), WARM (calls of each kind
 * before measuring, default 20000) override the sizes.
 */
import { PluginWorld } from '../test/helpers/plugins';

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))]!;
}

const CALLER = `exports.activate = (host) => ({
  // Times N awaited calls inside the sandbox, one after another; returns the µs of each.
  time: async (kind, n) => {
    const out = [];
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint();
      if (kind === 'host') await host.call('ping', i); else await host.callPlugin('svc', 'ping', i);
      out.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
    return out;
  },
});`;

async function main(): Promise<void> {
  const subs = Number(process.env.SUBS ?? 100);
  const n = Number(process.env.N ?? 5000);
  const warm = Number(process.env.WARM ?? 20000);
  const w = await PluginWorld.create();
  try {
    w.writePlugin('svc', { code: `exports.activate = (host) => host.provide('ping', (i) => i);`, provides: ['service:provide:ping'] });
    await w.trust('svc', { permissions: ['service:provide:ping'] });
    w.writePlugin('caller', { code: CALLER, consumes: ['service:call:svc/ping'] });
    await w.trust('caller', { permissions: ['service:call:svc/ping'] });
    for (let i = 0; i < subs; i++) {
      const name = `sub${i}`;
      w.writePlugin(name, { code: `exports.activate = (host) => host.subscribe('tick', (p) => host.call('seen', p));`, consumes: ['events:subscribe:tick'] });
      await w.trust(name, { permissions: ['events:subscribe:tick'] });
    }
    await w.publish();
    let seen = 0;
    let done: (() => void) | undefined;
    const host = w.host({ methods: { ping: (i) => i, seen: () => { if (++seen === subs) done?.(); } }, limits: { memory: '128M', pids: 32, callTimeout: '30s' } });
    try {
      const t0 = Date.now();
      await host.start();
      process.stderr.write(`${subs + 2} plugins loaded in ${Date.now() - t0} ms\n`);
      const caller = host.process('caller')!;
      // A fresh runner's first tens of thousands of calls pay one-time first touches (V8's young
      // generation growing into new pages; see bench:ipc's "p99 after 100k"): warmed up past them.
      await caller.call('time', 'host', warm);
      await caller.call('time', 'plugin', warm);
      const rows: Array<[string, number[]]> = [];
      for (let round = 0; round < 2; round++) {
        rows.push(['plugin → host call', (await caller.call('time', 'host', n)) as number[]]);
        rows.push(['plugin → plugin service call', (await caller.call('time', 'plugin', n)) as number[]]);
      }
      const fan: number[] = [];
      for (let i = 0; i < 50; i++) {
        seen = 0;
        const all = new Promise<void>((r) => (done = r));
        const s0 = process.hrtime.bigint();
        host.bus.publish('tick', i);
        await all;
        fan.push(Number(process.hrtime.bigint() - s0) / 1000);
      }
      const hostP50 = pct(rows.filter((r) => r[0] === 'plugin → host call').flatMap((r) => r[1]), 50);
      const busP50 = pct(rows.filter((r) => r[0] === 'plugin → plugin service call').flatMap((r) => r[1]), 50);
      process.stdout.write(`case                                         p50 µs    p99 µs\n`);
      for (const [name, xs] of rows) process.stdout.write(`${name.padEnd(44)} ${pct(xs, 50).toFixed(1).padStart(7)}  ${pct(xs, 99).toFixed(1).padStart(8)}\n`);
      process.stdout.write(`${`event fan-out to ${subs} subscribers (all ran)`.padEnd(44)} ${pct(fan, 50).toFixed(1).padStart(7)}  ${pct(fan, 99).toFixed(1).padStart(8)}\n`);
      process.stdout.write(`service call / host call (p50): ${(busP50 / hostP50).toFixed(2)}× (target ≤ 2.5×)\n`);
    } finally {
      await host.close();
    }
  } finally {
    w.cleanup();
  }
}

main().catch((e) => {
  process.stderr.write(`${e?.stack ?? e}\n`);
  process.exitCode = 1;
});

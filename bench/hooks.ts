/**
 * npm run bench:hooks — the cost of HookRegistry.invoke() per call, awaited one after another.
 * Peers measured in the same run: calling the handler directly, awaiting an async wrapper around it
 * (the floor of any promise-returning API), EventEmitter.emit.
 */
import { EventEmitter } from 'node:events';
import { HookRegistry } from '../lib';

async function perCall(n: number, fn: () => unknown): Promise<number> {
  for (let i = 0; i < Math.min(n, 20000); i++) await fn(); // warm-up
  const samples: number[] = [];
  for (let round = 0; round < 5; round++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await fn();
    samples.push(Number(process.hrtime.bigint() - t0) / n / 1000);
  }
  samples.sort((a, b) => a - b);
  return samples[2]; // median of 5, µs per call
}

async function main(): Promise<void> {
  const n = Number(process.env.N ?? 200_000);
  const reg = new HookRegistry();
  let sink = 0;
  const handler = (args: unknown[]): number => (args[0] as number) + 1;
  for (const mode of ['parallel', 'series', 'waterfall', 'first'] as const) {
    reg.declare({ name: `one.${mode}`, mode });
    reg.register(`one.${mode}`, 'host', handler);
  }
  reg.declare({ name: 'async1', mode: 'series' });
  reg.register('async1', 'p', async (args) => (args[0] as number) + 1, { kind: 'plugin' });
  reg.declare({ name: 'ten', mode: 'parallel' });
  for (let i = 0; i < 10; i++) reg.register('ten', `p${i}`, handler, { kind: 'plugin' });
  reg.declare({ name: 'empty', mode: 'parallel' });
  const ee = new EventEmitter();
  ee.on('x', (v: number) => { sink += v; });
  const args = [1];

  const rows: Array<[string, number]> = [];
  rows.push(['direct call (peer)', await perCall(n, () => { sink += handler(args); })]);
  rows.push(['await async wrapper (peer)', await perCall(n, async () => handler(args))]);
  rows.push(['EventEmitter.emit (peer)', await perCall(n, () => ee.emit('x', 1))]);
  rows.push(['invoke, no handler', await perCall(n, () => reg.invoke('empty', args))]);
  for (const mode of ['parallel', 'series', 'waterfall', 'first']) {
    rows.push([`invoke ${mode}, 1 sync handler`, await perCall(n, () => reg.invoke(`one.${mode}`, args))]);
  }
  rows.push(['invoke series, 1 sync handler, timeout 0', await perCall(n, () => reg.invoke('one.series', args, { timeout: 0 }))]);
  rows.push(['invoke series, 1 async handler', await perCall(n, () => reg.invoke('async1', args))]);
  rows.push(['invoke parallel, 10 sync handlers', await perCall(n / 4, () => reg.invoke('ten', args))]);

  const w = Math.max(...rows.map((r) => r[0].length));
  process.stdout.write(`${'case'.padEnd(w)}  µs/call (median of 5 × ${n})\n`);
  for (const [name, us] of rows) process.stdout.write(`${name.padEnd(w)}  ${us.toFixed(3)}\n`);
  if (sink === -1) process.stdout.write('\n');
}

main().catch((e) => {
  process.stderr.write(`${e?.stack ?? e}\n`);
  process.exitCode = 1;
});

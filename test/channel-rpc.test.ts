import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { CallTimeoutError, ChannelError, RemoteError } from '../lib/errors';
import { startRunner, unsandboxedSpawner, type PluginProcess, type RunnerOptions } from '../lib/process/plugin-process';

const helpers = path.join(__dirname, '..', '..', 'test', 'helpers');
const plugin = path.join(helpers, 'channel-plugin.js');

function start(t: { teardown(fn: () => unknown): void }, options: Partial<RunnerOptions> = {}): Promise<PluginProcess> {
  return startRunner(unsandboxedSpawner, { plugin, handlers: { double: (x: unknown) => (x as number) * 2 }, ...options }).then((p) => {
    t.teardown(() => p.close(500));
    return p;
  });
}

t.test('round trips, async and sync, both directions', async (t) => {
  const p = await start(t, { config: { answer: 42, nested: { a: [1, 2] } } });
  t.ok(p.methods.includes('add'));
  t.equal(await p.call('add', 2, 3), 5);
  t.equal(p.callSync('add', 4, 5), 9);
  t.same(await p.call('config'), { answer: 42, nested: { a: [1, 2] } });
  t.equal(await p.call('askHost', 21), 42, 'the plugin calls the host');
  const v = { s: 'héllo ✓', n: -0.5, big: 12345678901234567890n, d: new Date(5), u: undefined, nul: null, arr: [true, false], m: new Map([[1, 'x']]) };
  t.same(await p.call('echo', v), v, 'values clone faithfully');
  const results = await Promise.all(Array.from({ length: 200 }, (_, i) => p.call('add', i, 1)));
  t.same(results, Array.from({ length: 200 }, (_, i) => i + 1), 'concurrent calls keep their ids');
});

t.test('notifications both ways and logs', async (t) => {
  const p = await start(t);
  const pong = new Promise((resolve) => p.once('event', (name: string, n: number) => resolve([name, n])));
  p.notify('ping', 1);
  t.same(await pong, ['pong', 2]);
  const logs: string[] = [];
  p.on('log', (_level: string, m: string) => logs.push(m));
  await p.call('log', 'x');
  await new Promise((r) => setTimeout(r, 50));
  t.same(logs, ['from plugin x', 'via host.log x']);
});

t.test('errors cross with name, message, stack and code', async (t) => {
  const p = await start(t);
  const e = await p.call('boom').catch((x: unknown) => x);
  t.ok(e instanceof RemoteError);
  t.match(e, { name: 'TypeError', message: 'kaboom', code: 'E_BOOM', method: 'boom' });
  t.match((e as Error).stack, /channel-plugin\.js/);
  t.throws(() => p.callSync('boom'), { name: 'TypeError', code: 'E_BOOM' });
  await t.rejects(p.call('rejects'), { name: 'RangeError', message: 'async kaboom' });
  const missing = await p.call('nope').catch((x: unknown) => x);
  t.match(missing, { code: 'ERR_METHOD_NOT_FOUND', message: "no method 'nope'" });
  // The answering side sends no stack of its own for a missing method (it sent its RpcPeer.serve frames and paths).
  t.notMatch((missing as Error).stack, /RpcPeer\.serve/, 'no frames of the answering side');
  t.equal(await p.call('add', 1, 1), 2, 'the channel survives errors');
});

t.test("a host method's error reaches the plugin without the host's stack", async (t) => {
  const p = await start(t, {
    handlers: {
      fail: function hostMethodThatFails() {
        const e = new RangeError('not allowed');
        (e as { code?: string }).code = 'E_HOST';
        throw e;
      },
      failLater: async function hostMethodThatRejects() {
        await new Promise((r) => setTimeout(r, 1));
        throw new Error('later');
      },
      settled: function hostMethodWithErrorValue() {
        return Promise.allSettled([Promise.reject(new TypeError('inner', { cause: new Error('deeper') }))]);
      },
      settledAbort: function hostMethodWithAbortValue() {
        return Promise.allSettled([Promise.reject(AbortSignal.abort().reason)]);
      },
      inContainers: function hostMethodWithErrorsInContainers() {
        class Outcome {
          constructor(readonly error: Error) {}
        }
        const m = new Map<unknown, unknown>([['a', new RangeError('in a map', { cause: new Error('its cause') })]]);
        m.set(new TypeError('a map key'), new Set([new Error('in a set'), new Outcome(new SyntaxError('in a class instance'))]));
        m.set('self', m); // a cycle: cloned once, walked once
        return { m, bytes: new Uint8Array([1, 2]) };
      },
    },
  });
  const got = (await p.call('hostError', 'fail')) as { name: string; message: string; code: string; stack: string };
  t.match(got, { name: 'RangeError', message: 'not allowed', code: 'E_HOST' }, 'name, message and code cross');
  // The stack the plugin sees is its own (where it called from), never the host's frames or files.
  t.notMatch(got.stack, /hostMethodThatFails|channel-rpc\.test|lib[\\/]channel[\\/]rpc/, 'no host frame (sent before)');
  const later = (await p.call('hostError', 'failLater')) as { stack: string };
  t.notMatch(later.stack, /hostMethodThatRejects|channel-rpc\.test/, 'nor for a rejected promise');
  // An Error inside the value a host method answers with (Promise.allSettled's shape) went whole,
  // stack included (V8's structured clone): it goes with its class, message and cause, no stack.
  const inValue = (await p.call('hostErrorValue', 'settled')) as { isError: boolean; name: string; message: string; stack: string; cause: string };
  t.match(inValue, { isError: true, name: 'TypeError', message: 'inner' }, 'the Error in the value keeps its class and message');
  t.notMatch(inValue.stack, /hostMethodWithErrorValue|channel-rpc\.test/, 'and has no host frame (sent before)');
  t.notMatch(inValue.cause, /hostMethodWithErrorValue|channel-rpc\.test/, 'nor has its cause');
  // A DOMException (an AbortSignal's reason) is not one of V8's error classes: it arrives as an
  // Error with its message (the first stack-less copy made the whole answer fail).
  t.match(await p.call('hostErrorValue', 'settledAbort'), { isError: true, message: /aborted/ }, 'an abort reason in the value arrives');
  // Errors inside a Map, a Set or a class instance went through V8's structured clone whole, stack
  // included: they arrive with class and message, without the host's frames.
  const inside = (await p.call('errorsIn', 'inContainers')) as Array<{ name: string; message: string; stack: string }>;
  t.same(inside.map((e) => `${e.name}: ${e.message}`).sort(), [
    'Error: in a set', 'Error: its cause', 'RangeError: in a map', 'SyntaxError: in a class instance', 'TypeError: a map key',
  ], 'every Error arrives, with its class and message');
  for (const e of inside) t.notMatch(e.stack, /hostMethodWithErrorsInContainers|channel-rpc\.test/, `${e.message}: no host frame (sent before)`);
  // The other way, the plugin's own stack still reaches the host (the host's logs need it).
  t.match(((await p.call('boom').catch((x: unknown) => x)) as Error).stack, /channel-plugin\.js/);
});

t.test('a host method that echoes what the plugin sent cannot be made to write it out without end', async (t) => {
  const p = await start(t, { handlers: { echo: (x: unknown) => x } });
  const started = Date.now();
  t.match(await p.call('sendShared', 'echo'), /value too large to send: over 2097152 values/, 'the answer is refused, bounded');
  t.ok(Date.now() - started < 5000, `in ${Date.now() - started} ms (2^40 values written out, before)`);
  t.equal(await p.call('add', 1, 1), 2, 'the channel serves on');
});

t.test('large payloads stream through a small ring', async (t) => {
  const p = await start(t, { ringSize: 64 * 1024 });
  const big = Buffer.alloc(64 * 1024 * 1024);
  for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
  t.equal(await p.call('size', big), big.length, '64 MiB to the plugin');
  const back = (await p.call('make', 64 * 1024 * 1024)) as Buffer;
  t.equal(back.length, 64 * 1024 * 1024, '64 MiB back');
  t.equal(back[12345678], 7);
  const echoed = (await p.call('echo', big.subarray(0, 3 * 1024 * 1024 + 5))) as Buffer;
  t.ok(echoed.equals(big.subarray(0, 3 * 1024 * 1024 + 5)), 'bytes intact');
  t.equal(p.callSync('size', big.subarray(0, 5 * 1024 * 1024)), 5 * 1024 * 1024, 'sync with a chunked request');
  await t.rejects(p.call('size', Buffer.alloc(65 * 1024 * 1024)), { code: 'ERR_CHANNEL_MESSAGE_TOO_LARGE' });
  t.equal(await p.call('add', 1, 1), 2);
});

t.test('every size crosses intact: whole or chunked, into scratch or a Buffer of its own', async (t) => {
  for (const ringSize of [4096, 64 * 1024]) {
    const p = await start(t, { ringSize });
    for (const n of [0, 1, 100, 2031, 2032, 2033, 4095, 4096, 5000, 16383, 16384, 16385, 70000]) {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = (i * 7 + n) & 0xff;
      const s = 'é'.repeat(n >> 1);
      t.ok(((await p.call('echo', b)) as Buffer).equals(b), `ring ${ringSize}: ${n} bytes, async`);
      t.ok((p.callSync('echo', b) as Buffer).equals(b), `ring ${ringSize}: ${n} bytes, sync`);
      t.equal(await p.call('echo', s), s, `ring ${ringSize}: a string of ${s.length} characters`);
    }
    const all = await Promise.all([100, 5000, 20000, 3].map((n) => p.call('make', n)));
    t.same(all.map((b) => (b as Buffer).length), [100, 5000, 20000, 3], 'concurrent answers of mixed sizes');
  }
});

t.test('timeouts and cancellation', async (t) => {
  const p = await start(t, { timeout: 1000 });
  const e = await p.callWith({ timeout: 100 }, 'hang').catch((x: unknown) => x);
  t.ok(e instanceof CallTimeoutError);
  t.match(e, { code: 'ERR_CALL_TIMEOUT', method: 'hang', timeout: 100 });
  t.throws(() => p.callSync('hang'), { code: 'ERR_CALL_TIMEOUT' }, 'sync calls time out too');

  const ac = new AbortController();
  const aborted = new Promise((resolve) => p.once('event', (name: string) => resolve(name)));
  const call = p.callWith({ signal: ac.signal }, 'waitAbort');
  setTimeout(() => ac.abort(), 30);
  await t.rejects(call, { name: 'AbortError', code: 'ABORT_ERR' });
  t.equal(await aborted, 'aborted', 'the plugin saw its signal abort');
  t.equal(await p.call('add', 2, 2), 4, 'late answers are dropped');
});

t.test('the default timeout expires calls in order, among many quick ones', async (t) => {
  const p = await start(t, { timeout: 200 });
  const t0 = Date.now();
  const first = p.call('hang').catch((e: unknown) => [e, Date.now() - t0]);
  for (let i = 0; i < 2000; i++) await p.call('add', i, 1);
  const second = p.call('hang').catch((e: unknown) => [e, Date.now() - t0]);
  const [e1, ms1] = (await first) as [unknown, number];
  t.ok(e1 instanceof CallTimeoutError);
  t.match(e1, { code: 'ERR_CALL_TIMEOUT', method: 'hang', timeout: 200 });
  t.ok(ms1 >= 195 && ms1 < 1500, `the first expired after its timeout (${ms1} ms)`);
  const [e2] = (await second) as [unknown, number];
  t.ok(e2 instanceof CallTimeoutError, 'the second too');
  t.equal(await p.call('add', 1, 1), 2);

  // A shorter timeout made later expires first, whether set as the default or per call.
  const rpc = (p as unknown as { rpc: { setDefaultTimeout(ms: number): void } }).rpc;
  const t1 = Date.now();
  const long = p.call('hang').catch(() => Date.now() - t1);
  rpc.setDefaultTimeout(50);
  const short = p.call('hang').catch(() => Date.now() - t1);
  const own = p.callWith({ timeout: 80 }, 'hang').catch(() => Date.now() - t1);
  const [msLong, msShort, msOwn] = (await Promise.all([long, short, own])) as number[];
  t.ok(msShort < 180 && msOwn < 180, `50 ms and 80 ms calls did not wait for the 200 ms one (${msShort}, ${msOwn} ms)`);
  t.ok(msLong >= 195, `the 200 ms call kept its timeout (${msLong} ms)`);
});

t.test('peer death rejects every pending call', async (t) => {
  const p = await start(t);
  const pending = [p.call('hang'), p.call('hang'), p.call('dieLater', 3)];
  const rs = await Promise.allSettled(pending);
  for (const r of rs) {
    t.equal(r.status, 'rejected');
    t.ok((r as PromiseRejectedResult).reason instanceof ChannelError);
    t.equal((r as PromiseRejectedResult).reason.code, 'ERR_CHANNEL_CLOSED');
  }
  t.match(await p.exited, { code: 3 });
  await t.rejects(p.call('add', 1, 2), { code: 'ERR_CHANNEL_CLOSED' });
  t.throws(() => p.callSync('add', 1, 2), { code: 'ERR_CHANNEL_CLOSED' });
});

t.test('a blocked callSync notices the peer exiting', async (t) => {
  const p = await start(t);
  const t0 = Date.now();
  t.throws(() => p.callSync('exit', 4), { code: 'ERR_CHANNEL_CLOSED' });
  t.ok(Date.now() - t0 < 5000, 'not left waiting for the timeout');
});

t.test('ES module plugins', async (t) => {
  const p = await start(t, { plugin: path.join(helpers, 'channel-plugin.mjs') });
  t.same(p.methods.sort(), ['hello', 'shout']);
  t.equal(await p.call('hello', 'x'), 'hello x from esm');
  t.equal(await p.call('shout', 'x'), 'X');
});

t.test('a plugin that fails to load is an error, not a hang', async (t) => {
  await t.rejects(startRunner(unsandboxedSpawner, { plugin: path.join(helpers, 'does-not-exist.js') }), { code: 'MODULE_NOT_FOUND' });
});

t.test('pending calls keep the event loop alive, and only they', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const dist = path.join(__dirname, '..', 'lib', 'channel');
  // A host endpoint nobody answers: the outcome shows whether the loop was kept alive.
  const run = (body: string) =>
    spawnSync(
      process.execPath,
      [
        '-e',
        `const { RpcPeer } = require(${JSON.stringify(path.join(dist, 'rpc'))});
         const { loadAddon } = require(${JSON.stringify(path.join(dist, 'addon'))});
         const rpc = new RpcPeer(new (loadAddon().ChannelEndpoint)({ ringSize: 4096 }), { idleSpinUs: 100 });
         setTimeout(() => { process.stdout.write('alive'); process.exit(0); }, 300).unref();
         ${body}`,
      ],
      { encoding: 'utf8', timeout: 10000 },
    ).stdout;
  t.equal(run(''), '', 'no call: the process ends');
  t.equal(run(`rpc.call('x').catch(() => {});`), 'alive', 'a pending call keeps it running');
  t.equal(run(`rpc.call('x', [], { timeout: 50 }).catch(() => process.stdout.write('timeout '));`), 'timeout ', 'once it timed out, the process ends');
});

t.test('the runner stops spinning after messages once its spins find nothing', async (t) => {
  // A message every millisecond: the runner's spin after each (50 us by default) never sees the
  // next one. Spinning after every message costs up to 1500 × 50 us = 75 ms of CPU more than never
  // spinning (25.6 ms per 600 messages measured before the spin stopped itself). Both runners get
  // their messages in the same loop, so the machine's other load falls on both alike; the CPU
  // counts still differ by ~15 ms either way on a loaded machine, hence the wide margin.
  //
  // Up to three rounds, the least counted: one CI run read 45 ms in a round on a busy machine, while
  // a runner that spins after every message costs ~64 in every round, so the least of three still
  // tells the two apart.
  const N = 1500;
  const cpuMs = (p: PluginProcess) => Number(fs.readFileSync(`/proc/${p.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  const spinning = await start(t, { env: { WARDEN_RUNNER_SPIN_US: '50' } });
  const never = await start(t, { env: { WARDEN_RUNNER_SPIN_US: '0' } });
  const rounds: number[] = [];
  while (rounds.length < 3 && (rounds.length === 0 || Math.min(...rounds) >= 35)) {
    await spinning.call('add', 1, 1);
    await never.call('add', 1, 1);
    const s0 = cpuMs(spinning);
    const n0 = cpuMs(never);
    for (let i = 0; i < N; i++) {
      spinning.notify('noop');
      never.notify('noop');
      await new Promise((r) => setTimeout(r, 1));
    }
    await spinning.call('add', 1, 1);
    await never.call('add', 1, 1);
    rounds.push(cpuMs(spinning) - s0 - (cpuMs(never) - n0));
  }
  const extra = Math.min(...rounds);
  t.ok(extra < 35, `the spins cost ${extra.toFixed(1)} ms of CPU over ${N} messages (rounds: ${rounds.map((r) => r.toFixed(1)).join(', ')}; spinning after every message: ~64)`);
});

// A hostile sandbox side: a C program that writes garbage into the mapping, lies about lengths and
// positions, never answers or exits, and a plugin that floods. The host must get errors and a
// `protocol` violation, never crash or hang.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { startRunner, unsandboxedSpawner, type PluginProcess } from '../lib/process/plugin-process';
import type { ChannelViolation as Violation } from '../lib/channel/rpc';

const helpers = path.join(__dirname, '..', '..', 'test', 'helpers');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-hostile-'));
const peer = path.join(dir, 'hostile-peer');
const cc = spawnSync('cc', ['-O1', '-o', peer, path.join(helpers, 'channel-hostile-peer.c')], { encoding: 'utf8' });
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Starts the hostile program in place of the runner; resolves with what the host saw. */
async function attack(mode: string, timeoutMs = 3000) {
  const violations: Violation[] = [];
  let handle: PluginProcess | undefined;
  const spawner: typeof unsandboxedSpawner = (req) => {
    const proc = unsandboxedSpawner({ ...req, command: [peer, mode] });
    return proc;
  };
  const started = Date.now();
  const err = await startRunner(spawner, { plugin: '/nonexistent/plugin.js', loadTimeout: timeoutMs })
    .then((h) => {
      handle = h;
      return undefined;
    })
    .catch((e: unknown) => e as Error & { code?: string; violation?: unknown; cause?: unknown });
  return { err, violations, handle, elapsed: Date.now() - started };
}

t.test('hostile peers', { skip: cc.status !== 0 ? `cc failed: ${cc.stderr}` : false }, async (t) => {
  for (const mode of ['garbage', 'lying-length', 'lying-head', 'lying-total', 'bad-envelope', 'shrink', 'skip-payload', 'skip-from-start', 'skip-in-message']) {
    const r = await attack(mode);
    // The host ends a peer that breaks the protocol; the load reports that as the violation, with
    // the channel's own error as its cause.
    t.match(r.err, { code: 'ERR_SANDBOX_VIOLATION', violation: { kind: 'protocol' }, cause: { code: 'ERR_CHANNEL_PROTOCOL' } }, `${mode}: the pending call fails with a protocol violation`);
    t.ok(r.elapsed < 2500, `${mode}: at once, not at the timeout`);
    if (mode.startsWith('skip-')) t.match(r.err?.message, /skip/, `${mode}: refused as a bad skip frame: ${r.err?.message}`);
  }
  const tail = await attack('lying-tail', 1500);
  t.ok(['ERR_SANDBOX_VIOLATION', 'ERR_CALL_TIMEOUT'].includes(tail.err?.code ?? ''), `lying tail: an error, not a hang (${tail.err?.code})`);
  const silent = await attack('silent', 300);
  t.equal(silent.err?.code, 'ERR_CALL_TIMEOUT', 'silent peer: the call times out');
  const exited = await attack('exit', 5000);
  t.equal(exited.err?.code, 'ERR_CHANNEL_CLOSED', 'exiting peer: the call fails');
  t.ok(exited.elapsed < 2500, 'exiting peer: noticed at once');
});

t.test('a message the codec rejects is a protocol violation', async (t) => {
  const { RpcPeer } = await import('../lib/channel/rpc');
  const { loadAddon } = await import('../lib/channel/addon');
  const ep = new (loadAddon().ChannelEndpoint)({ ringSize: 4096 });
  const rpc = new RpcPeer(ep);
  const seen: Violation[] = [];
  rpc.on('violation', (v: Violation) => seen.push(v));
  // Feed the RPC layer a message that is not one (as if decoded from the ring).
  (rpc as unknown as { dispatch(b: Buffer): void }).dispatch(Buffer.from([9, 0, 0, 0, 0, 0, 0, 0, 0]));
  t.equal(seen.length, 1);
  t.equal(seen[0].kind, 'protocol');
  t.ok(rpc.closed);
});

t.test('a flooding plugin does not starve the host', async (t) => {
  const p = await startRunner(unsandboxedSpawner, { plugin: path.join(helpers, 'channel-plugin.js') });
  let events = 0;
  let dropped = 0;
  p.on('event', () => events++);
  p.on('events-dropped', (n: number) => (dropped += n));
  const t0 = performance.now();
  t.equal(await p.call('flood', 20000), 20000);
  await p.call('floodForever');
  // Timers still fire while the plugin floods, and the host can stop it.
  const ticks = await new Promise<number>((resolve) => {
    let n = 0;
    const iv = setInterval(() => {
      if (++n === 10) {
        clearInterval(iv);
        resolve(n);
      }
    }, 5);
  });
  t.equal(ticks, 10);
  const s = (performance.now() - t0) / 1000;
  // Events have a rate of their own (1,000 a second, a burst of 10,000); before, every one of them
  // reached the application's listeners.
  t.ok(events >= 10000 && events <= 10000 + Math.ceil(s * 1000) + 10, `events passed on: ${events} in ${s.toFixed(2)} s`);
  p.kill();
  t.match(await p.exited, { signal: 'SIGKILL' });
  t.ok(events + dropped > 20000, `the host kept receiving, and counted what it dropped (${events} + ${dropped})`);
});

t.test('the codec turns any malformed envelope into a CodecError', async (t) => {
  const { CodecError } = await import('../lib/channel/codec');
  const { DecoderState, decode } = await import('../lib/channel/decoder');
  const { Encoder } = await import('../lib/channel/encoder');
  // A deterministic generator, so a failure reproduces.
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  const values: unknown[] = [
    [1, 2],
    ['héllo', -0.5, null, undefined, true, 2n ** 70n, new Date(5)],
    { a: [1, { b: 'x' }], c: Buffer.alloc(10, 3), d: Buffer.alloc(5000, 4) },
    [new Map([[1, 2]]), new Set(['s'])],
  ];
  let others = 0;
  for (let i = 0; i < 20000; i++) {
    const enc = new Encoder();
    const state = new DecoderState();
    const kind = 1 + rnd(5);
    const len = enc.encode(kind, i, kind === 1 || kind === 4 ? `method${rnd(3)}` : undefined, values[rnd(values.length)]);
    const envelope = Buffer.from((enc as unknown as { scratch: Buffer }).scratch.subarray(0, len));
    const msg = Buffer.concat([envelope, ...(enc.parts ?? [])]);
    const n = 1 + rnd(4);
    for (let k = 0; k < n; k++) msg[rnd(msg.length)] = rnd(256);
    const cut = rnd(4) === 0 ? rnd(msg.length + 1) : msg.length;
    try {
      decode(msg, cut, rnd(2) === 0, state);
    } catch (e) {
      if (!(e instanceof CodecError)) others++;
    }
  }
  t.equal(others, 0, 'no other exception escapes the decoder');

  // Name numbers: used before defined, or redefined, is a violation.
  const enc = new Encoder();
  enc.encode(1, 1, 'first', []);
  const def = Buffer.from((enc as unknown as { scratch: Buffer }).scratch.subarray(0, 30));
  enc.sent();
  const refLen = enc.encode(1, 2, 'first', []);
  const ref = Buffer.from((enc as unknown as { scratch: Buffer }).scratch.subarray(0, refLen));
  const thrown = (fn: () => unknown) => {
    try {
      fn();
    } catch (e) {
      return e;
    }
    return undefined;
  };
  t.ok(thrown(() => decode(ref, ref.length, false, new DecoderState())) instanceof CodecError, 'a number used before its definition');
  const state = new DecoderState();
  const defLen = 9 + def.readUInt32LE(5);
  t.equal(decode(def, defLen, false, state).name, 'first');
  t.equal(decode(ref, ref.length, false, state).name, 'first');
  const other = Buffer.from(def.subarray(0, defLen));
  other[9 + 3 + 5] = 'F'.charCodeAt(0); // same number, another name
  t.ok(thrown(() => decode(other, other.length, false, state)) instanceof CodecError, 'a number redefined');
});

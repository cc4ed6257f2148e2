/**
 * What one message may cost its host to decode is bounded, summed over the whole message: BigInt
 * digits, string bytes, values (object keys weigh more), structured-clone bytes. A plugin past the
 * budget is a `protocol` violation; the host's event loop is never held long by one message.
 * Then the codec under random and mutated input, decoded with the host's budget.
 */
import t from 'tap';
import { performance } from 'node:perf_hooks';
import * as v8 from 'node:v8';

import { CodecError, PEER_LIMITS } from '../../lib/channel/codec';
import { DecoderState, decode } from '../../lib/channel/decoder';
import { Encoder } from '../../lib/channel/encoder';
import { expectUnloaded, HostMeter, hostileWorld } from '../helpers/hostile';

t.test('values that are expensive to decode', async (t) => {
  const { host } = await hostileWorld(t, {
    // A hundred BigInts of 100,000 digits each: every one within the old per-value limit.
    digits: `exports.activate = (host) => { host.on('go', () => host.emit('bomb', new Array(100).fill(10n ** 100000n - 1n))); };`,
    // One object of 200,000 keys: a dictionary, each key ~1 us to add.
    wide: `exports.activate = (host) => { host.on('go', () => { const o = {}; for (let i = 0; i < 200000; i++) o['k' + i] = i; host.emit('bomb', o); }); };`,
    // 48 MiB of two-byte UTF-8 text in one string.
    text: `exports.activate = (host) => { host.on('go', () => host.emit('bomb', 'é'.repeat(24 << 20))); };`,
    // A Map of 300,000 entries: a structured-clone value, decoded by v8.deserialize.
    cloned: `exports.activate = (host) => { host.on('go', () => { const m = new Map(); for (let i = 0; i < 300000; i++) m.set(i, 'v' + i); host.emit('bomb', m); }); };`,
    // 40,000 empty Buffers: each counted as one value (within 50,000) but ~1 us to make.
    buffers: `exports.activate = (host) => { host.on('go', () => host.emit('bomb', Array.from({ length: 40000 }, () => Buffer.alloc(0)))); };`,
    // Resizable ArrayBuffers of 4 GiB each at most, 32 in 250 bytes: each reserves its maximum of
    // the host's address space (9,000 in one 64 KiB message: 36 TiB, and a crash once kept).
    // 20,000 empty ArrayBuffers in 40 KB of structured data: ~10 ms to decode, up to 67 ms once
    // the host's young generation is full of them (its collector visits each).
    arraybuffers: `exports.activate = (host) => { host.on('go', () => host.emit('bomb', new Set(Array.from({ length: 20000 }, () => new ArrayBuffer(0))))); };`,
    resizable: `exports.activate = (host) => { host.on('go', () => host.emit('bomb', new Set(Array.from({ length: 32 }, () => new ArrayBuffer(0, { maxByteLength: 2 ** 32 - 1 }))))); };`,
  });
  let bombs = 0;
  host.on('event', () => bombs++);
  for (const [name, why] of [
    ['digits', /bigintDigits/],
    ['wide', /values/],
    ['text', /stringBytes/],
    ['cloned', /structuredBytes/],
    ['buffers', /values/],
    ['arraybuffers', /more than 1024 ArrayBuffers in a structured value/],
    ['resizable', /resizable ArrayBuffer/],
  ] as const) {
    const meter = new HostMeter();
    host.process(name)!.notify('go');
    await expectUnloaded(t, host, name, 'protocol', why);
    meter.check(t, name);
  }
  t.equal(bombs, 0, 'none of them was handed to the application');
});

t.test('the codec under random and mutated input, with the host budget', async (t) => {
  // A deterministic generator, so a failure reproduces.
  let seed = 0x2545f491;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  const deep: unknown[] = [];
  let d: unknown[] = deep;
  for (let i = 0; i < 200; i++) d = (d[0] = []) as unknown[];
  const values: unknown[] = [
    [1, 'two', 3.5, null, undefined, true, -7n, new Date(9)],
    { a: { b: { c: ['x', Buffer.alloc(40, 1)] } }, __proto__x: 1, big: 2n ** 200n },
    deep,
    new Array(3000).fill(0).map((_, i) => ({ i, s: 'é'.repeat(i % 7) })),
    [new Map<unknown, unknown>([[1, { a: [1, 2] }], ['k', new Set([1n, 'z'])]]), /re+gex/gi, new Float64Array([1.5, -2]), new Uint16Array(40)],
    Buffer.alloc(9000, 2),
  ];
  let others = 0;
  let slowest = 0;
  const N = 20000;
  for (let i = 0; i < N; i++) {
    let msg: Buffer;
    if (rnd(10) === 0) {
      // Raw noise behind a plausible header.
      msg = Buffer.alloc(9 + rnd(200));
      for (let k = 0; k < msg.length; k++) msg[k] = rnd(256);
      msg[0] = 1 + rnd(5);
      msg.writeUInt32LE(Math.max(0, msg.length - 9 - rnd(3)), 5);
    } else {
      const enc = new Encoder();
      const kind = 1 + rnd(5);
      const len = enc.encode(kind, i, kind === 1 || kind === 4 ? `m${rnd(3)}` : undefined, values[rnd(values.length)]);
      const parts = enc.parts ?? [];
      const envelope = len >= 0 ? Buffer.from((enc as unknown as { scratch: Buffer }).scratch.subarray(0, len)) : Buffer.alloc(0);
      msg = Buffer.concat([envelope, ...parts]);
      // Flip bytes, often inside a structured-clone blob (v8.deserialize's input).
      const flips = 1 + rnd(6);
      for (let k = 0; k < flips; k++) msg[rnd(msg.length)] = rnd(256);
    }
    const cut = rnd(5) === 0 ? rnd(msg.length + 1) : msg.length;
    const t0 = performance.now();
    try {
      decode(msg, cut, rnd(2) === 0, new DecoderState(), PEER_LIMITS);
    } catch (e) {
      if (!(e instanceof CodecError)) others++;
    }
    slowest = Math.max(slowest, performance.now() - t0);
  }
  t.equal(others, 0, `no exception but CodecError escapes the decoder (${N} inputs)`);
  t.comment(`slowest decode: ${slowest.toFixed(2)} ms`);

  // Structured-clone blobs alone, mutated harder: only CodecError, whatever v8.deserialize meets.
  const blobs = values.map((v) => v8.serialize(v));
  let escaped = 0;
  for (let i = 0; i < 5000; i++) {
    const b = Buffer.from(blobs[rnd(blobs.length)]!);
    for (let k = 0; k < 1 + rnd(8); k++) b[rnd(b.length)] = rnd(256);
    // A result (kind 2, no name) whose value is Tag.Structured (13) holding the blob.
    const envelope = Buffer.alloc(9 + 5 + b.length);
    envelope[0] = 2;
    envelope.writeUInt32LE(5 + b.length, 5);
    envelope[9] = 13;
    envelope.writeUInt32LE(b.length, 10);
    b.copy(envelope, 14);
    try {
      decode(envelope, envelope.length, false, new DecoderState(), PEER_LIMITS);
    } catch (e) {
      if (!(e instanceof CodecError)) escaped++;
    }
  }
  t.equal(escaped, 0, 'mutated structured-clone blobs give a value or a CodecError');
});

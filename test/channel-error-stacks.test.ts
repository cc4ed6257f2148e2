/**
 * The encoder facing an untrusted peer (errorStacks false): an Error anywhere in a structured value
 * (a Map, a Set, a class instance) is sent without its stack, and the walk that finds it cannot be
 * made endless by the value it walks. Encoded and decoded in-process; channel-rpc.test.ts checks
 * the same through a sandboxed plugin.
 */
import t from 'tap';

import { Kind } from '../lib/channel/codec';
import { DecoderState, decode } from '../lib/channel/decoder';
import { Encoder } from '../lib/channel/encoder';

function roundTrip(value: unknown, errorStacks: boolean): unknown {
  const scratch = Buffer.allocUnsafe(64 * 1024);
  const enc = new Encoder(scratch, errorStacks);
  const n = enc.encode(Kind.Result, 1, undefined, value);
  const msg = n >= 0 ? Buffer.concat([scratch.subarray(0, n), ...(enc.parts ?? [])]) : Buffer.concat(enc.parts!);
  return decode(msg, msg.length, false, new DecoderState()).value;
}

function frameOfThisFile(e: unknown): boolean {
  return /channel-error-stacks\.test/.test(String((e as Error).stack));
}

t.test('an Error in a Map, a Set or a class instance goes without its stack', async (t) => {
  class Outcome {
    constructor(readonly error: Error) {}
  }
  const value = new Map<unknown, unknown>([['a', new Set([new Outcome(new TypeError('deep', { cause: new RangeError('cause') }))])]]);
  const trusted = roundTrip(value, true) as Map<string, Set<{ error: Error }>>;
  t.ok(frameOfThisFile([...trusted.get('a')!][0]!.error), 'to a trusted peer the stack goes (this test can fail)');
  const got = roundTrip(value, false) as Map<string, Set<{ error: Error }>>;
  const e = [...got.get('a')!][0]!.error;
  t.match(e, { name: 'TypeError', message: 'deep' });
  t.notOk(frameOfThisFile(e), 'no stack of the sender');
  t.match(e.cause, { name: 'RangeError', message: 'cause' });
  t.notOk(frameOfThisFile(e.cause), 'nor of its cause');
});

t.test('the walk reads a Map as V8 does: an iterator the value replaced is not used', async (t) => {
  const m = new Map<unknown, unknown>([['k', new Error('in the map')]]);
  // An endless iterator: a walk through for...of would never end.
  (m as unknown as Record<symbol, unknown>)[Symbol.iterator] = function* () {
    for (;;) yield ['k', 1];
  };
  const got = roundTrip(m, false) as Map<string, Error>;
  t.equal(got.get('k')!.message, 'in the map');
  t.notOk(frameOfThisFile(got.get('k')), 'no stack of the sender');
});

t.test('a getter that makes a new object at every level ends in a RangeError, not an endless walk', async (t) => {
  class Endless {
    constructor() {
      Object.defineProperty(this, 'next', { enumerable: true, get: () => new Endless() });
    }
  }
  const started = Date.now();
  t.throws(() => roundTrip(new Map([[1, new Endless()]]), false), RangeError);
  t.ok(Date.now() - started < 10_000, `refused in ${Date.now() - started} ms`);
  // V8's serializer refuses it too (its recursion gives out): the same kind of error either way.
  t.throws(() => roundTrip(new Map([[1, new Endless()]]), true), RangeError);
});

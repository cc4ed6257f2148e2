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

t.test('the walk goes in V8\'s order: a value V8 sends is not refused as too deep', async (t) => {
  // A list of 12,000 nodes beside an array of them, last first: V8 meets every node from the array,
  // two levels down; a walk that took the list first went 12,000 deep and refused the value.
  type Node = { next?: Node };
  const nodes: Node[] = [];
  for (let i = 0; i < 12_000; i++) nodes.push(i === 0 ? {} : { next: nodes[i - 1] });
  const value = new Map<string, unknown>([['nodes', nodes], ['list', nodes[nodes.length - 1]], ['e', new Error('x')]]);
  const got = roundTrip(value, false) as Map<string, unknown>;
  t.equal((got.get('nodes') as Node[]).length, 12_000, 'sent whole');
  t.notOk(frameOfThisFile(got.get('e')), 'no stack of the sender');
});

t.test('a boxed string is not walked key by key (a character each)', async (t) => {
  const value = new Map<string, unknown>([['s', new String('a'.repeat(1 << 20))]]);
  const started = performance.now();
  const got = roundTrip(value, false) as Map<string, string>;
  const ms = performance.now() - started;
  t.equal(String(got.get('s')).length, 1 << 20);
  // The bound of the hostile suite's host event-loop checks; the key-by-key walk took seconds.
  t.ok(ms < 150, `encoded and decoded in ${ms.toFixed(1)} ms`);
});

t.test("what V8 cannot clone is refused without quoting it (a function's source) to an untrusted peer", async (t) => {
  class Holder {
    readonly secret = () => 'sk_live_not_for_plugins';
  }
  t.throws(() => roundTrip(new Holder(), true), /sk_live_not_for_plugins/, 'V8 quotes the source (the trusted direction keeps it)');
  let refusal: unknown;
  try {
    roundTrip(new Holder(), false);
  } catch (e) {
    refusal = e;
  }
  t.type(refusal, TypeError, 'refused');
  t.notMatch((refusal as Error).message, /sk_live/, 'quoting nothing');
});

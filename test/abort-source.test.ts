// The contexts a handler sees (a peer's call: channel/call-context.ts; a hook: hooks/invoke.ts) share
// one abort source. These are the channel's side; the hooks' side is in hooks-registry.test.ts.
import t from 'tap';
import { AbortSource } from '../lib/abort-source';
import { Context } from '../lib/channel/call-context';

t.test("a call's context: onAbort after the abort runs at once, and its forget function is harmless", async (t) => {
  const ctx = new Context('m');
  ctx.abort(new Error('gone'));
  let calls = 0;
  const forget = ctx.onAbort(() => calls++);
  t.equal(calls, 1, 'a listener added after the abort hears it at once (was never called)');
  forget();
  ctx.abort(new Error('again'));
  t.equal(calls, 1, 'a second abort is no abort');
});

t.test("a call's context: a listener that throws stops no other and does not reach the one aborting", async (t) => {
  const ctx = new Context('m');
  const heard: string[] = [];
  ctx.onAbort(() => heard.push('first'));
  ctx.onAbort(() => {
    throw new Error('a listener that throws');
  });
  ctx.onAbort(() => heard.push('after the thrower'));
  const forget = ctx.onAbort(() => heard.push('forgotten'));
  forget();
  t.doesNotThrow(() => ctx.abort(new Error('cancelled')));
  t.same(heard, ['first', 'after the thrower']);
  t.ok(ctx.aborted);
});

t.test('signal: made on first read, aborted with the reason whether read before or after', async (t) => {
  const before = new AbortSource();
  const signal = before.signal;
  t.equal(before.signal, signal, 'one signal');
  const reason = new Error('r');
  let events = 0;
  signal.addEventListener('abort', () => events++);
  before.abort(reason);
  t.equal(events, 1);
  t.ok(signal.aborted);
  t.equal(signal.reason, reason);

  const after = new AbortSource();
  after.abort(reason);
  t.ok(after.signal.aborted, 'a signal first read after the abort is aborted');
  t.equal(after.signal.reason, reason);
});

// HookRegistry: ordering, the four modes, timeouts and cancellation, error isolation, atomic replaceOwner.
import t from 'tap';
import { HookRegistry, HookAbortError, InvalidOptionError, UnknownHookError } from '../lib';
import type { HandlerContext, HookHandler } from '../lib';

function deferred<T = unknown>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const tick = () => new Promise((r) => setImmediate(r));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

function registry(mode: 'parallel' | 'series' | 'waterfall' | 'first', timeout?: number): HookRegistry {
  const r = new HookRegistry();
  r.declare(timeout === undefined ? { name: 'h', mode } : { name: 'h', mode, timeout });
  return r;
}

t.test('higher priority first, equal priority in registration order', async (t) => {
  const r = registry('series');
  const calls: string[] = [];
  const h = (name: string): HookHandler => () => { calls.push(name); return name; };
  r.register('h', 'a', h('a0'));
  r.register('h', 'b', h('b10'), { priority: 10 });
  r.register('h', 'c', h('c0'));
  r.register('h', 'd', h('d-5'), { priority: -5 });
  r.register('h', 'e', h('e10'), { priority: 10 });
  const res = await r.invoke('h', []);
  t.same(calls, ['b10', 'e10', 'a0', 'c0', 'd-5']);
  t.same(res.values, ['b10', 'e10', 'a0', 'c0', 'd-5'], 'values in handler order');
  t.same(res.outcomes.map((o) => o.owner), ['b', 'e', 'a', 'c', 'd'], 'outcomes in invocation order');
  t.same(r.handlers('h'), [
    { owner: 'b', priority: 10, kind: 'host' }, { owner: 'e', priority: 10, kind: 'host' },
    { owner: 'a', priority: 0, kind: 'host' }, { owner: 'c', priority: 0, kind: 'host' }, { owner: 'd', priority: -5, kind: 'host' },
  ]);
});

t.test('unregister removes exactly that handler, once', async (t) => {
  const r = registry('series');
  const f = () => 1;
  const off1 = r.register('h', 'a', f);
  r.register('h', 'a', f);
  off1();
  off1();
  t.equal(r.handlers('h').length, 1);
  t.same((await r.invoke('h', [])).values, [1]);
});

t.test('the handler list is snapshotted when invoke starts', async (t) => {
  const r = registry('series');
  const gate = deferred();
  const calls: string[] = [];
  r.register('h', 'a', async () => { calls.push('a'); await gate.promise; return 'a'; });
  r.register('h', 'b', () => { calls.push('b-old'); return 'b-old'; });
  const p = r.invoke('h', []);
  r.replaceOwner('b', [{ hook: 'h', handler: () => { calls.push('b-new'); return 'b-new'; } }]);
  r.register('h', 'c', () => { calls.push('c'); return 'c'; });
  gate.resolve(undefined);
  t.same((await p).values, ['a', 'b-old'], 'in-flight invoke keeps its snapshot');
  calls.length = 0;
  t.same((await r.invoke('h', [])).values, ['a', 'b-new', 'c'], 'the next invoke sees the new handlers');
});

t.test('parallel: all started at once, results in handler order', async (t) => {
  const r = registry('parallel');
  const gates = [deferred(), deferred(), deferred()];
  const started: number[] = [];
  gates.forEach((g, i) => r.register('h', `p${i}`, async (args) => { started.push(i); await g.promise; return `${args[0]}${i}`; }));
  const p = r.invoke('h', ['v']);
  await tick();
  t.same(started, [0, 1, 2], 'every handler started before any finished');
  gates[2].resolve(undefined);
  gates[0].resolve(undefined);
  gates[1].resolve(undefined);
  const res = await p;
  t.same(res.values, ['v0', 'v1', 'v2']);
  t.equal(res.value, undefined);
  t.equal(res.mode, 'parallel');
  t.equal(res.hook, 'h');
  t.same(res.errors, []);
});

t.test('series: one after another, each with the same args', async (t) => {
  const r = registry('series');
  const seen: unknown[][] = [];
  let running = 0;
  let overlap = false;
  for (let i = 0; i < 3; i++) {
    r.register('h', `s${i}`, async (args) => {
      if (running++ > 0) overlap = true;
      seen.push(args);
      await sleep(5);
      running--;
      return i;
    });
  }
  const args = [{ x: 1 }, 2];
  const res = await r.invoke('h', args);
  t.notOk(overlap, 'never two at once');
  t.same(res.values, [0, 1, 2]);
  t.equal(res.value, undefined);
  for (const a of seen) t.equal(a, args, 'same args array');
});

t.test('waterfall: each gets the previous result; failures pass the value through', async (t) => {
  const r = registry('waterfall', 50);
  const got: unknown[][] = [];
  r.register('h', 'a', (args) => { got.push(args); return (args[0] as number) + 1; }, { priority: 4 });
  r.register('h', 'b', () => { throw new Error('b failed'); }, { priority: 3 });
  r.register('h', 'c', async (args) => { got.push(args); return (args[0] as number) * 10; }, { priority: 2 });
  r.register('h', 'd', () => new Promise(() => {}), { priority: 1 });
  r.register('h', 'e', (args) => { got.push(args); return `${args[0]}!`; });
  const res = await r.invoke('h', [1, 'rest', 3]);
  t.equal(res.value, '20!');
  t.same(got, [[1, 'rest', 3], [2, 'rest', 3], [20, 'rest', 3]]);
  t.same(res.errors.map((o) => [o.owner, o.timedOut]), [['b', false], ['d', true]]);
  t.same(res.values, [2, 20, '20!']);
  t.equal(res.outcomes.length, 5);
});

t.test('waterfall with no args starts from undefined', async (t) => {
  const r = registry('waterfall');
  r.register('h', 'a', (args) => args.length);
  t.equal((await r.invoke('h', [])).value, 1);
});

t.test('first: stops at the first non-empty result', async (t) => {
  const r = registry('first');
  const calls: string[] = [];
  r.register('h', 'a', () => { calls.push('a'); return undefined; });
  r.register('h', 'b', async () => { calls.push('b'); return null; });
  r.register('h', 'c', () => { calls.push('c'); throw new Error('c'); });
  r.register('h', 'd', async () => { calls.push('d'); return 0; });
  r.register('h', 'e', () => { calls.push('e'); return 'late'; });
  const res = await r.invoke('h', []);
  t.equal(res.value, 0, '0 is not empty');
  t.same(calls, ['a', 'b', 'c', 'd'], 'e was not called');
  t.same(res.outcomes.map((o) => [o.owner, o.ok]), [['a', true], ['b', true], ['c', false], ['d', true]]);

  const none = registry('first');
  none.register('h', 'a', () => null);
  none.register('h', 'b', () => { throw new Error('x'); });
  const r2 = await none.invoke('h', []);
  t.equal(r2.value, undefined, 'undefined when no handler answers');
  t.equal(r2.outcomes.length, 2);
});

t.test('a throw, a rejection or a timeout never breaks the other handlers', async (t) => {
  for (const mode of ['parallel', 'series'] as const) {
    const r = registry(mode, 30);
    r.register('h', 'sync-throw', () => { throw Object.assign(new TypeError('bad input'), { code: 'E_BAD' }); });
    r.register('h', 'reject', async () => { throw new RangeError('async bad'); }, { kind: 'plugin' });
    r.register('h', 'hang', () => new Promise(() => {}), { kind: 'plugin' });
    r.register('h', 'good', async () => 'fine');
    const res = await r.invoke('h', []);
    t.same(res.values, ['fine'], mode);
    t.equal(res.errors.length, 3);
    const [a, b, c, d] = res.outcomes;
    t.match(a, { owner: 'sync-throw', kind: 'host', ok: false, timedOut: false, error: { name: 'TypeError', message: 'bad input', code: 'E_BAD' } });
    t.match(a.error!.stack, /bad input/);
    t.match(b, { owner: 'reject', kind: 'plugin', ok: false, timedOut: false, error: { name: 'RangeError', message: 'async bad' } });
    t.match(c, { owner: 'hang', ok: false, timedOut: true, error: { name: 'HookTimeoutError', code: 'ERR_HOOK_TIMEOUT' } });
    t.match(c.error!.message, /'hang'.*'h'.*30 ms/);
    t.ok(c.ms >= 25, `timed-out handler ran ~30 ms (${c.ms})`);
    t.match(d, { owner: 'good', ok: true, value: 'fine', timedOut: false });
    for (const o of res.outcomes) t.type(o.ms, 'number');
  }
});

t.test('timeouts: per-hook default, per-call override, signal aborted, late result ignored, no timers left', async (t) => {
  const r = registry('parallel', 40);
  let ctxSeen: HandlerContext | undefined;
  let aborted: unknown;
  r.register('h', 'slow', (_args, ctx) => {
    ctxSeen = ctx;
    ctx.signal.addEventListener('abort', () => { aborted = ctx.signal.reason; });
    return new Promise((resolve) => setTimeout(() => resolve('late'), 120));
  });
  r.register('h', 'slow-reject', () => new Promise((_, reject) => setTimeout(() => reject(new Error('late reject')), 120)));
  const before = timers();
  let res = await r.invoke('h', []);
  t.equal(ctxSeen!.timeout, 40);
  t.same(res.values, [], 'nothing in time');
  t.ok(res.outcomes.every((o) => o.timedOut));
  t.match(aborted, { code: 'ERR_HOOK_TIMEOUT' }, 'ctx.signal aborted with the timeout error');
  t.ok(ctxSeen!.signal.aborted);

  res = await r.invoke('h', [], { timeout: 200 });
  t.equal(timers(), before, 'timeout timers cleared as soon as the handlers settle');
  t.same(res.values, ['late'], 'per-call timeout overrides the hook');
  t.equal(res.errors[0].error!.message, 'late reject');
  await sleep(150); // let the late results of the first call arrive: ignored, no unhandled rejection
  t.equal(timers(), before, 'no timer left behind');
  t.equal(res.outcomes.length, 2);
});

t.test('timeout 0: no timer at all', async (t) => {
  const r = registry('series', 0);
  const gate = deferred();
  r.register('h', 'a', () => gate.promise);
  const before = timers();
  const p = r.invoke('h', []);
  await tick();
  t.equal(timers(), before, 'no timer while the handler runs');
  gate.resolve('done');
  t.same((await p).values, ['done']);
  const r2 = registry('series');
  r2.register('h', 'a', () => gate.promise);
  const p2 = r2.invoke('h', [], { timeout: 0 });
  await tick();
  t.equal(timers(), before, 'per-call timeout 0 too');
  await p2;
});

t.test('synchronous handlers are not timed out and need no timer', async (t) => {
  const r = registry('series', 1);
  r.register('h', 'a', () => { const end = Date.now() + 5; while (Date.now() < end); return 'sync'; });
  const res = await r.invoke('h', []);
  t.same(res.values, ['sync']);
  t.notOk(res.outcomes[0].timedOut);
});

t.test('a hook with no handler resolves at once', async (t) => {
  const r = registry('parallel');
  let late = false;
  setImmediate(() => { late = true; });
  const res = await r.invoke('h', [1]);
  t.notOk(late, 'before the next event-loop turn');
  t.same(res, { hook: 'h', mode: 'parallel', value: undefined, values: [], outcomes: [], errors: [] });
});

t.test('non-Error values and hostile errors are normalised safely', async (t) => {
  const r = registry('parallel');
  const hostile = {
    get message(): string { throw new Error('getter'); },
    get name(): string { throw new Error('getter'); },
    toString(): string { throw new Error('toString'); },
  };
  const proxy = new Proxy({}, {
    get() { throw new Error('trap'); }, getPrototypeOf() { throw new Error('trap'); }, has() { throw new Error('trap'); },
  });
  const thrown: unknown[] = [
    'a string', 42, null, undefined, Symbol('s'), { message: 'plain object', code: 7 }, hostile, proxy,
    Object.create(null), { name: 'X'.repeat(100_000), message: 'm'.repeat(100_000) },
  ];
  thrown.forEach((v, i) => r.register('h', `o${i}`, () => { throw v; }));
  r.register('h', 'rejects', () => Promise.reject(hostile));
  r.register('h', 'then-getter', () => ({ get then() { throw new Error('then getter'); } }));
  r.register('h', 'ok', () => 'ok');
  const res = await r.invoke('h', []);
  t.same(res.values, ['ok']);
  const e = res.outcomes.map((o) => o.error);
  t.same(e[0], { name: 'NonError', message: 'non-error value thrown: a string' });
  t.match(e[1]!.message, /42/);
  t.match(e[2]!.message, /null/);
  t.match(e[3]!.message, /undefined/);
  t.match(e[4]!.message, /Symbol\(s\)/);
  t.same(e[5], { name: 'Error', message: 'plain object', code: '7' });
  t.match(e[6], { name: 'NonError' });
  t.match(e[7], { name: 'NonError' });
  t.match(e[8], { name: 'NonError', message: /object/ });
  t.ok(e[9]!.name.length < 300 && e[9]!.message.length < 5000, 'bounded');
  t.match(e[10], { name: 'NonError' });
  t.match(e[11], { name: 'Error', message: 'then getter' });
  for (const x of e.slice(0, -1)) {
    t.type(x!.name, 'string');
    t.type(x!.message, 'string');
  }
});

t.test("caller's signal: already aborted", async (t) => {
  const r = registry('series');
  let called = false;
  r.register('h', 'a', () => { called = true; });
  const ac = new AbortController();
  ac.abort();
  await t.rejects(r.invoke('h', [], { signal: ac.signal }), { name: 'AbortError', code: 'ERR_HOOK_ABORTED' });
  t.notOk(called);
  const empty = registry('series');
  await t.rejects(empty.invoke('h', [], { signal: ac.signal }), { code: 'ERR_HOOK_ABORTED' }, 'also with no handler');
});

t.test("caller's signal aborts a series: the rest is not started, the running one is aborted", async (t) => {
  const r = registry('series', 0);
  const calls: string[] = [];
  let innerAborted = false;
  r.register('h', 'a', () => { calls.push('a'); return 1; });
  r.register('h', 'b', (_args, ctx) => {
    calls.push('b');
    return new Promise((resolve) => {
      ctx.signal.addEventListener('abort', () => { innerAborted = true; setTimeout(() => resolve('too late'), 5); });
    });
  });
  r.register('h', 'c', () => { calls.push('c'); });
  const ac = new AbortController();
  const before = timers();
  const p = r.invoke('h', [], { signal: ac.signal });
  await tick();
  ac.abort(new Error('client went away'));
  const err = await p.then(() => null, (e: unknown) => e);
  t.type(err, HookAbortError);
  t.match(err, { name: 'AbortError', code: 'ERR_HOOK_ABORTED', hook: 'h' });
  t.match((err as HookAbortError).reason, { message: 'client went away' });
  t.ok(innerAborted, 'ctx.signal of the running handler aborted');
  t.same(calls, ['a', 'b']);
  await sleep(20);
  t.equal(timers(), before);
});

t.test("caller's signal aborts a parallel invoke, and the timer of its running handlers is cleared", async (t) => {
  const r = registry('parallel', 10_000);
  const signals: AbortSignal[] = [];
  for (let i = 0; i < 3; i++) r.register('h', `p${i}`, (_a, ctx) => { signals.push(ctx.signal); return new Promise(() => {}); });
  r.register('h', 'sync', () => 'x');
  const ac = new AbortController();
  const before = timers();
  const p = r.invoke('h', [], { signal: ac.signal });
  t.equal(timers(), before + 1, 'one timer for the running handlers of the invocation (not one each)');
  ac.abort();
  await t.rejects(p, { code: 'ERR_HOOK_ABORTED' });
  t.ok(signals.every((s) => s.aborted));
  t.equal(timers(), before, 'timers cleared at once');
});

t.test('a handler that aborts the caller signal stops the series', async (t) => {
  const r = registry('series');
  const ac = new AbortController();
  let called = false;
  r.register('h', 'a', () => { ac.abort(); return 1; });
  r.register('h', 'b', () => { called = true; });
  await t.rejects(r.invoke('h', [], { signal: ac.signal }), { code: 'ERR_HOOK_ABORTED' });
  t.notOk(called);
});

t.test('a signal that never aborts is let go after the invocation', async (t) => {
  const r = registry('parallel');
  r.register('h', 'a', async () => 1);
  const ac = new AbortController();
  let listeners = 0;
  const orig = ac.signal.addEventListener.bind(ac.signal);
  const origRemove = ac.signal.removeEventListener.bind(ac.signal);
  ac.signal.addEventListener = ((...a: Parameters<typeof orig>) => { listeners++; return orig(...a); }) as typeof orig;
  ac.signal.removeEventListener = ((...a: Parameters<typeof origRemove>) => { listeners--; return origRemove(...a); }) as typeof origRemove;
  for (let i = 0; i < 5; i++) await r.invoke('h', [], { signal: ac.signal });
  t.equal(listeners, 0, 'every abort listener removed');
});

t.test('handler context', async (t) => {
  const r = new HookRegistry();
  r.declare({ name: 'ctx', mode: 'series', timeout: 1234 });
  let ctx: HandlerContext | undefined;
  r.register('ctx', 'me', (_a, c) => { ctx = c; }, { kind: 'plugin' });
  const res = await r.invoke('ctx', []);
  t.match(ctx, { hook: 'ctx', owner: 'me', timeout: 1234 });
  t.type(ctx!.signal, AbortSignal);
  t.notOk(ctx!.signal.aborted);
  t.equal(res.outcomes[0].kind, 'plugin');
});

t.test('declarations are validated and name the field', async (t) => {
  const r = new HookRegistry();
  r.declare({ name: 'request:before', mode: 'waterfall', description: 'rewrite a request' });
  t.same(r.declaration('request:before'), { name: 'request:before', mode: 'waterfall', timeout: 5000, description: 'rewrite a request' });
  t.ok(r.has('request:before'));
  t.notOk(r.has('nope'));
  t.equal(r.declaration('nope'), undefined);
  const bad: Array<[unknown, string, RegExp?]> = [
    [{ name: 'request:before', mode: 'series' }, 'hooks.name', /already declared/],
    [{ name: 'Upper', mode: 'series' }, 'hooks.name'],
    [{ name: '', mode: 'series' }, 'hooks.name'],
    [{ name: 'a'.repeat(129), mode: 'series' }, 'hooks.name'],
    [{ name: 'with space', mode: 'series' }, 'hooks.name'],
    [{ name: 42, mode: 'series' }, 'hooks.name'],
    [{ name: 'x', mode: 'sequential' }, 'hooks.mode', /parallel, series, waterfall, first/],
    [{ name: 'x', mode: 'series', timeout: -1 }, 'hooks.timeout', /hooks.timeout: must be a non-negative integer number of ms/],
    [{ name: 'x', mode: 'series', timeout: 1.5 }, 'hooks.timeout'],
    [{ name: 'x', mode: 'series', timeout: '100' }, 'hooks.timeout'],
    [{ name: 'x', mode: 'series', timeout: 2 ** 31 }, 'hooks.timeout'],
    [{ name: 'x', mode: 'series', timeout: NaN }, 'hooks.timeout'],
    [{ name: 'x', mode: 'series', description: 5 }, 'hooks.description'],
    [{ name: 'x', mode: 'series', timout: 5 }, 'hooks.timout', /unknown field/],
    [null, 'hooks'],
  ];
  for (const [decl, field, msg] of bad) {
    const e = (() => { try { r.declare(decl as never); return undefined; } catch (err) { return err; } })();
    t.type(e, InvalidOptionError, JSON.stringify(decl));
    t.equal((e as InvalidOptionError).field, field);
    if (msg) t.match((e as Error).message, msg);
  }
  t.same(r.hooks().map((h) => h.name), ['request:before'], 'nothing declared by the failed calls');
  r.declare({ name: 'x', mode: 'first', timeout: 0 });
  t.equal(r.declaration('x')!.timeout, 0);
  t.ok(Object.isFrozen(r.declaration('x')));
});

t.test('register and invoke validate their arguments', async (t) => {
  const r = new HookRegistry();
  r.declare({ name: 'a', mode: 'series' });
  r.declare({ name: 'b', mode: 'series' });
  const f = () => 1;
  t.throws(() => r.register('c', 'o', f), { code: 'ERR_HOOK_UNKNOWN', hook: 'c', message: /unknown hook 'c'; declared hooks: a, b/ });
  t.throws(() => r.register('c', 'o', f), UnknownHookError);
  t.throws(() => r.register('a', '', f), { code: 'ERR_INVALID_OPTION', field: 'owner' });
  t.throws(() => r.register('a', 'o', 'nope' as never), { code: 'ERR_INVALID_OPTION', field: 'handler' });
  t.throws(() => r.register('a', 'o', f, { priority: 1.5 }), { code: 'ERR_INVALID_OPTION', field: 'options.priority' });
  t.throws(() => r.register('a', 'o', f, { kind: 'guest' as never }), { code: 'ERR_INVALID_OPTION', field: 'options.kind' });
  t.throws(() => r.register('a', 'o', f, { prio: 1 } as never), { code: 'ERR_INVALID_OPTION', field: 'options.prio' });
  t.throws(() => r.handlers('zzz'), UnknownHookError);
  t.equal(r.handlers('a').length, 0, 'nothing registered by the failed calls');
  await t.rejects(r.invoke('zzz', []), { code: 'ERR_HOOK_UNKNOWN', message: /'zzz'.*a, b/ });
  await t.rejects(r.invoke('a', 'x' as never), { code: 'ERR_INVALID_OPTION', field: 'args' });
  await t.rejects(r.invoke('a', [], { timeout: -5 }), { code: 'ERR_INVALID_OPTION', field: 'invoke.timeout' });
  await t.rejects(r.invoke('a', [], { signal: {} as never }), { code: 'ERR_INVALID_OPTION', field: 'invoke.signal' });
  await t.rejects(r.invoke('a', [], { timout: 5 } as never), { code: 'ERR_INVALID_OPTION', field: 'invoke.timout' });
  t.same(new HookRegistry().hooks(), []);
  t.throws(() => new HookRegistry().register('x', 'o', f), { message: /no hook is declared/ });
});

t.test('replaceOwner is atomic across hooks and all-or-nothing', async (t) => {
  const r = new HookRegistry();
  r.declare({ name: 'one', mode: 'series', timeout: 0 });
  r.declare({ name: 'two', mode: 'series' });
  r.register('one', 'p', () => 'one-v1', { kind: 'plugin' });
  r.register('two', 'p', () => 'two-v1', { kind: 'plugin' });
  r.register('one', 'host', () => 'host');

  // An invocation of 'one' in flight while the reload happens keeps v1; every later one sees v2 on both hooks.
  const gate = deferred();
  r.register('one', 'gate', () => gate.promise, { priority: 100 });
  const inflight = r.invoke('one', []);
  r.replaceOwner('p', [
    { hook: 'one', handler: () => 'one-v2', options: { kind: 'plugin' } },
    { hook: 'two', handler: () => 'two-v2', options: { kind: 'plugin' } },
  ]);
  t.same((await r.invoke('two', [])).values, ['two-v2']);
  gate.resolve('g');
  t.same((await inflight).values, ['g', 'one-v1', 'host']);
  t.same((await r.invoke('one', [])).values, ['g', 'one-v2', 'host'], 'reloaded handler keeps its place before host');

  // A bad entry anywhere: nothing changes.
  t.throws(() => r.replaceOwner('p', [{ hook: 'one', handler: () => 'v3' }, { hook: 'nope', handler: () => 'v3' }]), UnknownHookError);
  t.throws(() => r.replaceOwner('p', [{ hook: 'one', handler: () => 'v3' }, { hook: 'two', handler: 5 as never }]), { code: 'ERR_INVALID_OPTION', field: 'handlers[1].handler' });
  t.throws(() => r.replaceOwner('p', [{ hook: 'one', handler: () => 'v3', options: { priority: 'high' as never } }]), { code: 'ERR_INVALID_OPTION', field: 'handlers[0].options.priority' });
  t.same((await r.invoke('two', [])).values, ['two-v2'], 'unchanged after refused replacements');

  // Fewer handlers than before, and a new hook.
  r.declare({ name: 'three', mode: 'series' });
  r.replaceOwner('p', [{ hook: 'three', handler: () => 'three' }]);
  t.same(r.handlers('two'), []);
  t.same(r.handlers('one').map((h) => h.owner), ['gate', 'host']);
  t.same((await r.invoke('three', [])).values, ['three']);
  t.same(r.owners().sort(), ['gate', 'host', 'p']);
  r.replaceOwner('p', []);
  t.same(r.owners().sort(), ['gate', 'host'], 'an empty set removes the owner');
});

t.test('replaceOwner: positions among equal priorities survive a reload, extra handlers go last', async (t) => {
  const r = registry('series');
  const h = (v: string) => () => v;
  r.register('h', 'a', h('a1'));
  r.register('h', 'b', h('b1'));
  r.register('h', 'a', h('a2'));
  r.register('h', 'c', h('c1'));
  r.replaceOwner('a', [{ hook: 'h', handler: h('A1') }, { hook: 'h', handler: h('A2') }, { hook: 'h', handler: h('A3') }]);
  t.same((await r.invoke('h', [])).values, ['A1', 'b1', 'A2', 'c1', 'A3']);
  r.replaceOwner('a', [{ hook: 'h', handler: h('P'), options: { priority: 1 } }]);
  t.same((await r.invoke('h', [])).values, ['P', 'b1', 'c1'], 'priority still wins');
});

t.test('removeOwner, and an old unregister after a replacement is a no-op', async (t) => {
  const r = registry('series');
  const off = r.register('h', 'p', () => 'old');
  r.register('h', 'q', () => 'q');
  r.replaceOwner('p', [{ hook: 'h', handler: () => 'new' }]);
  off();
  t.same((await r.invoke('h', [])).values, ['new', 'q']);
  r.removeOwner('p');
  t.same((await r.invoke('h', [])).values, ['q']);
  r.removeOwner('never-registered');
  t.throws(() => r.removeOwner(''), { code: 'ERR_INVALID_OPTION', field: 'owner' });
});

t.test('replaceOwner finds an owner on every hook it registered on, before and after a replacement', async (t) => {
  // replaceOwner looks only at the hooks an owner has handlers on (not at every declared hook).
  const r = new HookRegistry();
  for (const name of ['one', 'two', 'three']) r.declare({ name, mode: 'series' });
  r.replaceOwner('p', [{ hook: 'one', handler: () => 'one' }]);
  r.register('two', 'p', () => 'two');
  const off = r.register('three', 'p', () => 'three');
  off();
  r.register('three', 'q', () => 'q');
  t.same([r.handlers('one').length, r.handlers('two').length, r.handlers('three').length], [1, 1, 1]);
  r.replaceOwner('p', [{ hook: 'three', handler: () => 'p3' }]);
  t.same([r.handlers('one'), r.handlers('two')], [[], []], 'the handlers on one (replaceOwner) and two (register) are gone');
  t.same((await r.invoke('three', [])).values, ['q', 'p3']);
  r.removeOwner('p');
  t.same(r.owners(), ['q']);
  t.same((await r.invoke('three', [])).values, ['q']);
});

t.test('ctx.onAbort: called once on timeout or abort, at once when already aborted, forgettable; ctx.aborted follows', async (t) => {
  const r = registry('parallel', 40);
  const events: string[] = [];
  let ctxSeen: HandlerContext | undefined;
  r.register('h', 'slow', (_args, ctx) => {
    ctxSeen = ctx;
    t.equal(ctx.aborted, false, 'not aborted while it runs');
    ctx.onAbort(() => events.push('first'));
    const forget = ctx.onAbort(() => events.push('forgotten'));
    ctx.onAbort(() => { throw new Error('a listener that throws'); });
    ctx.onAbort(() => events.push('after the thrower'));
    forget();
    return new Promise(() => {});
  });
  const res = await r.invoke('h', []);
  t.ok(res.outcomes[0]!.timedOut);
  t.same(events, ['first', 'after the thrower'], 'each listener once, the forgotten one never, a throwing one stops none');
  t.equal(ctxSeen!.aborted, true);
  ctxSeen!.onAbort(() => events.push('late'));
  t.same(events, ['first', 'after the thrower', 'late'], 'a listener added after the abort runs at once');

  const r2 = registry('parallel');
  let ctx2: HandlerContext | undefined;
  let calls = 0;
  r2.register('h', 'p', (_a, ctx) => { ctx2 = ctx; ctx.onAbort(() => calls++); return new Promise(() => {}); });
  const ac = new AbortController();
  const p = r2.invoke('h', [], { signal: ac.signal });
  ac.abort();
  await t.rejects(p, { code: 'ERR_HOOK_ABORTED' });
  t.equal(calls, 1, "the caller's abort reaches onAbort");
  t.equal(ctx2!.aborted, true);
});

t.test('one timer serves handlers with different deadlines: each times out after its own timeout', async (t) => {
  // Series: each handler starts when the one before settles, so their deadlines differ.
  const r = registry('series', 60);
  const started: number[] = [];
  r.register('h', 'quick', () => new Promise((resolve) => setTimeout(() => resolve('quick'), 30)), { priority: 2 });
  r.register('h', 'never', () => { started.push(performance.now()); return new Promise(() => {}); }, { priority: 1 });
  r.register('h', 'never-too', () => { started.push(performance.now()); return new Promise(() => {}); });
  const before = timers();
  const t0 = performance.now();
  const res = await r.invoke('h', []);
  const took = performance.now() - t0;
  t.same(res.outcomes.map((o) => [o.owner, o.timedOut]), [['quick', false], ['never', true], ['never-too', true]]);
  for (const o of res.outcomes.slice(1)) t.ok(o.ms >= 59, `${o.owner} ran its whole timeout (${o.ms.toFixed(1)} ms)`);
  t.ok(took >= 30 + 60 + 60 - 2, `the series took each handler's time (${took.toFixed(0)} ms)`);
  t.equal(timers(), before, 'no timer left behind');

  // Parallel: handlers started in one turn share the timer; the ones that answer are not timed out.
  const p = registry('parallel', 50);
  for (let i = 0; i < 50; i++) p.register('h', `s${i}`, () => new Promise((resolve) => setTimeout(() => resolve(i), i % 2 === 0 ? 5 : 500)));
  const pr = await p.invoke('h', []);
  t.equal(pr.values.length, 25, 'the quick half answered');
  t.equal(pr.outcomes.filter((o) => o.timedOut).length, 25, 'the slow half timed out');
  await sleep(0);
  t.equal(timers() - before, 25, "only the handlers' own timers remain (the hook's is gone)");
});

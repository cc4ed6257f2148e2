// Test plugin for the channel tests.
let host;
let aborted = 0;
exports.activate = (h) => {
  host = h;
  h.on('ping', (n) => h.emit('pong', n + 1));
};
exports.add = (a, b) => a + b;
exports.echo = (x) => x;
exports.size = (b) => b.length;
exports.make = (n) => Buffer.alloc(n, 7);
exports.config = () => host.config;
exports.boom = () => {
  const e = new TypeError('kaboom');
  e.code = 'E_BOOM';
  throw e;
};
exports.rejects = async () => {
  throw new RangeError('async kaboom');
};
exports.hang = () => new Promise(() => {});
exports.waitAbort = function () {
  return new Promise((resolve) => {
    this.signal.addEventListener('abort', () => {
      aborted++;
      host.emit('aborted', aborted);
      resolve('late');
    });
  });
};
exports.askHost = async (x) => host.call('double', x);
// What the plugin learns from an Error in a value a host method answers with (allSettled's shape).
exports.hostErrorValue = async (method) => {
  const [r] = await host.call(method);
  const e = r.reason;
  return { isError: e instanceof Error, name: e.name, message: e.message, stack: String(e.stack), cause: String(e.cause && e.cause.stack) };
};
// Every Error the plugin finds in what a host method answers (Map keys and values, Sets, objects, causes).
exports.errorsIn = async (method) => {
  const found = [];
  const seen = new Set();
  const walk = (x) => {
    if (x === null || typeof x !== 'object' || seen.has(x)) return;
    seen.add(x);
    if (x instanceof Error) {
      found.push({ name: x.name, message: x.message, stack: String(x.stack) });
      walk(x.cause);
    } else if (x instanceof Map) {
      for (const [k, y] of x) { walk(k); walk(y); }
    } else if (x instanceof Set) {
      for (const y of x) walk(y);
    } else {
      for (const k of Object.keys(x)) walk(x[k]);
    }
  };
  walk(await host.call(method));
  return found;
};
// Sends a host method a few hundred bytes that stand for 2^40 values (a class instance travels by
// structured clone, which keeps shared references); what the plugin gets back, or the error.
exports.sendShared = async (method) => {
  class Box {}
  let d = [];
  for (let i = 0; i < 40; i++) d = [d, d];
  const b = new Box();
  b.v = d;
  try {
    await host.call(method, b);
    return 'answered';
  } catch (e) {
    return e.message;
  }
};
// What the plugin learns from a host method that throws.
exports.hostError = async (method) => {
  try {
    await host.call(method);
    return null;
  } catch (e) {
    return { name: e.name, message: e.message, code: e.code, stack: String(e.stack) };
  }
};
exports.log = (m) => {
  console.log('from plugin', m);
  host.log('via host.log', m);
  return true;
};
exports.exit = (code) => process.exit(code);
exports.dieLater = (code) => {
  setTimeout(() => process.exit(code), 50);
  return new Promise(() => {});
};
exports.flood = (n) => {
  for (let i = 0; i < n; i++) host.emit('flood', i);
  return n;
};
exports.floodForever = () => {
  const tick = () => {
    for (let i = 0; i < 1000; i++) host.emit('flood', i);
    setImmediate(tick);
  };
  tick();
  return true;
};

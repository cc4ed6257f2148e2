/**
 * A plugin's messages must not crash its host: whatever arrives, a failure while the host handles
 * it is that plugin's `protocol` violation, and the host (this test process) keeps serving.
 */
import t from 'tap';

import { expectUnloaded, HostMeter, hostileWorld, RING_WRITER } from '../helpers/hostile';

t.test('a plugin cannot throw past the channel into its host', async (t) => {
  const { host } = await hostileWorld(t, {
    // The runner formats logs with util.format, looked up at each call: replaced, the host gets an
    // object whose String() throws, where it expects a string.
    formatter: `exports.activate = (host) => { host.on('go', () => {
      require('util').format = () => ({ toString: 1 });
      console.log('boom');
    }); };`,
    // Fifty thousand arguments: spread again on the host, they overflowed its stack. Refused by the
    // decoding budget (50,000 values) or, below it, by the bound on arguments (256).
    spreader: `exports.activate = (host) => { host.on('go', () => host.emit('many', ...new Array(50000).fill(1))); };`,
    // The same poisoned log, written straight into the ring through /proc/self/mem.
    scribbler: `${RING_WRITER}
      exports.activate = (host) => { host.on('go', () => {
        ringWriter().inject(4, 0, Buffer.concat([enc.str('$log'), enc.arr([enc.str('info'), enc.obj([['toString', enc.int(1)]])])]));
        return new Promise(() => {});
      }); };`,
  });
  const meter = new HostMeter();
  for (const [name, why] of [
    ['formatter', /\$log takes a level/],
    ['spreader', /50000 arguments|more than 50000 values/],
    ['scribbler', /\$log takes a level/],
  ] as const) {
    host.process(name)!.notify('go');
    await expectUnloaded(t, host, name, 'protocol', why);
  }
  meter.check(t, 'throwing messages');
});

/**
 * Answers a plugin writes straight into its ring (/proc/self/mem), with ids of its choosing: a
 * repeated or late answer is dropped (and paid for like a call), an answer to a call the host never
 * made is a `protocol` violation. Neither settles anything but the plugin's own calls.
 */
import t from 'tap';

import { expectUnloaded, HostMeter, hostileWorld, RING_WRITER } from '../helpers/hostile';

t.test('answers with wrong and repeated ids', async (t) => {
  const { host } = await hostileWorld(t, {
    // Ids 1 and 2 were the host's $load and $hooks calls, answered long ago: answered again, twice,
    // they are repeats. Then one to an id the host has not reached.
    liar: `${RING_WRITER}
      exports.activate = (host) => { host.on('go', () => {
        const w = ringWriter();
        for (const id of [1, 2, 1, 2]) w.inject(2, id, enc.str('forged answer ' + id));
        w.inject(2, 0x7fffffff, enc.str('an answer to nothing'));
        return new Promise(() => {});
      }); };`,
  });
  const meter = new HostMeter();
  host.process('liar')!.notify('go');
  await expectUnloaded(t, host, 'liar', 'protocol', /answer to call 2147483647, which was never made/);
  meter.check(t, 'forged answers');
});

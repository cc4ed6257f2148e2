/**
 * The bounds a plugin's channel is held to (`channelLimits`): given ones are checked field by field
 * and merged with the defaults (a partial `decode` keeps the other budgets), and the allowance
 * counts decoding time as well as messages and bytes.
 */
import t from 'tap';

import { CodecError, Kind } from '../lib/channel/codec';
import { DecoderState, decode } from '../lib/channel/decoder';
import { Encoder } from '../lib/channel/encoder';
import { PeerAllowance, PLUGIN_PEER_LIMITS, peerLimits, type ChannelLimits } from '../lib/channel/peer-limits';
import { InvalidOptionError } from '../lib/errors';
import { PluginWorld } from './helpers/plugins';

t.test('a partial decode budget keeps the default of every other field', async (t) => {
  const l = peerLimits({ decode: { values: 100_000 } });
  t.equal(l.decode.values, 100_000);
  t.equal(l.decode.stringBytes, PLUGIN_PEER_LIMITS.decode.stringBytes);
  // Before: `decode` replaced whole, stringBytes undefined, and `undefined - n < 0` never held.
  const scratch = Buffer.alloc(4 << 20);
  const enc = new Encoder(scratch);
  const len = enc.encode(Kind.Notify, 0, 'text', ['x'.repeat(2 << 20)]);
  const msg = Buffer.concat(len === -1 ? enc.parts! : [scratch.subarray(0, len), ...(enc.parts ?? [])]);
  t.throws(() => decode(msg, msg.length, false, new DecoderState(), l.decode), new CodecError('message over the decoding budget: more than 1048576 stringBytes in one message (split it; bytes travel as a Buffer at no decoding cost)'));
  t.equal(peerLimits(undefined), PLUGIN_PEER_LIMITS, 'nothing given: the defaults');
});

t.test('a bad bound is refused, naming the field', async (t) => {
  const bad: [unknown, RegExp][] = [
    [{ messagesPerSecond: '100' }, /^channelLimits\.messagesPerSecond: must be a positive number \(Infinity: no bound\), got 100$/],
    [{ decodeMsPerSecond: 0 }, /^channelLimits\.decodeMsPerSecond: must be a positive number/],
    [{ floodGraceMs: Infinity }, /^channelLimits\.floodGraceMs: must be a positive number, got Infinity$/],
    [{ maxArgs: 2.5 }, /^channelLimits\.maxArgs: must be a positive whole number/],
    [{ queueBytes: NaN }, /^channelLimits\.queueBytes: /],
    [{ decode: { values: -1 } }, /^channelLimits\.decode\.values: must be a positive whole number/],
    [{ decode: { strings: 10 } }, /^channelLimits\.decode\.strings: is not a decoding budget \(known: values, stringBytes, bigintDigits, structuredBytes\)$/],
    [{ decode: 5 }, /^channelLimits\.decode: must be an object/],
    [{ messagesPerSec: 10 }, /^channelLimits\.messagesPerSec: is not a channel bound/],
    [null, /^channelLimits: must be an object/],
  ];
  for (const [given, message] of bad) {
    t.throws(() => peerLimits(given as ChannelLimits), InvalidOptionError, JSON.stringify(given));
    t.throws(() => peerLimits(given as ChannelLimits), { message }, JSON.stringify(given));
  }
  t.same(peerLimits({ messagesPerSecond: Infinity }).messagesPerSecond, Infinity, 'Infinity: no bound');
  // The host refuses them when it is made, before any plugin is started.
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  t.throws(() => w.host({ channelLimits: { bytesPerSecond: -5 } }), { code: 'ERR_INVALID_OPTION', field: 'channelLimits.bytesPerSecond' });
});

t.test('decoding time past its rate throttles, and held past the grace is a flood if the host really spent it', async (t) => {
  const l = peerLimits({ decodeMsPerSecond: 100, burstSeconds: 1, floodGraceMs: 200 });
  const pauses: boolean[] = [];
  const a = new PeerAllowance(l, (p) => pauses.push(p));
  t.teardown(() => a.stop());
  t.ok(a.charge(0, 0, 90), 'within the burst');
  t.same(pauses, [], 'not throttled');
  t.ok(a.charge(0, 0, 20), 'over it: still delivered');
  t.same(pauses, [true], 'but delivery pauses');
  // The host's cpu is busy meanwhile (the decoding the charges stand for).
  const end = performance.now() + 250;
  while (performance.now() < end);
  await new Promise((r) => setTimeout(r, 10));
  t.same(pauses, [true, false], 'and resumes once a tenth of the burst is back');
  // Still over (the allowance never refilled to half) after the grace: a flood.
  t.notOk(a.charge(0, 0, 100), 'a flood');
  t.match(a.floodMessage, /more than 100 ms a second decoding its messages for 200 ms/);
});

t.test('decoding time that was the host waiting for a core is throttled, never a flood', async (t) => {
  // Wall time charged while this process used almost no cpu: a host short of cores, not a peer
  // that costs. Before: unloaded after the grace (an honest plugin on a loaded machine).
  const l = peerLimits({ decodeMsPerSecond: 100, burstSeconds: 1, floodGraceMs: 200 });
  const pauses: boolean[] = [];
  const a = new PeerAllowance(l, (p) => pauses.push(p));
  t.teardown(() => a.stop());
  for (let i = 0; i < 4; i++) {
    t.ok(a.charge(0, 0, 150), `charge ${i}: still a peer`);
    await new Promise((r) => setTimeout(r, 150));
  }
  t.ok(pauses.includes(true), 'it was throttled');
  // Messages over their rate need no cpu to be a flood.
  const m = new PeerAllowance(peerLimits({ messagesPerSecond: 10, burstSeconds: 1, floodGraceMs: 100 }), () => undefined);
  t.teardown(() => m.stop());
  let flood = false;
  const end = performance.now() + 1000;
  while (!flood && performance.now() < end) {
    flood = !m.charge(1, 1, 0);
    await new Promise((r) => setTimeout(r, 5));
  }
  t.ok(flood, 'messages over their rate past the grace: a flood');
  t.match(m.floodMessage, /more than 10 messages/);
});

t.test('messages within the rates and their decoding within budget pass untouched', async (t) => {
  const a = new PeerAllowance(PLUGIN_PEER_LIMITS, () => t.fail('throttled'));
  t.teardown(() => a.stop());
  // 20,000 small messages at 5 us of decoding each: 100 ms, a quarter of the burst.
  for (let i = 0; i < 20_000; i++) if (!a.charge(1, 64, 0.005)) t.fail('flood');
  t.pass('never throttled');
});

// Request-and-answer traffic reuses the start of each ring (kFrameSkip, native/channel_frame.h)
// instead of walking through all of it: each new page cost a first-touch fault in both processes
// (most of a sync call's p99 on a virtual machine) and made the whole ring resident. Observed from
// the host's own mapping of the rings (/proc/self/smaps), after more traffic than a lap holds.
import t from 'tap';
import * as path from 'node:path';

import { startRunner, unsandboxedSpawner } from '../lib/process/plugin-process';
import { channelRingRss } from './helpers/scale';

const plugin = path.join(__dirname, '..', '..', 'test', 'helpers', 'channel-plugin.js');
const RING = 1 << 20;

t.test('small calls stay in the first pages of the rings, over many laps', async (t) => {
  const p = await startRunner(unsandboxedSpawner, { plugin, ringSize: RING });
  t.teardown(() => p.close(500));
  const before = channelRingRss();
  const pad = 'x'.repeat(100);
  let bytes = 0;
  for (let i = 0; i < 40000; i++) {
    if (p.callSync('add', i, 1) !== i + 1) throw new Error(`sync call ${i}: wrong answer`);
    bytes += 2 * (16 + 48);
  }
  for (let i = 0; i < 5000; i++) {
    if ((await p.call('echo', pad + i)) !== pad + i) throw new Error(`async call ${i}: wrong answer`);
    bytes += 2 * (16 + pad.length + 40);
  }
  t.ok(bytes > 4 * RING, `the traffic (~${(bytes / RING).toFixed(1)} MiB, both ways) is several laps of each ring`);
  const results = await Promise.all(Array.from({ length: 500 }, (_, i) => p.call('add', i, 1)));
  t.same(results, Array.from({ length: 500 }, (_, i) => i + 1), 'a burst in flight at once (the ring is not empty: no skip) keeps every answer');
  const rss = channelRingRss();
  t.ok(rss - before < 192 * 1024, `the rings' resident memory stays small: ${(rss / 1024).toFixed(0)} KiB of ${(2 * RING) / 1024} KiB mapped`);
  // A large message still walks through the ring (it has to): that is where pages become resident.
  const big = Buffer.alloc(RING / 2 + 12345, 7);
  t.same(await p.call('echo', big), big, 'a chunked message after all those skips arrives whole');
  t.equal(p.callSync('add', 1, 1), 2, 'and small calls go on after it');
});

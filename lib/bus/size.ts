/**
 * How many bytes a value decoded from a plugin's channel stands for, counted up to a bound (the
 * walk stops as soon as the bound is passed, so a huge value costs no more than the bound). Map,
 * Set, Error and RegExp, which arrive by structured clone, count what they hold.
 *
 * Never less than the channel's encoding of it (lib/channel/codec): each string, byte array, array
 * and object costs a tag and a length (5 bytes) there, a number up to 9. The bus keeps a plugin's
 * pending bytes under its channel's queue bound by this count: an array of 49,000 empty Buffers
 * counted 2 bytes and took ~245 KB on the wire, so a publisher could overfill an honest
 * subscriber's queue and get it unloaded for a flood.
 */
export function sizeOver(v: unknown, limit: number): number {
  let total = 0;
  const stack: unknown[] = [v];
  while (stack.length > 0) {
    const x = stack.pop();
    if (typeof x === 'string') total += Buffer.byteLength(x) + 5;
    else if (x === null || x === undefined || typeof x === 'boolean') total += 4;
    else if (typeof x === 'number') total += 9;
    else if (typeof x === 'bigint') total += 9 + Math.ceil(x.toString(16).length / 2);
    else if (ArrayBuffer.isView(x)) total += x.byteLength + 5;
    else if (x instanceof ArrayBuffer) total += x.byteLength + 5;
    // Map and Set (structured clone) hold their contents outside their own properties.
    else if (x instanceof Map) {
      total += 5;
      for (const [k, e] of x) stack.push(k, e);
    } else if (x instanceof Set) {
      total += 5;
      for (const e of x) stack.push(e);
    } else if (x instanceof Error || x instanceof RegExp) total += 8 + Buffer.byteLength(String(x)) + (x instanceof Error ? Buffer.byteLength(String(x.stack ?? '')) : 0);
    else if (Array.isArray(x)) {
      total += 5;
      for (const e of x) stack.push(e);
    } else if (typeof x === 'object') {
      total += 5;
      for (const [k, e] of Object.entries(x as Record<string, unknown>)) {
        total += Buffer.byteLength(k) + 5;
        stack.push(e);
      }
    } else total += 8;
    if (total > limit) return total;
  }
  return total;
}

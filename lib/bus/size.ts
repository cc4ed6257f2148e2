/**
 * How many bytes a value decoded from a plugin's channel stands for, counted up to a bound (the
 * walk stops as soon as the bound is passed, so a huge value costs no more than the bound). Map,
 * Set, Error and RegExp, which arrive by structured clone, count what they hold.
 */
export function sizeOver(v: unknown, limit: number): number {
  let total = 0;
  const stack: unknown[] = [v];
  while (stack.length > 0) {
    const x = stack.pop();
    if (typeof x === 'string') total += Buffer.byteLength(x) + 2;
    else if (x === null || x === undefined || typeof x === 'boolean') total += 4;
    else if (typeof x === 'number' || typeof x === 'bigint') total += 8;
    else if (ArrayBuffer.isView(x)) total += x.byteLength;
    else if (x instanceof ArrayBuffer) total += x.byteLength;
    // Map and Set (structured clone) hold their contents outside their own properties.
    else if (x instanceof Map) {
      total += 2;
      for (const [k, e] of x) stack.push(k, e);
    } else if (x instanceof Set) {
      total += 2;
      for (const e of x) stack.push(e);
    } else if (x instanceof Error || x instanceof RegExp) total += 8 + Buffer.byteLength(String(x)) + (x instanceof Error ? Buffer.byteLength(String(x.stack ?? '')) : 0);
    else if (Array.isArray(x)) {
      total += 2;
      for (const e of x) stack.push(e);
    } else if (typeof x === 'object') {
      total += 2;
      for (const [k, e] of Object.entries(x as Record<string, unknown>)) {
        total += Buffer.byteLength(k) + 3;
        stack.push(e);
      }
    } else total += 8;
    if (total > limit) return total;
  }
  return total;
}

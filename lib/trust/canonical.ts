/**
 * Canonical JSON: the one byte sequence that signing and verifying both see, whatever whitespace or
 * key order the file on disk has. Objects have keys sorted by code unit, no whitespace, strings as
 * JSON.stringify writes them, and only safe integers as numbers: floats have several spellings and
 * are not needed in a trust list.
 *
 * Parsing is bounded: a size cap and a nesting-depth check run before JSON.parse, so a huge or deeply
 * nested document is refused in linear time without recursion.
 */
import { MalformedError } from './errors';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export const DEFAULT_MAX_DEPTH = 32;

export function canonicalize(value: unknown): string {
  const out: string[] = [];
  write(value, out, '$', 0);
  return out.join('');
}

function write(v: unknown, out: string[], where: string, depth: number): void {
  if (depth > DEFAULT_MAX_DEPTH) throw new MalformedError(where, `nested deeper than ${DEFAULT_MAX_DEPTH} levels`);
  if (v === null || typeof v === 'boolean') {
    out.push(String(v));
  } else if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw new MalformedError(where, 'numbers must be safe integers');
    out.push(String(v));
  } else if (typeof v === 'string') {
    out.push(JSON.stringify(v));
  } else if (Array.isArray(v)) {
    out.push('[');
    v.forEach((item, i) => {
      if (i > 0) out.push(',');
      write(item, out, `${where}[${i}]`, depth + 1);
    });
    out.push(']');
  } else if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    const obj = v as Record<string, unknown>;
    const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
    out.push('{');
    keys.forEach((k, i) => {
      if (i > 0) out.push(',');
      out.push(JSON.stringify(k), ':');
      write(obj[k], out, `${where}.${k}`, depth + 1);
    });
    out.push('}');
  } else {
    throw new MalformedError(where, `cannot encode a ${typeof v}`);
  }
}

/**
 * Parses JSON text after checking its size and nesting depth. Every failure is a MalformedError.
 * The depth scan skips string contents, so brackets inside strings do not count.
 */
export function parseJsonBounded(
  input: string | Uint8Array,
  opts: { maxBytes: number; maxDepth?: number; file?: string },
): JsonValue {
  const maxDepth = opts.maxDepth ?? DEFAULT_MAX_DEPTH;
  const size = typeof input === 'string' ? Buffer.byteLength(input) : input.length;
  if (size > opts.maxBytes) throw new MalformedError('$', `document is ${size} bytes, the limit is ${opts.maxBytes}`, opts.file);
  let text: string;
  try {
    text = typeof input === 'string' ? input : new TextDecoder('utf-8', { fatal: true }).decode(input);
  } catch {
    throw new MalformedError('$', 'not valid UTF-8 text', opts.file);
  }
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > maxDepth) throw new MalformedError('$', `nested deeper than ${maxDepth} levels`, opts.file);
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  try {
    return JSON.parse(text) as JsonValue;
  } catch (e) {
    throw new MalformedError('$', `not valid JSON (${(e as Error).message})`, opts.file);
  }
}

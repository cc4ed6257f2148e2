/**
 * Canonical JSON: the one byte sequence that signing and verifying both see, whatever whitespace or
 * key order the file on disk has. Objects have keys sorted by code unit, no whitespace, strings as
 * JSON.stringify writes them, and only safe integers as numbers: floats have several spellings and
 * are not needed in a trust list.
 *
 * Parsing is bounded and strict: a size cap, then a scan (json-scan.ts) that refuses nesting deeper
 * than a limit and duplicate keys, in linear time without recursion, before JSON.parse.
 */
import { MalformedError } from './errors';
import { scanJson } from './json-scan';

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
 * Parses JSON text after checking its size, nesting depth and that no object has a key twice.
 * Every failure is a MalformedError.
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
  // Structure, depth and duplicate keys first (json-scan.ts): JSON.parse would keep the last of two equal keys.
  scanJson(text, maxDepth, opts.file);
  try {
    return JSON.parse(text) as JsonValue;
  } catch (e) {
    throw new MalformedError('$', `not valid JSON (${(e as Error).message})`, opts.file);
  }
}

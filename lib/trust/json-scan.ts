/**
 * A strict JSON scanner run before JSON.parse on every document the trust layer reads (trust lists,
 * envelopes, key and state files). JSON.parse silently keeps the LAST of two equal keys, so
 * `{"version": 1, "version": 9}` would be read as 9 by us and possibly as 1 by another tool looking at
 * the same signed bytes: what is reviewed and what is enforced could differ. The scanner refuses
 * duplicate keys, comparing keys after unescaping ("a" and "\u0061" are the same key), and refuses
 * nesting deeper than `maxDepth`.
 *
 * It accepts exactly RFC 8259 JSON (what JSON.parse accepts), so the structure it sees is the one
 * JSON.parse builds. It is iterative (an explicit stack bounded by maxDepth, no recursion) and
 * linear in the length of the text: each character is looked at a bounded number of times.
 */
import { MalformedError } from './errors';

interface Frame {
  /** Keys seen so far, for an object; null for an array. */
  keys: string[] | null;
  /** The same keys as a set, once there are many (a short array is cheaper to search than a Set is to make). */
  keySet: Set<string> | undefined;
  /** Object: the current member's key. */
  key: string;
  /** Array: index of the current element. */
  index: number;
}

const ESCAPES: Record<number, string> = {
  0x22: '"', 0x5c: '\\', 0x2f: '/', 0x62: '\b', 0x66: '\f', 0x6e: '\n', 0x72: '\r', 0x74: '\t',
};

/** A run of plain string characters (up to a quote, a backslash or a control character), and of whitespace. */
const STRING_RUN = /[^"\\\u0000-\u001f]*/y;
const WS_RUN = /[ \t\n\r]*/y;

/** Keys an object may have before they are kept in a Set. */
const SMALL_OBJECT = 16;

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** Shortens a key for a message, without control characters. */
function show(key: string): string {
  return JSON.stringify(key.length > 64 ? `${key.slice(0, 64)}…` : key);
}

/**
 * Throws MalformedError (where: the JSON path of the problem) if `text` is not JSON, nests deeper
 * than `maxDepth` containers, or has an object with two equal keys.
 */
export function scanJson(text: string, maxDepth: number, file?: string): void {
  const n = text.length;
  let i = 0;
  const stack: Frame[] = [];
  // The JSON path of where the scan is, built only for an error message.
  const here = (): string => {
    let where = '$';
    for (const f of stack) where += f.keys !== null ? `.${f.key}` : `[${f.index}]`;
    return where;
  };
  const fail = (reason: string): never => {
    throw new MalformedError(here(), `${reason} (at character ${i})`, file);
  };

  const ws = (): void => {
    WS_RUN.lastIndex = i;
    WS_RUN.test(text);
    i = WS_RUN.lastIndex;
  };

  /** Reads a string at text[i] === '"'; returns its value if `decode`, else ''. */
  const readString = (decode: boolean): string => {
    i++; // opening quote
    let parts: string[] | undefined; // only for a string with escapes
    let runStart = i;
    for (;;) {
      // Skip plain characters with one native search (a sticky regex; test() allocates nothing).
      STRING_RUN.lastIndex = i;
      STRING_RUN.test(text);
      i = STRING_RUN.lastIndex;
      if (i >= n) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        const tail = decode ? text.slice(runStart, i) : '';
        i++;
        return parts === undefined ? tail : parts.join('') + tail;
      }
      if (c < 0x20) fail('control character in a string (escape it)');
      // A backslash.
      if (decode) (parts ??= []).push(text.slice(runStart, i));
      const e = text.charCodeAt(i + 1);
      if (e === 0x75 /* u */) {
        let code = 0;
        for (let k = 2; k < 6; k++) {
          const h = i + k < n ? hexValue(text.charCodeAt(i + k)) : -1;
          if (h < 0) fail('bad \\u escape');
          code = code * 16 + h;
        }
        if (decode) parts!.push(String.fromCharCode(code));
        i += 6;
      } else {
        const m = ESCAPES[e];
        if (m === undefined) fail('bad escape in a string');
        if (decode) parts!.push(m);
        i += 2;
      }
      runStart = i;
    }
  };

  const readNumber = (): void => {
    if (text.charCodeAt(i) === 0x2d /* - */) i++;
    if (text.charCodeAt(i) === 0x30) {
      i++;
    } else if (i < n && isDigit(text.charCodeAt(i))) {
      while (i < n && isDigit(text.charCodeAt(i))) i++;
    } else {
      fail('bad number');
    }
    if (text.charCodeAt(i) === 0x2e /* . */) {
      i++;
      if (!(i < n && isDigit(text.charCodeAt(i)))) fail('bad number');
      while (i < n && isDigit(text.charCodeAt(i))) i++;
    }
    const e = text.charCodeAt(i);
    if (e === 0x65 || e === 0x45) {
      i++;
      const s = text.charCodeAt(i);
      if (s === 0x2b || s === 0x2d) i++;
      if (!(i < n && isDigit(text.charCodeAt(i)))) fail('bad number');
      while (i < n && isDigit(text.charCodeAt(i))) i++;
    }
  };

  /** Reads `"key" :` into the object frame `f`, refusing a key it already has. */
  const readKey = (f: Frame): void => {
    ws();
    if (text.charCodeAt(i) !== 0x22) fail('expected a string key');
    const key = readString(true);
    f.key = key;
    const keys = f.keys!;
    if (f.keySet !== undefined ? f.keySet.has(key) : keys.includes(key)) {
      fail(`duplicate key ${show(key)}: a JSON parser keeps only one of them, so the document is refused`);
    }
    if (f.keySet !== undefined) f.keySet.add(key);
    else if (keys.push(key) > SMALL_OBJECT) f.keySet = new Set(keys);
    ws();
    if (text.charCodeAt(i) !== 0x3a /* : */) fail('expected ":" after a key');
    i++;
  };

  const open = (isObject: boolean): Frame => {
    if (stack.length + 1 > maxDepth) fail(`nested deeper than ${maxDepth} levels`);
    return { keys: isObject ? [] : null, keySet: undefined, key: '', index: 0 };
  };

  for (;;) {
    // A value.
    ws();
    if (i >= n) fail(stack.length === 0 ? 'empty document' : 'unexpected end of document');
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */) {
      const f = open(true);
      i++;
      ws();
      if (text.charCodeAt(i) === 0x7d) {
        i++;
      } else {
        stack.push(f);
        readKey(f);
        continue;
      }
    } else if (c === 0x5b /* [ */) {
      const f = open(false);
      i++;
      ws();
      if (text.charCodeAt(i) === 0x5d) {
        i++;
      } else {
        stack.push(f);
        continue;
      }
    } else if (c === 0x22) {
      readString(false);
    } else if (c === 0x2d || isDigit(c)) {
      readNumber();
    } else if (text.startsWith('true', i)) {
      i += 4;
    } else if (text.startsWith('false', i)) {
      i += 5;
    } else if (text.startsWith('null', i)) {
      i += 4;
    } else {
      fail('unexpected character');
    }
    // After a value: a comma, closing brackets, or the end.
    for (;;) {
      ws();
      const top = stack[stack.length - 1];
      if (top === undefined) {
        if (i !== n) fail('unexpected text after the document');
        return;
      }
      const d = text.charCodeAt(i);
      if (d === 0x2c /* , */) {
        i++;
        if (top.keys !== null) readKey(top);
        else top.index++;
        break;
      }
      if ((top.keys !== null && d === 0x7d) || (top.keys === null && d === 0x5d)) {
        i++;
        stack.pop();
        continue;
      }
      fail(i >= n ? 'unexpected end of document' : `expected "," or "${top.keys !== null ? '}' : ']'}"`);
    }
  }
}

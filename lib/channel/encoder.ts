/**
 * Writes messages in the channel's format (codec.ts) into the endpoint's send buffer: compact tags
 * for the values RPC carries, Buffers of ATTACH_MIN bytes and more as attachments gathered straight
 * into the ring, each name sent once per channel and then by number, structured clone for the rest.
 */
import { types } from 'node:util';
import { ATTACH_MIN, HEADER, Kind, MAX_DEPTH, MAX_NAME_BYTES, MAX_NAMES, SHORT_STRING, Tag, f64, f64b, v8, writeU32, type FastUtf8 } from './codec';

/**
 * The most values one message to an untrusted peer (errorStacks false) may write. The encoder
 * writes a part each time it is referenced: a value a plugin sent by structured clone (which keeps
 * shared references) and a host method echoed back could be 40 levels of arrays each holding the
 * next twice, a few hundred bytes that stand for 2^40 values, which the host's thread would write
 * out without end. At this bound the host spends 50-100 ms (and ~10 MB of envelope) before it
 * refuses; an honest value of two million values is a message of 10 MB or more.
 */
const MAX_VALUES_UNTRUSTED = 1 << 21;

export class Encoder {
  private buf: Buffer;
  private pos = 0;
  private attachments: Uint8Array[] | undefined;
  private depth = 0;
  /** Values this message may still write (bounded towards an untrusted peer: MAX_VALUES_UNTRUSTED). */
  private valuesLeft = Infinity;
  private busy = false;
  /** name → number; ~number (negative) until a message defining it has been handed to the channel. */
  private readonly names = new Map<string, number>();
  private defined: string | undefined;
  /** After encode(): what goes after the envelope (attachments), or with -1, the envelope too. */
  parts: Uint8Array[] | undefined;

  /** `scratch`: where envelopes are written (the endpoint's txBuffer, so sending passes a length). */
  /**
   * @param errorStacks false: an Error within a value is sent without its stack (and its causes'),
   *   as the peer's answers are when it is untrusted (RpcPeer with limits): a host's frames and file
   *   paths tell a plugin nothing it needs; inside a Map, a Set or a class instance as well.
   */
  constructor(
    private readonly scratch: Buffer = Buffer.allocUnsafe(64 * 1024),
    private readonly errorStacks = true,
  ) {
    this.buf = scratch;
  }

  /**
   * Encodes one message. Returns the envelope's length in `scratch`, and `parts` holds the
   * attachments (undefined when there are none). An envelope too big for `scratch` goes into a
   * buffer of its own: then the result is -1 and `parts` starts with the envelope.
   * Call sent() once the channel has taken the message.
   */
  encode(kind: Kind, id: number, name: string | undefined, value: unknown): number {
    // Reading a value may run a getter that sends: it must not overwrite the envelope half written.
    if (this.busy) throw new TypeError('cannot send over the channel while a message is being encoded');
    this.busy = true;
    this.buf = this.scratch;
    this.pos = HEADER;
    this.attachments = undefined;
    this.depth = 0;
    this.valuesLeft = this.errorStacks ? Infinity : MAX_VALUES_UNTRUSTED;
    this.defined = undefined;
    try {
      if (name !== undefined) this.name(name);
      this.value(value);
    } finally {
      this.busy = false;
    }
    const b = this.buf;
    b[0] = kind;
    writeU32(b, 1, id >>> 0);
    writeU32(b, 5, this.pos - HEADER);
    if (b === this.scratch) {
      this.parts = this.attachments;
      return this.pos;
    }
    // The channel may keep this buffer queued: it is never reused.
    this.buf = this.scratch;
    const atts = this.attachments as Uint8Array[] | undefined;
    this.parts = atts === undefined ? [b.subarray(0, this.pos)] : [b.subarray(0, this.pos), ...atts];
    return -1;
  }

  /**
   * The channel took the last message encoded (in the ring or queued, in order): a name it defined
   * is known to the peer from now on. Until then every message using the name defines it again.
   */
  sent(): void {
    const n = this.defined;
    if (n === undefined) return;
    this.defined = undefined;
    const v = this.names.get(n);
    if (v !== undefined && v < 0) this.names.set(n, ~v);
  }

  private name(s: string): void {
    let v = this.names.get(s);
    if (v === undefined) {
      if (this.names.size >= MAX_NAMES || s.length > MAX_NAME_BYTES / 4) {
        this.string(s);
        return;
      }
      v = ~this.names.size;
      this.names.set(s, v);
    }
    this.ensure(3);
    const b = this.buf;
    const p = this.pos;
    if (v >= 0) {
      b[p] = Tag.NameRef;
      b[p + 1] = v;
      b[p + 2] = v >>> 8;
      this.pos = p + 3;
      return;
    }
    b[p] = Tag.NameDef;
    b[p + 1] = ~v;
    b[p + 2] = ~v >>> 8;
    this.pos = p + 3;
    this.defined = s;
    this.string(s);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const nb = Buffer.allocUnsafe(size);
    this.buf.copy(nb, 0, 0, this.pos);
    this.buf = nb;
  }

  private u32(v: number): void {
    writeU32(this.buf, this.pos, v);
    this.pos += 4;
  }

  private string(s: string): void {
    const len = s.length;
    this.ensure(5 + len * 3);
    const b = this.buf;
    const p = this.pos;
    b[p] = Tag.String;
    if (len <= SHORT_STRING) {
      let i = 0;
      for (; i < len; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        b[p + 5 + i] = c;
      }
      if (i === len) {
        writeU32(b, p + 1, len);
        this.pos = p + 5 + len;
        return;
      }
    }
    const n = (b as unknown as FastUtf8).utf8Write(s, p + 5);
    writeU32(b, p + 1, n);
    this.pos = p + 5 + n;
  }

  private f64(tag: Tag, v: number): void {
    this.ensure(9);
    const b = this.buf;
    const p = this.pos;
    b[p] = tag;
    f64[0] = v;
    for (let i = 0; i < 8; i++) b[p + 1 + i] = f64b[i];
    this.pos = p + 9;
  }

  private value(v: unknown): void {
    if (--this.valuesLeft < 0) {
      throw new RangeError(`value too large to send: over ${MAX_VALUES_UNTRUSTED} values (a part referenced from several places is written each time); send bulk data as a Buffer`);
    }
    switch (typeof v) {
      case 'undefined':
        this.ensure(1);
        this.buf[this.pos++] = Tag.Undefined;
        return;
      case 'boolean':
        this.ensure(1);
        this.buf[this.pos++] = v ? Tag.True : Tag.False;
        return;
      case 'number':
        if ((v | 0) === v && (v !== 0 || 1 / v > 0)) {
          this.ensure(5);
          const b = this.buf;
          const p = this.pos;
          b[p] = Tag.Int32;
          writeU32(b, p + 1, v);
          this.pos = p + 5;
        } else {
          this.f64(Tag.Float64, v);
        }
        return;
      case 'string':
        this.string(v);
        return;
      case 'bigint': {
        const s = v.toString();
        this.ensure(1);
        this.buf[this.pos++] = Tag.BigInt;
        this.string(s);
        return;
      }
      case 'object':
        break;
      default:
        // Functions and symbols do not clone; say so like structuredClone would.
        throw new TypeError(`${typeof v} values cannot be sent over the channel`);
    }
    if (v === null) {
      this.ensure(1);
      this.buf[this.pos++] = Tag.Null;
      return;
    }
    if (++this.depth > MAX_DEPTH) throw new RangeError('value nested too deeply to send');
    if (Array.isArray(v)) {
      this.ensure(5);
      this.buf[this.pos++] = Tag.Array;
      const n = v.length;
      this.u32(n);
      for (let i = 0; i < n; i++) this.value(v[i]);
    } else if (v instanceof Uint8Array) {
      if (v.constructor !== Uint8Array && !Buffer.isBuffer(v)) {
        this.structured(v);
      } else if (v.byteLength >= ATTACH_MIN) {
        this.ensure(5);
        this.buf[this.pos++] = Tag.Attachment;
        this.u32(v.byteLength);
        (this.attachments ??= []).push(v);
      } else {
        this.ensure(5 + v.byteLength);
        this.buf[this.pos++] = Tag.Bytes;
        this.u32(v.byteLength);
        this.buf.set(v, this.pos);
        this.pos += v.byteLength;
      }
    } else if (v instanceof Date) {
      this.f64(Tag.Date, v.getTime());
    } else if (!this.errorStacks && (v instanceof Error || types.isNativeError(v))) {
      this.structured(withoutStack(v as Error, 0));
    } else {
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) {
        this.structured(v);
      } else {
        const keys = Object.keys(v);
        this.ensure(5);
        this.buf[this.pos++] = Tag.Object;
        this.u32(keys.length);
        for (const k of keys) {
          this.string(k);
          this.value((v as Record<string, unknown>)[k]);
        }
      }
    }
    this.depth--;
  }

  private structured(v: object): void {
    let bytes: Buffer;
    try {
      bytes = this.errorStacks || !holdsError(v) ? v8().serialize(v) : withoutStacksCloned(v);
    } catch (e) {
      // V8's refusal quotes what it could not clone: a function's source text, which an untrusted
      // peer is not to read (the error goes to it when this is an answer).
      if (this.errorStacks || e instanceof RangeError) throw e;
      throw new TypeError('a value that cannot be sent over the channel (a function, a symbol, a WeakMap, a Promise, ...) is in it');
    }
    this.ensure(5 + bytes.length);
    this.buf[this.pos++] = Tag.Structured;
    this.u32(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }
}

/**
 * Calls `found` for each Error V8's serializer would meet in `root` (in a Map's keys or values, a
 * Set, an array, an object's own enumerable properties, an Error's cause), until it returns true.
 * Iterative, each object once: a cyclic value costs one pass and no stack. It goes in V8's order
 * (children taken first to last), so each object is met by the path, and at the depth, V8 meets
 * it. Not entered: a proxy (V8 refuses to clone one), and what V8 writes none of the properties of
 * (byte arrays, boxed primitives, Dates, RegExps: a boxed string of 65 KB had 65,000 keys to walk).
 * Maps and Sets are read through their own forEach, as V8 reads their tables, not through an
 * iterator the value may have replaced. Getters run, as V8's serializer runs them; one that makes
 * a new object at every level would make the walk endless, so past MAX_WALK_DEPTH levels (V8's own
 * recursion gives out a few thousand deep) it is refused like V8 refuses it, with a RangeError.
 */
function eachError(root: object, found: (e: Error) => boolean): void {
  const seen = new Set<object>();
  const values: unknown[] = [root];
  const depths: number[] = [0];
  const children: unknown[] = [];
  const child = (x: unknown) => {
    children.push(x);
  };
  while (values.length > 0) {
    const v = values.pop();
    const depth = depths.pop()!;
    if (v === null || typeof v !== 'object' || seen.has(v) || types.isProxy(v)) continue;
    if (depth > MAX_WALK_DEPTH) throw new RangeError('value nested too deeply to send');
    seen.add(v);
    if (v instanceof Error || types.isNativeError(v)) {
      if (found(v as Error)) return;
      child((v as Error).cause);
    } else if (ArrayBuffer.isView(v) || types.isAnyArrayBuffer(v) || types.isBoxedPrimitive(v) || types.isDate(v) || types.isRegExp(v)) {
      continue;
    } else if (types.isMap(v)) {
      Map.prototype.forEach.call(v, (x: unknown, k: unknown) => children.push(k, x));
    } else if (types.isSet(v)) {
      Set.prototype.forEach.call(v, child);
    } else {
      for (const k of Object.keys(v)) child((v as Record<string, unknown>)[k]);
    }
    for (let i = children.length - 1; i >= 0; i--) {
      values.push(children[i]);
      depths.push(depth + 1);
    }
    children.length = 0;
  }
}

/** Deeper than V8's serializer gets before its recursion gives out. */
const MAX_WALK_DEPTH = 10_000;

function holdsError(v: object): boolean {
  let any = false;
  eachError(v, () => (any = true));
  return any;
}

/**
 * `v` serialized as V8 would, but with no Error's stack: V8 clones an Error whole (its stack
 * included) wherever it sits, so the value is cloned once (V8 decides what each part becomes: a
 * class instance a plain object, ...), every Error of the clone is given an own `stack` of
 * undefined (what V8 reads and then leaves out), and the clone is serialized. Only for a value
 * that holds an Error (holdsError), so most values are serialized once. The walk is the price: a
 * Map of 100,000 small objects took ~2x the serializer's own time (36 -> 69 ms), one that holds an
 * Error ~6x; plain objects and arrays, which the encoder writes itself, pay nothing.
 */
function withoutStacksCloned(v: object): Buffer {
  const clone = v8().deserialize(v8().serialize(v)) as object;
  eachError(clone, (e) => {
    Object.defineProperty(e, 'stack', { value: undefined, writable: true, configurable: true, enumerable: false });
    return false;
  });
  return v8().serialize(clone);
}

/** The classes V8's serializer keeps (by `name`); any other error arrives as an Error. */
const CLONED_ERRORS: Readonly<Record<string, ErrorConstructor>> = { EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError };

/**
 * A copy of `e` as V8's serializer would send it (the built-in class its `name` says, its message
 * and cause) without its stack; causes that are Errors are copied the same way, a few deep (a
 * longer or cyclic chain ends there). The copy's stack is deleted before anything reads it, so it
 * is never formatted (that runs Error.prepareStackTrace). An error whose name, message or cause
 * cannot be read becomes a plain Error saying so.
 */
function withoutStack(e: Error, depth: number): Error {
  let copy: Error;
  try {
    const name: unknown = e.name;
    const Class = typeof name === 'string' && Object.hasOwn(CLONED_ERRORS, name) ? CLONED_ERRORS[name]! : Error;
    copy = new Class(String(e.message));
    delete (copy as { stack?: string }).stack;
    if ('cause' in e) {
      const cause = e.cause;
      copy.cause = !(cause instanceof Error) ? cause : depth < 8 ? withoutStack(cause, depth + 1) : undefined;
    }
  } catch {
    copy = new Error('[an error that could not be copied]');
    delete (copy as { stack?: string }).stack;
  }
  return copy;
}

/**
 * Message codec. Measured on the project's 2-core machine (node 20, encode + decode of a call
 * `add(1, 2)`): v8.serialize/deserialize 6.6 us, JSON.stringify/parse through a Buffer 1.4-1.6 us,
 * this compact tagged form about 0.1 us. For a 1 MiB Buffer argument, v8.serialize copies the bytes
 * twice (117 us) where this form copies none: Buffers of 4 KiB and more travel as attachments the
 * channel gathers straight into the ring, and arrive as views of the received message, so a
 * payload is copied once into the ring and once out of it.
 * So: compact binary for the values RPC really carries (primitives, arrays, plain objects, bytes,
 * dates, bigints), with structured clone (v8.serialize) as the fallback for the rest (Map, Set,
 * RegExp, typed arrays other than Uint8Array ...), so nothing that clones is refused.
 *
 * Method and event names are sent once per channel and direction: the first message using a name
 * defines a small number for it (NameDef), later ones send the number (NameRef). Up to MAX_NAMES
 * names of up to 256 characters per direction; past that, names travel as strings.
 *
 * The decoder reads hostile input: every length is bounded by the message, nesting is bounded,
 * name numbers must be defined before use and never change, and any inconsistency throws a
 * CodecError the RPC layer turns into a protocol violation. What one message may cost to decode is
 * bounded too (DecodeLimits): one budget per message for values, string bytes, BigInt digits and
 * structured-clone bytes, so no message holds the receiver's event loop for long, whatever it holds.
 */
import type * as V8 from 'node:v8';

// Loaded on first use: only the structured-clone fallback needs it, and loading node:v8 costs the
// plugin runner's start-up about 1.5 ms of cpu.
let v8Module: typeof V8 | undefined;
const v8 = (): typeof V8 => (v8Module ??= require('node:v8') as typeof V8);

export const enum Kind {
  Call = 1,
  Result = 2,
  Error = 3,
  Notify = 4,
  Cancel = 5,
}

const enum Tag {
  Undefined = 0,
  Null = 1,
  False = 2,
  True = 3,
  Int32 = 4,
  Float64 = 5,
  String = 6,
  Bytes = 7,
  Array = 8,
  Object = 9,
  BigInt = 10,
  Date = 11,
  Attachment = 12,
  Structured = 13,
  NameDef = 14, // u16 number, then a String: defines the number and uses it
  NameRef = 15, // u16 number of a name defined earlier
}

/** Buffers at least this big are sent by reference (gathered into the ring) instead of copied into the envelope. */
const ATTACH_MIN = 4096;
/** Names one direction of a channel may define, and their longest UTF-8 form: the receiver keeps them. */
export const MAX_NAMES = 1024;
const MAX_NAME_BYTES = 1024;
/** Strings up to this long are written by a JS loop when ASCII (cheaper than a call into C++). */
const SHORT_STRING = 32;
/** Buffer's own (untyped) UTF-8 methods skip the encoding-name dispatch of write()/toString(). */
interface FastUtf8 {
  utf8Write(s: string, offset: number): number;
  utf8Slice(start: number, end: number): string;
}
const MAX_DEPTH = 256;
const HEADER = 9; // kind u8, id u32, envelope length u32

// Float64 <-> bytes without a DataView per buffer.
const f64 = new Float64Array(1);
const f64b = new Uint8Array(f64.buffer);

export class CodecError extends Error {}

/**
 * What one received message may hold, summed over all its values. The host decodes a plugin's
 * messages with PEER_LIMITS; the runner trusts its host (UNLIMITED).
 */
export interface DecodeLimits {
  /** Values: every scalar, array element and object entry counts (an object entry 2, one of a wide object 8). */
  values: number;
  /** UTF-8 bytes of all strings and object keys. */
  stringBytes: number;
  /** Decimal digits of all BigInts (parsing them costs more than linear time). */
  bigintDigits: number;
  /** Bytes of structured-clone values (Map, Set, RegExp, typed arrays...), decoded by v8.deserialize. */
  structuredBytes: number;
}

/**
 * Each bound alone, at its worst, costs some 2-7 ms of decoding on the project's 2-core machine
 * (node 20, unloaded; two to three times that with every core busy), so that one message that
 * maxes out all four stays near 20 ms: 50,000 values ~5 ms (6,250 keys of one wide object ~5 ms),
 * 1 MiB of two-byte UTF-8 text ~6.5 ms (ASCII ~3 ms), 50,000 BigInt digits ~2 ms (in one BigInt;
 * parsing is quadratic), 64 KiB of a structured-clone Map ~4 ms. Bytes of any size travel as
 * Buffers (attachments cost no decoding); a host that needs more sets channelLimits.decode.
 */
export const PEER_LIMITS: Readonly<DecodeLimits> = Object.freeze({
  values: 50_000,
  stringBytes: 1 << 20,
  bigintDigits: 50_000,
  structuredBytes: 64 << 10,
});
export const UNLIMITED: Readonly<DecodeLimits> = Object.freeze({
  values: Infinity,
  stringBytes: Infinity,
  bigintDigits: Infinity,
  structuredBytes: Infinity,
});

export interface Decoded {
  kind: Kind;
  id: number;
  name: string;
  value: unknown;
}

export class Encoder {
  private buf: Buffer;
  private pos = 0;
  private attachments: Uint8Array[] | undefined;
  private depth = 0;
  private busy = false;
  /** name → number; ~number (negative) until a message defining it has been handed to the channel. */
  private readonly names = new Map<string, number>();
  private defined: string | undefined;
  /** After encode(): what goes after the envelope (attachments), or with -1, the envelope too. */
  parts: Uint8Array[] | undefined;

  /** `scratch`: where envelopes are written (the endpoint's txBuffer, so sending passes a length). */
  constructor(private readonly scratch: Buffer = Buffer.allocUnsafe(64 * 1024)) {
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
    const bytes = v8().serialize(v);
    this.ensure(5 + bytes.length);
    this.buf[this.pos++] = Tag.Structured;
    this.u32(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }
}

function writeU32(b: Uint8Array, p: number, v: number): void {
  b[p] = v;
  b[p + 1] = v >>> 8;
  b[p + 2] = v >>> 16;
  b[p + 3] = v >>> 24;
}

function readU32(b: Uint8Array, p: number): number {
  return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
}

/** What a receiver remembers between messages: the names the peer defined. */
export class DecoderState {
  readonly names: string[] = [];
}

/**
 * Decodes one received message: the first `length` bytes of `msg`. Strings and Bytes are copied
 * out; attachments are views of `msg`, unless `reused` says `msg` is scratch memory that the next
 * message overwrites: then they are copied too.
 */
export function decode(msg: Buffer, length: number, reused: boolean, state: DecoderState, limits: Readonly<DecodeLimits> = UNLIMITED): Decoded {
  if (length < HEADER || length > msg.length) throw new CodecError('message shorter than its header');
  const kind = msg[0] as Kind;
  if (kind < Kind.Call || kind > Kind.Cancel) throw new CodecError(`unknown message kind ${kind}`);
  const id = readU32(msg, 1);
  const envLen = readU32(msg, 5);
  if (envLen > length - HEADER) throw new CodecError('envelope longer than the message');
  const r = new Reader(msg, HEADER + envLen, length, reused, limits);
  let name = '';
  if (kind === Kind.Call || kind === Kind.Notify) name = r.name(state);
  const value = r.value(0);
  if (r.pos !== r.end) throw new CodecError('trailing bytes in envelope');
  if (r.attachPos !== length) throw new CodecError('attachments do not add up to the message');
  return { kind, id, name, value };
}

class Reader {
  pos = HEADER;
  attachPos: number;
  // What is left of this message's budget (DecodeLimits).
  private values: number;
  private stringBytes: number;
  private digits: number;
  private structuredBytes: number;
  constructor(
    private readonly b: Buffer,
    readonly end: number,
    private readonly length: number,
    private readonly reused: boolean,
    private readonly limits: Readonly<DecodeLimits>,
  ) {
    this.attachPos = end;
    this.values = limits.values;
    this.stringBytes = limits.stringBytes;
    this.digits = limits.bigintDigits;
    this.structuredBytes = limits.structuredBytes;
  }

  private over(what: keyof DecodeLimits): never {
    throw new CodecError(`message over the decoding budget: more than ${this.limits[what]} ${what} in one message (split it; bytes travel as a Buffer at no decoding cost)`);
  }

  private need(n: number): void {
    if (this.pos + n > this.end) throw new CodecError('value runs past the envelope');
  }

  private u32(): number {
    this.need(4);
    const v = readU32(this.b, this.pos);
    this.pos += 4;
    return v;
  }

  private string(): string {
    const n = this.u32();
    this.need(n);
    if ((this.stringBytes -= n) < 0) this.over('stringBytes');
    const p = this.pos;
    this.pos = p + n;
    return (this.b as unknown as FastUtf8).utf8Slice(p, p + n);
  }

  name(state: DecoderState): string {
    this.need(1);
    const tag = this.b[this.pos++];
    if (tag === Tag.String) return this.string();
    if (tag !== Tag.NameRef && tag !== Tag.NameDef) throw new CodecError('call without a method name');
    this.need(2);
    const n = this.b[this.pos] | (this.b[this.pos + 1] << 8);
    this.pos += 2;
    if (n >= MAX_NAMES) throw new CodecError('name number out of range');
    const known = state.names[n];
    if (tag === Tag.NameRef) {
      if (known === undefined) throw new CodecError('name number used before it was defined');
      return known;
    }
    this.need(1);
    if (this.b[this.pos++] !== Tag.String) throw new CodecError('name definition without a string');
    this.need(4);
    if (readU32(this.b, this.pos) > MAX_NAME_BYTES) throw new CodecError('defined name too long');
    const s = this.string();
    if (known === undefined) state.names[n] = s;
    else if (known !== s) throw new CodecError('name number redefined');
    else return known;
    return s;
  }

  value(depth: number): unknown {
    if (depth > MAX_DEPTH) throw new CodecError('value nested too deeply');
    if (--this.values < 0) this.over('values');
    this.need(1);
    const b = this.b;
    const tag = b[this.pos++];
    switch (tag) {
      case Tag.Undefined:
        return undefined;
      case Tag.Null:
        return null;
      case Tag.False:
        return false;
      case Tag.True:
        return true;
      case Tag.Int32: {
        this.need(4);
        const p = this.pos;
        this.pos = p + 4;
        return b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24);
      }
      case Tag.Float64:
      case Tag.Date: {
        this.need(8);
        const p = this.pos;
        for (let i = 0; i < 8; i++) f64b[i] = b[p + i];
        this.pos = p + 8;
        return tag === Tag.Date ? new Date(f64[0]) : f64[0];
      }
      case Tag.String:
        return this.string();
      case Tag.BigInt: {
        const s = this.value(depth + 1);
        if (typeof s !== 'string' || !/^-?[0-9]{1,100000}$/.test(s)) throw new CodecError('malformed bigint');
        if ((this.digits -= s.length) < 0) this.over('bigintDigits');
        return BigInt(s);
      }
      case Tag.Bytes: {
        const n = this.u32();
        this.need(n);
        // A copy: a small view would pin the whole received message.
        const out = Buffer.from(b.subarray(this.pos, this.pos + n));
        this.pos += n;
        return out;
      }
      case Tag.Attachment: {
        const n = this.u32();
        if (n > this.length - this.attachPos) throw new CodecError('attachment runs past the message');
        const view = b.subarray(this.attachPos, this.attachPos + n);
        this.attachPos += n;
        return this.reused ? Buffer.from(view) : view;
      }
      case Tag.Array: {
        const n = this.u32();
        // Each element takes at least one byte: a lying count fails here, not after allocating.
        this.need(n);
        if (n > this.values) this.over('values');
        const out = new Array<unknown>(n);
        for (let i = 0; i < n; i++) out[i] = this.value(depth + 1);
        return out;
      }
      case Tag.Object: {
        const n = this.u32();
        this.need(n * 2);
        // Keys and value count already; a wide object (a dictionary: every key costs ~1 us to
        // add) pays for 8 values a key, a small one 2.
        if ((this.values -= n * (n > 64 ? 6 : 0)) < 0) this.over('values');
        const out: Record<string, unknown> = {};
        for (let i = 0; i < n; i++) {
          const k = this.value(depth + 1);
          if (typeof k !== 'string') throw new CodecError('object key is not a string');
          const v = this.value(depth + 1);
          // A key named __proto__ must not change the object's prototype.
          if (k === '__proto__') Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
          else out[k] = v;
        }
        return out;
      }
      case Tag.Structured: {
        const n = this.u32();
        this.need(n);
        if ((this.structuredBytes -= n) < 0) this.over('structuredBytes');
        const bytes = b.subarray(this.pos, this.pos + n);
        this.pos += n;
        try {
          return v8().deserialize(bytes);
        } catch (e) {
          throw new CodecError(`malformed structured value: ${(e as Error).message}`);
        }
      }
      default:
        throw new CodecError(`unknown value tag ${tag}`);
    }
  }
}

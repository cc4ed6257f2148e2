/**
 * Reads one received message in the channel's format (codec.ts). The input is hostile: every
 * length is bounded by the message, nesting is bounded, names must be defined before use and never
 * change, and what a message may cost to decode is bounded (DecodeLimits); any inconsistency throws
 * a CodecError.
 */
import { CodecError, HEADER, Kind, MAX_DEPTH, MAX_NAME_BYTES, MAX_NAMES, Tag, UNLIMITED, f64, f64b, readU32, v8, type DecodeLimits, type Decoded, type FastUtf8 } from './codec';

/** What a Buffer (Bytes or Attachment) weighs beyond its own value in the values budget. */
const BUFFER_EXTRA_VALUES = 5;

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

/** ArrayBuffers one structured value may hold, a typed array's own included (a Buffer carries bytes for less). */
export const MAX_STRUCTURED_ARRAYBUFFERS = 1024;

/**
 * What is wrong with the ArrayBuffers of a value v8.deserialize made, if anything: a resizable
 * one reserves up to 4 GiB of the receiver's address space each; many cost the receiver's garbage
 * collector far more than their bytes show (20,000 empty ones in 40 KB: 10 ms to decode, up to
 * 67 ms once the young generation is full of them). Such data is plain (no getters, no proxies)
 * and bounded by the message; cycles are visited once.
 */
function arrayBufferProblem(root: unknown): string | undefined {
  const seen = new Set<object>();
  const stack: unknown[] = [root];
  let buffers = 0;
  while (stack.length > 0) {
    const v = stack.pop();
    if (v === null || typeof v !== 'object' || seen.has(v)) continue;
    seen.add(v);
    if (v instanceof ArrayBuffer) {
      if ((v as { resizable?: boolean }).resizable === true) {
        return 'a resizable ArrayBuffer in a structured value (each reserves up to 4 GiB of the receiver\'s address space); send its bytes as a Buffer';
      }
      if (++buffers > MAX_STRUCTURED_ARRAYBUFFERS) {
        return `more than ${MAX_STRUCTURED_ARRAYBUFFERS} ArrayBuffers in a structured value; send bytes as Buffers`;
      }
    } else if (ArrayBuffer.isView(v)) {
      stack.push(v.buffer);
    } else if (v instanceof Map) {
      for (const [k, x] of v) stack.push(k, x);
    } else if (v instanceof Set) {
      for (const x of v) stack.push(x);
    } else {
      for (const x of Object.values(v)) stack.push(x);
    }
  }
  return undefined;
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
        // A Buffer object costs ~1 us to make, whatever its size (49,000 empty ones held the
        // host's thread 46 ms; 0.4 us each when decoded in a hot loop): it weighs 6 values.
        if ((this.values -= BUFFER_EXTRA_VALUES) < 0) this.over('values');
        const n = this.u32();
        this.need(n);
        // A copy: a small view would pin the whole received message.
        const out = Buffer.from(b.subarray(this.pos, this.pos + n));
        this.pos += n;
        return out;
      }
      case Tag.Attachment: {
        if ((this.values -= BUFFER_EXTRA_VALUES) < 0) this.over('values');
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
        let v: unknown;
        try {
          v = v8().deserialize(bytes);
        } catch (e) {
          throw new CodecError(`malformed structured value: ${(e as Error).message}`);
        }
        // V8 tags an ArrayBuffer 0x42 and a resizable one 0x7e: without those bytes it holds none.
        if (this.limits.structuredBytes !== Infinity && (bytes.indexOf(0x42) >= 0 || bytes.indexOf(0x7e) >= 0)) {
          const wrong = arrayBufferProblem(v);
          if (wrong !== undefined) throw new CodecError(wrong);
        }
        return v;
      }
      default:
        throw new CodecError(`unknown value tag ${tag}`);
    }
  }
}

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
 *
 * This file is the format both sides share (kinds, tags, bounds, byte order); encoder.ts writes it,
 * decoder.ts reads it.
 */
import type * as V8 from 'node:v8';

// Loaded on first use: only the structured-clone fallback needs it, and loading node:v8 costs the
// plugin runner's start-up about 1.5 ms of cpu.
let v8Module: typeof V8 | undefined;
export const v8 = (): typeof V8 => (v8Module ??= require('node:v8') as typeof V8);

export const enum Kind {
  Call = 1,
  Result = 2,
  Error = 3,
  Notify = 4,
  Cancel = 5,
}

export const enum Tag {
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
export const ATTACH_MIN = 4096;
/** Names one direction of a channel may define, and their longest UTF-8 form: the receiver keeps them. */
export const MAX_NAMES = 1024;
export const MAX_NAME_BYTES = 1024;
/** Strings up to this long are written by a JS loop when ASCII (cheaper than a call into C++). */
export const SHORT_STRING = 32;
/** Buffer's own (untyped) UTF-8 methods skip the encoding-name dispatch of write()/toString(). */
export interface FastUtf8 {
  utf8Write(s: string, offset: number): number;
  utf8Slice(start: number, end: number): string;
}
export const MAX_DEPTH = 256;
export const HEADER = 9; // kind u8, id u32, envelope length u32

// Float64 <-> bytes without a DataView per buffer.
export const f64 = new Float64Array(1);
export const f64b = new Uint8Array(f64.buffer);

export class CodecError extends Error {}

/**
 * What one received message may hold, summed over all its values. The host decodes a plugin's
 * messages with PEER_LIMITS; the runner trusts its host (UNLIMITED).
 */
export interface DecodeLimits {
  /** Values: every scalar, array element and object entry counts (an object entry 2, one of a wide object 8, a Buffer 6). */
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

export function writeU32(b: Uint8Array, p: number, v: number): void {
  b[p] = v;
  b[p + 1] = v >>> 8;
  b[p + 2] = v >>> 16;
  b[p + 3] = v >>> 24;
}

export function readU32(b: Uint8Array, p: number): number {
  return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
}

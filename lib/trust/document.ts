/**
 * The trust list document: its types, its strict schema check, its canonical signed bytes and the
 * edits the CLI makes. The file on disk is
 *
 *   { "signed": { type, specVersion, version, expires, keys, entries }, "signatures": [ { keyId, sig } ] }
 *
 * Signatures cover "warden-trust-list-v1\0" + canonical JSON of `signed` (see canonical.ts); the
 * prefix keeps a trust list signature from being valid for any other kind of document.
 * `signed.keys` declares the keys and threshold that sign this list and, once it is accepted, the
 * next one: that is how keys rotate (see verify.ts).
 */
import * as semver from 'semver';
import { canonicalize, JsonValue, parseJsonBounded } from './canonical';
import { MalformedError } from './errors';
import { isDigest } from './digest';
import { getSodium } from './sodium';
import { keyIdOf, PublicKey, SigningKey } from './keys';
import { DEFAULT_MAX_BYTES } from './io';
import { checkLevels, checkLimitTable, TRUST_LEVELS, type LevelTable, type TrustLevel } from './levels';

export { TRUST_LEVELS, type TrustLevel } from './levels';

export interface TrustEntry {
  name: string;
  /** Exact semver version. */
  version: string;
  /** "sha3-512:<hex>" of the plugin directory (digest.ts). */
  digest: string;
  publisher: string;
  trust: TrustLevel;
  /** Permission names granted (sorted, unique); their meaning belongs to the policy layer. */
  permissions: string[];
  /** Resource limits granted, e.g. { memory: 268435456, pids: 64 }; non-negative integers (names: lib/plugins/limits.ts). */
  limits: Record<string, number>;
  /** When the entry was added (UTC, like `expires`); optional, older lists have none. A reputation signal. */
  added?: string;
}

export interface DeclaredKey {
  name: string;
  /** base64 of the 32-byte Ed25519 public key. */
  publicKey: string;
  /** When the key was first declared (UTC, like `expires`); optional. A reputation signal. */
  added?: string;
}

export interface KeySet {
  threshold: number;
  /** By key id. */
  keys: Record<string, DeclaredKey>;
}

export interface SignedTrustList {
  type: 'warden-trust-list';
  specVersion: 1;
  version: number;
  /** UTC, "YYYY-MM-DDTHH:MM:SSZ". */
  expires: string;
  keys: KeySet;
  /** What each trust level means (levels.ts); absent in lists made before levels had a meaning. */
  levels?: LevelTable;
  entries: TrustEntry[];
}

export interface TrustSignature {
  keyId: string;
  /** base64 of the 64-byte detached Ed25519 signature. */
  sig: string;
}

export interface TrustListDocument {
  signed: SignedTrustList;
  signatures: TrustSignature[];
}

const SIGNING_DOMAIN = 'warden-trust-list-v1\0';
const NAME_RE = /^(@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/;
const EXPIRES_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;
const KEYID_RE = /^[0-9a-f]{16}$/;

export function isValidPluginName(name: string): boolean {
  return name.length <= 214 && NAME_RE.test(name);
}

/** The exact bytes signatures are made and checked over. */
export function signedBytes(signed: SignedTrustList): Uint8Array {
  return Buffer.from(SIGNING_DOMAIN + canonicalize(signed), 'utf8');
}

/** Formats a Date the way `expires` is written (whole seconds, UTC). */
export function formatExpires(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Pretty JSON with sorted keys: readable, diffable, and parsing it gives back the same signed bytes. */
export function serializeTrustList(doc: TrustListDocument): string {
  const signed = JSON.parse(canonicalize(doc.signed)) as JsonValue;
  const signatures = doc.signatures.map((x) => ({ keyId: x.keyId, sig: x.sig }));
  return JSON.stringify({ signed, signatures }, null, 2) + '\n';
}

export function parseTrustList(input: string | Uint8Array, opts: { maxBytes?: number; file?: string } = {}): TrustListDocument {
  const raw = parseJsonBounded(input, { maxBytes: opts.maxBytes ?? DEFAULT_MAX_BYTES, file: opts.file });
  try {
    return checkDocument(raw);
  } catch (e) {
    if (e instanceof MalformedError && opts.file !== undefined) throw new MalformedError(e.where, e.message.replace(/^[^:]*: /, ''), opts.file);
    throw e;
  }
}

// ---- schema ---------------------------------------------------------------------------------------

function fail(where: string, reason: string): never {
  throw new MalformedError(where, reason);
}

function obj(v: JsonValue | undefined, where: string, fields: readonly string[]): Record<string, JsonValue> {
  if (v === null || v === undefined || typeof v !== 'object' || Array.isArray(v)) fail(where, 'must be an object');
  for (const k of Object.keys(v)) if (!fields.includes(k)) fail(`${where}.${k}`, 'unknown field');
  return v;
}

function str(v: JsonValue | undefined, where: string, max = 1024): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > max) fail(where, `must be a non-empty string of at most ${max} characters`);
  return v;
}

function int(v: JsonValue | undefined, where: string, min: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) fail(where, `must be an integer >= ${min}`);
  return v;
}

function arr(v: JsonValue | undefined, where: string): JsonValue[] {
  if (!Array.isArray(v)) fail(where, 'must be an array');
  return v;
}

export function checkDocument(raw: JsonValue): TrustListDocument {
  const o = obj(raw, '$', ['signed', 'signatures']);
  const signed = checkSigned(o.signed);
  const signatures = arr(o.signatures, '$.signatures').map((s, i) => {
    const w = `$.signatures[${i}]`;
    const so = obj(s, w, ['keyId', 'sig']);
    const keyId = str(so.keyId, `${w}.keyId`, 16);
    if (!KEYID_RE.test(keyId)) fail(`${w}.keyId`, 'must be 16 hex digits');
    const sig = str(so.sig, `${w}.sig`, 88);
    if (Buffer.from(sig, 'base64').length !== 64) fail(`${w}.sig`, 'must be 64 bytes of base64');
    return { keyId, sig };
  });
  return { signed, signatures };
}

export function checkSigned(raw: JsonValue | undefined): SignedTrustList {
  const w = '$.signed';
  const o = obj(raw, w, ['type', 'specVersion', 'version', 'expires', 'keys', 'levels', 'entries']);
  if (o.type !== 'warden-trust-list') fail(`${w}.type`, 'must be "warden-trust-list"');
  if (o.specVersion !== 1) fail(`${w}.specVersion`, 'unsupported (this warden reads version 1)');
  const version = int(o.version, `${w}.version`, 1);
  const expires = time(o.expires, `${w}.expires`);
  const keys = checkKeySet(o.keys, `${w}.keys`);
  const levels = o.levels === undefined ? undefined : checkLevels(o.levels, `${w}.levels`);
  const seen = new Set<string>();
  const entries = arr(o.entries, `${w}.entries`).map((e, i) => {
    const entry = checkEntry(e, `${w}.entries[${i}]`);
    const id = `${entry.name}@${entry.version}`;
    if (seen.has(id)) fail(`${w}.entries[${i}]`, `${id} is listed twice`);
    seen.add(id);
    return entry;
  });
  // An absent table stays absent: the signed bytes of an older list must not change.
  return { type: 'warden-trust-list', specVersion: 1, version, expires, keys, ...(levels !== undefined ? { levels } : {}), entries };
}

function time(v: JsonValue | undefined, where: string): string {
  const t = str(v, where, 20);
  if (!EXPIRES_RE.test(t) || Number.isNaN(Date.parse(t))) fail(where, 'must be a UTC time like 2030-01-31T00:00:00Z');
  return t;
}

function checkKeySet(raw: JsonValue | undefined, w: string): KeySet {
  const o = obj(raw, w, ['threshold', 'keys']);
  const ko = obj(o.keys, `${w}.keys`, Object.keys((o.keys ?? {}) as object));
  const keys: Record<string, DeclaredKey> = {};
  for (const [id, v] of Object.entries(ko)) {
    const kw = `${w}.keys.${id}`;
    const k = obj(v, kw, ['name', 'publicKey', 'added']);
    const publicKey = str(k.publicKey, `${kw}.publicKey`, 44);
    const bytes = Buffer.from(publicKey, 'base64');
    if (bytes.length !== 32) fail(`${kw}.publicKey`, 'must be 32 bytes of base64');
    // The id is derived from the key; a mismatch would let one key pose as two.
    if (keyIdOf(bytes) !== id) fail(kw, 'key id does not match the public key');
    keys[id] = { name: str(k.name, `${kw}.name`, 64), publicKey, ...(k.added !== undefined ? { added: time(k.added, `${kw}.added`) } : {}) };
  }
  const n = Object.keys(keys).length;
  if (n === 0) fail(`${w}.keys`, 'must declare at least one key');
  const threshold = int(o.threshold, `${w}.threshold`, 1);
  if (threshold > n) fail(`${w}.threshold`, `is ${threshold} but only ${n} key(s) are declared`);
  return { threshold, keys };
}

function checkEntry(raw: JsonValue, w: string): TrustEntry {
  const o = obj(raw, w, ['name', 'version', 'digest', 'publisher', 'trust', 'permissions', 'limits', 'added']);
  const name = str(o.name, `${w}.name`, 214);
  if (!isValidPluginName(name)) fail(`${w}.name`, 'must be a lowercase package-style name');
  const version = str(o.version, `${w}.version`, 256);
  if (semver.valid(version) !== version) fail(`${w}.version`, 'must be an exact semver version like 1.2.3');
  const digest = str(o.digest, `${w}.digest`, 137);
  if (!isDigest(digest)) fail(`${w}.digest`, 'must be "sha3-512:" and 128 lowercase hex digits');
  const publisher = str(o.publisher, `${w}.publisher`, 256);
  const trust = str(o.trust, `${w}.trust`, 32);
  if (!(TRUST_LEVELS as readonly string[]).includes(trust)) fail(`${w}.trust`, `must be one of ${TRUST_LEVELS.join(', ')}`);
  const permissions = arr(o.permissions, `${w}.permissions`).map((p, i) => str(p, `${w}.permissions[${i}]`, 256));
  const limits = checkLimitTable(o.limits, `${w}.limits`);
  const added = o.added === undefined ? {} : { added: time(o.added, `${w}.added`) };
  return { name, version, digest, publisher, trust: trust as TrustLevel, permissions, limits, ...added };
}

// ---- construction and edits -----------------------------------------------------------------------

/** The key set of these keys; `added` (by key id) records when each was first declared. */
export function keySetOf(keys: PublicKey[], threshold: number, added: Readonly<Record<string, string>> = {}): KeySet {
  const out: Record<string, DeclaredKey> = {};
  for (const k of keys) {
    out[k.keyId] = { name: k.name, publicKey: Buffer.from(k.publicKey).toString('base64'), ...(added[k.keyId] !== undefined ? { added: added[k.keyId] } : {}) };
  }
  const n = Object.keys(out).length;
  if (!Number.isSafeInteger(threshold) || threshold < 1 || threshold > n) {
    throw new MalformedError('$.signed.keys.threshold', `must be between 1 and the number of distinct keys (${n})`);
  }
  return { threshold, keys: out };
}

/**
 * A new, empty list. `levels` gives the trust levels a meaning (levels.ts; without it the list means
 * what lists without a table mean); `now` stamps the keys' `added` (omitted: not stamped).
 */
export function createTrustList(opts: { keys: PublicKey[]; threshold: number; expires: Date; version?: number; levels?: LevelTable; now?: Date }): TrustListDocument {
  const added: Record<string, string> = {};
  if (opts.now !== undefined) for (const k of opts.keys) added[k.keyId] = formatExpires(opts.now);
  const signed: SignedTrustList = {
    type: 'warden-trust-list',
    specVersion: 1,
    version: opts.version ?? 1,
    expires: formatExpires(opts.expires),
    keys: keySetOf(opts.keys, opts.threshold, added),
    ...(opts.levels !== undefined ? { levels: opts.levels } : {}),
    entries: [],
  };
  return { signed: checkSigned(JSON.parse(canonicalize(signed)) as JsonValue), signatures: [] };
}

/**
 * Applies a change to the signed part. Changing a list that carries signatures starts the next
 * release: the version goes up by one (so hosts that accepted the old one accept this one) and the
 * old signatures, which no longer match, are dropped.
 */
export function editTrustList(doc: TrustListDocument, change: (s: SignedTrustList) => SignedTrustList): TrustListDocument {
  const next = change(structuredClone(doc.signed));
  if (doc.signatures.length > 0 && next.version === doc.signed.version) next.version = doc.signed.version + 1;
  return { signed: checkSigned(JSON.parse(canonicalize(next)) as JsonValue), signatures: [] };
}

export function normalizeEntry(e: TrustEntry): TrustEntry {
  return { ...e, permissions: [...new Set(e.permissions)].sort() };
}

export function addEntry(doc: TrustListDocument, entry: TrustEntry, opts: { replace?: boolean } = {}): TrustListDocument {
  const exists = doc.signed.entries.some((e) => e.name === entry.name && e.version === entry.version);
  if (exists && opts.replace !== true) {
    throw new MalformedError('$.signed.entries', `${entry.name}@${entry.version} is already listed (use replace to change it)`);
  }
  return editTrustList(doc, (s) => {
    const entries = s.entries.filter((e) => !(e.name === entry.name && e.version === entry.version));
    entries.push(normalizeEntry(entry));
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : semver.compare(a.version, b.version)));
    return { ...s, entries };
  });
}

/** Removes one version of a plugin, or every version if `version` is undefined. */
export function removeEntry(doc: TrustListDocument, name: string, version?: string): TrustListDocument {
  const keep = doc.signed.entries.filter((e) => !(e.name === name && (version === undefined || e.version === version)));
  if (keep.length === doc.signed.entries.length) {
    throw new MalformedError('$.signed.entries', `${version === undefined ? name : `${name}@${version}`} is not listed`);
  }
  return editTrustList(doc, (s) => ({ ...s, entries: keep }));
}

/** Adds (or replaces) this key's signature. Does not check the key is declared: rotation needs old keys too. */
export async function signTrustList(doc: TrustListDocument, key: SigningKey): Promise<TrustListDocument> {
  const sodium = await getSodium();
  const sig = Buffer.from(sodium.crypto_sign_detached(signedBytes(doc.signed), key.secretKey)).toString('base64');
  const signatures = doc.signatures.filter((s) => s.keyId !== key.keyId);
  signatures.push({ keyId: key.keyId, sig });
  return { signed: doc.signed, signatures };
}

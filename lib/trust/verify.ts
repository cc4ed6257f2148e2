/**
 * Verification of a trust list, in the order The Update Framework prescribes: signatures first
 * (nothing in an unauthenticated document is believed, not even its version), then rollback, then
 * expiry. Then lookups of plugins and their digests against the verified entries.
 *
 * Keys and rotation. The host pins keys and a threshold; that is the trust anchor. A list declares in
 * `signed.keys` the key set that signs it. If that set differs from the anchor, the list is a key
 * rotation and must carry a threshold of signatures from the anchor (old) keys AND a threshold from
 * the declared (new) keys: old keys vouch for the change, new keys prove they are held. Once accepted,
 * the declared set becomes the anchor for the next list (TrustStore keeps it in its state file).
 *
 * Each key counts once, however many signatures it contributes.
 */
import { createHash } from 'node:crypto';
import { InvalidOptionError } from '../errors';
import { getSodium } from './sodium';
import {
  BadSignatureError,
  DigestMismatchError,
  ExpiredError,
  NotListedError,
  RollbackError,
  ThresholdError,
  TrustError,
  UnknownKeyError,
} from './errors';
import { KeySet, keySetOf, parseTrustList, signedBytes, TrustEntry, TrustListDocument } from './document';
import { digestDirectory } from './digest';
import { PublicKey } from './keys';
import { UNLISTED_LEVELS, type LevelPolicy, type LevelTable } from './levels';

/** Pinned keys and how many of them must sign. */
export interface TrustAnchor {
  keys: PublicKey[];
  threshold: number;
}

/** What the host remembers of the last list it accepted. */
export interface AcceptedVersion {
  version: number;
  /** sha3-512 hex of the signed bytes, so the same version with other content is caught too. */
  digest: string;
}

export interface VerifyOptions {
  anchor: TrustAnchor | KeySet;
  /** The highest version accepted before; omit only where rollback protection is not wanted. */
  accepted?: AcceptedVersion;
  now?: Date;
  maxBytes?: number;
  /** Name of the file, for error messages. */
  file?: string;
}

export interface SignatureTally {
  /** Distinct key ids whose signature verifies. */
  valid: string[];
  /** Key ids in the key set whose signature does not verify. */
  bad: string[];
  /** Key ids not in the key set. */
  unknown: string[];
  /** Key ids that signed more than once (counted once). */
  duplicates: string[];
}

interface ResolvedKeys {
  threshold: number;
  keys: Map<string, Uint8Array>;
}

function resolve(a: TrustAnchor | KeySet): ResolvedKeys {
  const keys = new Map<string, Uint8Array>();
  if (Array.isArray((a as TrustAnchor).keys)) {
    const distinct = new Set((a as TrustAnchor).keys.map((k) => k.keyId)).size;
    // A host pinning one key twice with threshold 2 must not get "two" signatures from it.
    if (!Number.isSafeInteger(a.threshold) || a.threshold < 1 || a.threshold > distinct) {
      throw new InvalidOptionError('anchor.threshold', `must be between 1 and the number of distinct pinned keys (${distinct}), got ${a.threshold}`);
    }
    const ks = keySetOf((a as TrustAnchor).keys, a.threshold);
    for (const [id, k] of Object.entries(ks.keys)) keys.set(id, new Uint8Array(Buffer.from(k.publicKey, 'base64')));
    return { threshold: ks.threshold, keys };
  }
  for (const [id, k] of Object.entries((a as KeySet).keys)) keys.set(id, new Uint8Array(Buffer.from(k.publicKey, 'base64')));
  return { threshold: a.threshold, keys };
}

export async function tallySignatures(
  doc: TrustListDocument,
  keys: Map<string, Uint8Array>,
  message: Uint8Array = signedBytes(doc.signed),
): Promise<SignatureTally> {
  const sodium = await getSodium();
  const t: SignatureTally = { valid: [], bad: [], unknown: [], duplicates: [] };
  const seen = new Set<string>();
  for (const s of doc.signatures) {
    if (seen.has(s.keyId)) {
      if (!t.duplicates.includes(s.keyId)) t.duplicates.push(s.keyId);
      continue;
    }
    seen.add(s.keyId);
    const pk = keys.get(s.keyId);
    if (pk === undefined) {
      t.unknown.push(s.keyId);
      continue;
    }
    // A signature that is not 64 bytes is bad input, counted as a bad signature. Anything libsodium
    // throws beyond that is not a verdict on the signature: it propagates with its own message
    // (the load fails either way), instead of hiding as "bad signature".
    const sig = new Uint8Array(Buffer.from(s.sig, 'base64'));
    const ok = sig.length === sodium.crypto_sign_BYTES && sodium.crypto_sign_verify_detached(sig, message, pk);
    (ok ? t.valid : t.bad).push(s.keyId);
  }
  return t;
}

function requireThreshold(t: SignatureTally, threshold: number, role: 'pinned' | 'rotation'): void {
  if (t.valid.length >= threshold) return;
  if (t.bad.length > 0) throw new BadSignatureError(t.bad);
  if (t.valid.length === 0 && role === 'pinned') throw new UnknownKeyError(t.unknown);
  throw new ThresholdError(role, threshold, t.valid, t.duplicates);
}

function sameKeySet(a: ResolvedKeys, b: ResolvedKeys): boolean {
  if (a.threshold !== b.threshold || a.keys.size !== b.keys.size) return false;
  for (const id of a.keys.keys()) if (!b.keys.has(id)) return false;
  return true;
}

export function documentDigest(doc: TrustListDocument, message: Uint8Array = signedBytes(doc.signed)): string {
  return createHash('sha3-512').update(message).digest('hex');
}

/** A trust list whose signatures, version and expiry have been checked. */
export class VerifiedTrustList {
  readonly document: TrustListDocument;
  readonly version: number;
  readonly expires: Date;
  /** sha3-512 hex of the signed bytes. */
  readonly digest: string;
  /** Pinned key ids that signed validly. */
  readonly signers: string[];
  /** True if this list changed the key set (a rotation was verified). */
  readonly rotated: boolean;

  constructor(document: TrustListDocument, signers: string[], rotated: boolean, digest = documentDigest(document)) {
    this.document = document;
    this.version = document.signed.version;
    this.expires = new Date(document.signed.expires);
    this.digest = digest;
    this.signers = signers;
    this.rotated = rotated;
  }

  get entries(): readonly TrustEntry[] {
    return this.document.signed.entries;
  }

  /** What each trust level means: the list's table, or, for a list without one, UNLISTED_LEVELS. */
  get levels(): LevelTable {
    return this.document.signed.levels ?? UNLISTED_LEVELS;
  }

  /** The level policy an entry falls under. */
  levelOf(entry: TrustEntry): LevelPolicy {
    return this.levels[entry.trust];
  }

  /** The key set the next list must satisfy. */
  get keySet(): KeySet {
    return this.document.signed.keys;
  }

  /** The entry for exactly this name and version, or ERR_TRUST_NOT_LISTED. */
  entry(name: string, version: string): TrustEntry {
    const e = this.entries.find((x) => x.name === name && x.version === version);
    if (e === undefined) {
      throw new NotListedError(name, version, this.entries.filter((x) => x.name === name).map((x) => x.version));
    }
    return e;
  }

  /**
   * Hashes the plugin directory and compares it with the listed digest. Returns the entry (with its
   * grants) only if they match.
   */
  async verifyPlugin(name: string, version: string, dir: string): Promise<TrustEntry> {
    const e = this.entry(name, version);
    const actual = await digestDirectory(dir);
    if (actual !== e.digest) throw new DigestMismatchError(name, version, e.digest, actual);
    return e;
  }
}

/** Verifies a trust list (bytes of the signed JSON document) and returns it, or throws a TrustError. */
export async function verifyTrustList(input: string | Uint8Array, opts: VerifyOptions): Promise<VerifiedTrustList> {
  const doc = parseTrustList(input, { maxBytes: opts.maxBytes, file: opts.file });
  return verifyTrustDocument(doc, opts);
}

export async function verifyTrustDocument(doc: TrustListDocument, opts: VerifyOptions): Promise<VerifiedTrustList> {
  const anchor = resolve(opts.anchor);
  // Canonical encoding is the largest cost of a verification; do it once.
  const message = signedBytes(doc.signed);
  const tally = await tallySignatures(doc, anchor.keys, message);
  requireThreshold(tally, anchor.threshold, 'pinned');

  const declared = resolve(doc.signed.keys);
  const rotated = !sameKeySet(anchor, declared);
  if (rotated) requireThreshold(await tallySignatures(doc, declared.keys, message), declared.threshold, 'rotation');

  const digest = documentDigest(doc, message);
  if (opts.accepted !== undefined) {
    const { version } = doc.signed;
    if (version < opts.accepted.version) throw new RollbackError(version, opts.accepted.version, false);
    if (version === opts.accepted.version && digest !== opts.accepted.digest) throw new RollbackError(version, opts.accepted.version, true);
  }

  const now = opts.now ?? new Date();
  if (now.getTime() >= Date.parse(doc.signed.expires)) {
    throw new ExpiredError(doc.signed.expires, now.toISOString());
  }
  return new VerifiedTrustList(doc, tally.valid, rotated, digest);
}

export type VerificationLevel = 'trusted' | 'unpinned' | 'failed';

export interface TrustCheck {
  /**
   * trusted: verified against pinned keys (and not expired, not rolled back).
   * unpinned: the signatures are valid, but from keys the host has not pinned; do not run the code.
   * failed: anything else; `error` says why.
   */
  level: VerificationLevel;
  list?: VerifiedTrustList;
  error?: TrustError;
  /** Key ids with a valid signature: pinned ones if trusted, the document's own keys if unpinned. */
  signers: string[];
}

/** Like verifyTrustList, but reports the level instead of throwing, as users expect a verifier to. */
export async function checkTrustList(input: string | Uint8Array, opts: VerifyOptions): Promise<TrustCheck> {
  let doc: TrustListDocument;
  try {
    doc = parseTrustList(input, { maxBytes: opts.maxBytes, file: opts.file });
    const list = await verifyTrustDocument(doc, opts);
    return { level: 'trusted', list, signers: list.signers };
  } catch (e) {
    if (!(e instanceof TrustError)) throw e;
    if (e instanceof UnknownKeyError) {
      // Do the signatures at least verify against the keys the document declares for itself?
      const selfTally = await tallySignatures(doc!, resolve(doc!.signed.keys).keys);
      if (selfTally.valid.length > 0 && selfTally.bad.length === 0) return { level: 'unpinned', error: e, signers: selfTally.valid };
    }
    return { level: 'failed', error: e, signers: [] };
  }
}

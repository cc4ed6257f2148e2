/**
 * Ed25519 signing keys and XChaCha20-Poly1305 envelope keys, and their files.
 *
 * A key id is the first 16 hex digits of SHA3-256 over a domain prefix and the raw public key: short
 * enough to read aloud, stable (derived, never stored as the source of truth) and checked on load.
 * Key files are small JSON documents; secret files are written with mode 0600 and refused on load if
 * group or others can read them, as ssh does.
 */
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import { getSodium } from './sodium';
import { KeyFileError, MalformedError } from './errors';
import { parseJsonBounded } from './canonical';
import { readBounded, writeFileAtomic } from './io';

export interface PublicKey {
  keyId: string;
  name: string;
  /** 32 raw bytes. */
  publicKey: Uint8Array;
}

export interface SigningKey extends PublicKey {
  /** 64 raw bytes (libsodium's seed || public key form). */
  secretKey: Uint8Array;
}

export interface EnvelopeKey {
  keyId: string;
  name: string;
  /** 32 raw bytes. */
  key: Uint8Array;
}

const KEY_FILE_MAX = 64 * 1024;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function isValidKeyName(name: string): boolean {
  return NAME_RE.test(name);
}

export function keyIdOf(publicKey: Uint8Array, domain = 'warden-ed25519'): string {
  return createHash('sha3-256').update(`${domain}\0`).update(publicKey).digest('hex').slice(0, 16);
}

export async function generateSigningKey(name: string): Promise<SigningKey> {
  if (!isValidKeyName(name)) throw new KeyFileError(name, 'a key name is 1-64 letters, digits, ".", "_" or "-"');
  const sodium = await getSodium();
  const kp = sodium.crypto_sign_keypair();
  return { name, keyId: keyIdOf(kp.publicKey), publicKey: kp.publicKey, secretKey: kp.privateKey };
}

export async function generateEnvelopeKey(name: string): Promise<EnvelopeKey> {
  if (!isValidKeyName(name)) throw new KeyFileError(name, 'a key name is 1-64 letters, digits, ".", "_" or "-"');
  const sodium = await getSodium();
  const key = sodium.crypto_aead_xchacha20poly1305_ietf_keygen();
  return { name, keyId: envelopeKeyId(key), key };
}

/** An envelope key id must not reveal the key: hash it under its own domain. */
export function envelopeKeyId(key: Uint8Array): string {
  return keyIdOf(key, 'warden-envelope-key');
}

export function publicKeyToJson(k: PublicKey): string {
  return JSON.stringify(
    { type: 'warden-ed25519-public', name: k.name, keyId: k.keyId, publicKey: Buffer.from(k.publicKey).toString('base64') },
    null,
    2,
  ) + '\n';
}

function secretKeyToJson(k: SigningKey): string {
  return JSON.stringify(
    { type: 'warden-ed25519-secret', name: k.name, keyId: k.keyId, secretKey: Buffer.from(k.secretKey).toString('base64') },
    null,
    2,
  ) + '\n';
}

function envelopeKeyToJson(k: EnvelopeKey): string {
  return JSON.stringify(
    { type: 'warden-envelope-key', name: k.name, keyId: k.keyId, key: Buffer.from(k.key).toString('base64') },
    null,
    2,
  ) + '\n';
}

/** Writes NAME.key (0600) and NAME.pub. Refuses to overwrite unless `overwrite`. */
export async function writeSigningKeyFiles(k: SigningKey, secretPath: string, publicPath: string, overwrite = false): Promise<void> {
  await writeFileAtomic(secretPath, secretKeyToJson(k), { mode: 0o600, overwrite });
  await writeFileAtomic(publicPath, publicKeyToJson(k), { mode: 0o644, overwrite });
}

export async function writeEnvelopeKeyFile(k: EnvelopeKey, file: string, overwrite = false): Promise<void> {
  await writeFileAtomic(file, envelopeKeyToJson(k), { mode: 0o600, overwrite });
}

async function readKeyDoc(file: string, secret: boolean): Promise<Record<string, unknown>> {
  let buf: Buffer;
  try {
    if (secret) {
      const st = await fs.promises.stat(file);
      if ((st.mode & 0o077) !== 0) {
        throw new KeyFileError(file, `secret key is accessible by group or others (mode ${(st.mode & 0o777).toString(8)}); run chmod 600 on it`);
      }
    }
    buf = await readBounded(file, KEY_FILE_MAX);
  } catch (e) {
    if (e instanceof KeyFileError) throw e;
    if (e instanceof MalformedError) throw new KeyFileError(file, e.message);
    throw new KeyFileError(file, `cannot read key file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let doc;
  try {
    doc = parseJsonBounded(buf, { maxBytes: KEY_FILE_MAX, maxDepth: 2 });
  } catch (e) {
    // The reason (not JSON, too deep, a key given twice) without the file name the error repeats.
    throw new KeyFileError(file, `not a warden key file (${(e as Error).message.replace(/^\$: /, '')})`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new KeyFileError(file, 'not a warden key file');
  return doc;
}

function bytesField(file: string, doc: Record<string, unknown>, field: string, len: number): Uint8Array {
  const v = doc[field];
  if (typeof v !== 'string') throw new KeyFileError(file, `field "${field}" is missing`);
  const b = Buffer.from(v, 'base64');
  if (b.length !== len || b.toString('base64') !== v) throw new KeyFileError(file, `field "${field}" is not ${len} bytes of base64`);
  return new Uint8Array(b);
}

function nameField(file: string, doc: Record<string, unknown>): string {
  const n = doc.name;
  if (typeof n !== 'string' || !isValidKeyName(n)) throw new KeyFileError(file, 'field "name" is missing or invalid');
  return n;
}

export async function loadPublicKey(file: string): Promise<PublicKey> {
  const doc = await readKeyDoc(file, false);
  if (doc.type === 'warden-ed25519-secret') throw new KeyFileError(file, 'this is a secret key; give the .pub file');
  if (doc.type !== 'warden-ed25519-public') throw new KeyFileError(file, 'not a warden public key file');
  const publicKey = bytesField(file, doc, 'publicKey', 32);
  const keyId = keyIdOf(publicKey);
  if (doc.keyId !== keyId) throw new KeyFileError(file, `recorded key id ${String(doc.keyId)} does not match the key (${keyId})`);
  return { name: nameField(file, doc), keyId, publicKey };
}

export async function loadSigningKey(file: string): Promise<SigningKey> {
  const doc = await readKeyDoc(file, true);
  if (doc.type === 'warden-ed25519-public') throw new KeyFileError(file, 'this is a public key; signing needs the secret .key file');
  if (doc.type !== 'warden-ed25519-secret') throw new KeyFileError(file, 'not a warden secret key file');
  const secretKey = bytesField(file, doc, 'secretKey', 64);
  const sodium = await getSodium();
  // libsodium's secret key is seed || public key; re-derive the pair from the seed to catch corruption.
  const derived = sodium.crypto_sign_seed_keypair(secretKey.subarray(0, 32));
  if (Buffer.compare(Buffer.from(derived.privateKey), Buffer.from(secretKey)) !== 0) throw new KeyFileError(file, 'secret key is corrupt');
  const publicKey = derived.publicKey;
  const keyId = keyIdOf(publicKey);
  if (doc.keyId !== keyId) throw new KeyFileError(file, `recorded key id ${String(doc.keyId)} does not match the key (${keyId})`);
  return { name: nameField(file, doc), keyId, publicKey, secretKey };
}

export async function loadEnvelopeKey(file: string): Promise<EnvelopeKey> {
  const doc = await readKeyDoc(file, true);
  if (doc.type !== 'warden-envelope-key') throw new KeyFileError(file, 'not a warden envelope key file (make one with warden keygen NAME --envelope)');
  const key = bytesField(file, doc, 'key', 32);
  const keyId = envelopeKeyId(key);
  if (doc.keyId !== keyId) throw new KeyFileError(file, `recorded key id ${String(doc.keyId)} does not match the key (${keyId})`);
  return { name: nameField(file, doc), keyId, key };
}

/**
 * The optional encrypted envelope around a signed trust list: XChaCha20-Poly1305 (libsodium) with a
 * host-held 32-byte key. The random 24-byte nonce is large enough that reusing a key for many lists is
 * safe. The header (type, alg, key id, nonce) is authenticated as associated data, so changing any
 * byte of header or ciphertext makes decryption fail. Encryption hides the list; it does not replace
 * the signature, which is still checked after decryption.
 */
import { canonicalize, JsonValue, parseJsonBounded } from './canonical';
import { DecryptError, MalformedError } from './errors';
import { EnvelopeKey } from './keys';
import { getSodium } from './sodium';
import { DEFAULT_MAX_BYTES } from './io';

const TYPE = 'warden-trust-envelope';
const ALG = 'xchacha20poly1305-ietf';

export interface Envelope {
  type: typeof TYPE;
  alg: typeof ALG;
  keyId: string;
  nonce: string;
  ciphertext: string;
}

function aad(e: Pick<Envelope, 'type' | 'alg' | 'keyId' | 'nonce'>): string {
  return canonicalize({ type: e.type, alg: e.alg, keyId: e.keyId, nonce: e.nonce });
}

export function isEnvelope(raw: JsonValue): boolean {
  return raw !== null && typeof raw === 'object' && !Array.isArray(raw) && raw.type === TYPE;
}

export async function encryptEnvelope(plaintext: Uint8Array, key: EnvelopeKey): Promise<string> {
  const sodium = await getSodium();
  const nonce = sodium.randombytes_buf(sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  const header = { type: TYPE, alg: ALG, keyId: key.keyId, nonce: Buffer.from(nonce).toString('base64') } as const;
  const ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad(header), null, nonce, key.key);
  const env: Envelope = { ...header, ciphertext: Buffer.from(ct).toString('base64') };
  return JSON.stringify(env, null, 2) + '\n';
}

function strictBase64(s: JsonValue | undefined): Uint8Array | undefined {
  if (typeof s !== 'string') return undefined;
  const b = Buffer.from(s, 'base64');
  return b.toString('base64') === s ? new Uint8Array(b) : undefined;
}

/** Opens an envelope (JSON text or already-parsed value). Any change to it gives ERR_TRUST_DECRYPT. */
export async function decryptEnvelope(
  input: string | Uint8Array | JsonValue,
  key: EnvelopeKey,
  opts: { maxBytes?: number; file?: string } = {},
): Promise<Uint8Array> {
  const raw = typeof input === 'string' || input instanceof Uint8Array
    ? parseJsonBounded(input, { maxBytes: opts.maxBytes ?? DEFAULT_MAX_BYTES, maxDepth: 2, file: opts.file })
    : input;
  if (!isEnvelope(raw)) throw new MalformedError('$.type', `not a ${TYPE}`, opts.file);
  const e = raw as Record<string, JsonValue>;
  for (const k of Object.keys(e)) {
    if (!['type', 'alg', 'keyId', 'nonce', 'ciphertext'].includes(k)) throw new MalformedError(`$.${k}`, 'unknown field', opts.file);
  }
  if (e.alg !== ALG) throw new MalformedError('$.alg', `unsupported algorithm (expected ${ALG})`, opts.file);
  if (typeof e.keyId !== 'string') throw new MalformedError('$.keyId', 'must be a string', opts.file);
  if (e.keyId !== key.keyId) throw new DecryptError(key.keyId, `the envelope was made for key ${e.keyId}, not this one`);
  const sodium = await getSodium();
  const nonce = strictBase64(e.nonce);
  const ct = strictBase64(e.ciphertext);
  if (nonce === undefined || nonce.length !== sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES || ct === undefined) {
    throw new DecryptError(key.keyId, 'the envelope nonce or ciphertext is damaged');
  }
  try {
    return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
      null,
      ct,
      aad({ type: TYPE, alg: ALG, keyId: e.keyId, nonce: e.nonce as string }),
      nonce,
      key.key,
    );
  } catch {
    throw new DecryptError(key.keyId, 'the envelope does not authenticate: it was modified or encrypted with another key');
  }
}

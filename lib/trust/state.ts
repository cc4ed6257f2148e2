/**
 * The host's state file: the version (and content digest) of the last trust list it accepted, and the
 * key set that list declared, which the next list must satisfy. Without this memory an attacker could
 * replay an old, validly signed list (TUF's rollback attack). A missing file means "nothing accepted
 * yet"; a corrupt one is refused rather than reset, since resetting would re-open rollbacks.
 */
import { JsonValue, parseJsonBounded } from './canonical';
import { checkSigned, KeySet } from './document';
import { StateFileError } from './errors';
import { readBounded, writeFileAtomic } from './io';
import { AcceptedVersion, VerifiedTrustList } from './verify';

export interface TrustState extends AcceptedVersion {
  keys: KeySet;
  acceptedAt: string;
}

const MAX = 1024 * 1024;

export async function readTrustState(file: string): Promise<TrustState | undefined> {
  let buf: Buffer;
  try {
    buf = await readBounded(file, MAX);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StateFileError(file, `cannot read (${(e as Error).message})`);
  }
  try {
    const raw = parseJsonBounded(buf, { maxBytes: MAX }) as Record<string, JsonValue>;
    if (raw === null || typeof raw !== 'object' || raw.type !== 'warden-trust-state') throw new Error('not a warden trust state file');
    const { version, digest, acceptedAt } = raw;
    if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) throw new Error('bad version');
    if (typeof digest !== 'string' || !/^[0-9a-f]{128}$/.test(digest)) throw new Error('bad digest');
    if (typeof acceptedAt !== 'string') throw new Error('bad acceptedAt');
    // Reuse the trust list's key set check by wrapping the keys in a minimal signed document.
    const keys = checkSigned({
      type: 'warden-trust-list', specVersion: 1, version: 1, expires: '2000-01-01T00:00:00Z', keys: raw.keys ?? null, entries: [],
    }).keys;
    return { version, digest, keys, acceptedAt };
  } catch (e) {
    throw new StateFileError(file, `corrupt (${(e as Error).message})`);
  }
}

export async function writeTrustState(file: string, list: VerifiedTrustList, now = new Date()): Promise<TrustState> {
  const state: TrustState = { version: list.version, digest: list.digest, keys: list.keySet, acceptedAt: now.toISOString() };
  await writeFileAtomic(file, JSON.stringify({ type: 'warden-trust-state', ...state }, null, 2) + '\n', { mode: 0o600 });
  return state;
}


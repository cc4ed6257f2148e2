/**
 * The host's state file: the version (and content digest) of the last trust list it accepted, and the
 * key set that list declared, which the next list must satisfy. Without this memory an attacker could
 * replay an old, validly signed list (TUF's rollback attack).
 *
 * The file must exist. A missing file is refused (ERR_TRUST_STATE_MISSING): a fresh install and a
 * deleted file look the same, so which one it is must be said by an operator, with
 * `warden trust reset-state` (which writes a reset record, below) or the store's `startOver` option.
 * A corrupt or unreadable file is refused too (ERR_TRUST_STATE), and so is a symlink in its place: it
 * is opened with O_NOFOLLOW, so a link to nowhere cannot pass for "missing" nor one to another file
 * for the state. Writes are atomic and durable (writeFileAtomic: temp file, fsync, rename, fsync of
 * the directory), so a crash leaves the old state or the new one.
 */
import { JsonValue, parseJsonBounded } from './canonical';
import { checkSigned, KeySet } from './document';
import { StateFileError, StateMissingError } from './errors';
import { readBounded, writeFileAtomic } from './io';
import { AcceptedVersion, VerifiedTrustList } from './verify';

export interface TrustState extends AcceptedVersion {
  keys: KeySet;
  acceptedAt: string;
}

/**
 * What `warden trust reset-state` writes: nothing is accepted yet, so the next list signed by the
 * host's pinned keys is accepted whatever its version (and replaces this record).
 */
export interface ResetState {
  version: 0;
  resetAt: string;
  reason: string;
}

export type StateRecord = TrustState | ResetState;

export function isResetState(s: StateRecord): s is ResetState {
  return s.version === 0;
}

const MAX = 1024 * 1024;
const TYPE = 'warden-trust-state';

/** Reads the state file. Throws StateMissingError if it does not exist, StateFileError if it is not a good one. */
export async function readTrustState(file: string): Promise<StateRecord> {
  let buf: Buffer;
  try {
    buf = await readBounded(file, MAX, { noFollow: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new StateMissingError(file, false);
    if (code === 'ELOOP') throw new StateFileError(file, 'is a symbolic link, which is never followed for the state file; put the file itself there');
    throw new StateFileError(file, `cannot read (${(e as Error).message})`);
  }
  try {
    const raw = parseJsonBounded(buf, { maxBytes: MAX }) as Record<string, JsonValue>;
    if (raw === null || typeof raw !== 'object' || raw.type !== TYPE) throw new Error('not a warden trust state file');
    const { version, digest, acceptedAt } = raw;
    if (version === 0) {
      const { resetAt, reason } = raw;
      if (typeof resetAt !== 'string' || typeof reason !== 'string') throw new Error('bad reset record');
      return { version: 0, resetAt, reason };
    }
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
  await writeFileAtomic(file, JSON.stringify({ type: TYPE, ...state }, null, 2) + '\n', { mode: 0o600 });
  return state;
}

/** Writes a reset record over whatever is there (a symlink in its place is replaced, not followed). */
export async function writeResetState(file: string, reason: string, now = new Date()): Promise<ResetState> {
  const state: ResetState = { version: 0, resetAt: now.toISOString(), reason };
  await writeFileAtomic(file, JSON.stringify({ type: TYPE, ...state }, null, 2) + '\n', { mode: 0o600 });
  return state;
}


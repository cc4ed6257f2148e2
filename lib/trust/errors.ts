/**
 * Every refusal of the trust layer has its own class and stable `code`, so a host can react to the
 * reason (alert on a rollback, re-fetch on an expiry) without parsing messages.
 */
import { WardenError } from '../errors';

/** Base class of trust refusals. `code` starts with ERR_TRUST_. */
export class TrustError extends WardenError {}

/** A signature by a key we know does not verify: the document was changed after signing. */
export class BadSignatureError extends TrustError {
  readonly keyIds: string[];
  constructor(keyIds: string[]) {
    super(
      'ERR_TRUST_BAD_SIGNATURE',
      `signature by key ${keyIds.join(', ')} does not match the document: it was modified after ` +
        'signing. Obtain the list again from its publisher; do not re-sign it blindly.',
    );
    this.keyIds = keyIds;
  }
}

/** Only keys that are not pinned signed the document (their signatures may well be valid). */
export class UnknownKeyError extends TrustError {
  readonly keyIds: string[];
  constructor(keyIds: string[]) {
    super(
      'ERR_TRUST_UNKNOWN_KEY',
      keyIds.length === 0
        ? 'the document carries no signature. Sign it with a pinned key (warden trust sign).'
        : `signed only by key(s) ${keyIds.join(', ')}, none of which is pinned. Pin the publisher's ` +
            'public key if you trust it, or obtain a list signed by a pinned key.',
    );
    this.keyIds = keyIds;
  }
}

/** Fewer distinct pinned keys signed than the threshold requires. Duplicates count once. */
export class ThresholdError extends TrustError {
  readonly threshold: number;
  readonly validSigners: string[];
  readonly duplicateKeyIds: string[];
  /** Which key set was short: the pinned (current) one, or the new one a rotation introduces. */
  readonly role: 'pinned' | 'rotation';
  constructor(role: 'pinned' | 'rotation', threshold: number, validSigners: string[], duplicateKeyIds: string[]) {
    const dup = duplicateKeyIds.length > 0 ? ` (key ${duplicateKeyIds.join(', ')} signed more than once; it counts once)` : '';
    super(
      'ERR_TRUST_THRESHOLD',
      `${validSigners.length} of ${threshold} required signatures from ${role === 'pinned' ? 'pinned' : 'the new (rotated)'} ` +
        `keys${dup}. Collect signatures from more distinct keys (warden trust sign).`,
    );
    this.threshold = threshold;
    this.validSigners = validSigners;
    this.duplicateKeyIds = duplicateKeyIds;
    this.role = role;
  }
}

/** The list's expiry date is in the past (a frozen, stale list). */
export class ExpiredError extends TrustError {
  readonly expires: string;
  readonly now: string;
  constructor(expires: string, now: string) {
    super('ERR_TRUST_EXPIRED', `the trust list expired at ${expires} (now ${now}). Fetch a fresh list from its publisher.`);
    this.expires = expires;
    this.now = now;
  }
}

/** The list is older than (or a different document with the same version as) one already accepted. */
export class RollbackError extends TrustError {
  readonly version: number;
  readonly highestAccepted: number;
  constructor(version: number, highestAccepted: number, sameVersionDifferentContent: boolean) {
    super(
      'ERR_TRUST_ROLLBACK',
      sameVersionDifferentContent
        ? `version ${version} was already accepted with different content. A publisher must raise the ` +
            'version for every change (warden trust bump).'
        : `version ${version} is older than version ${highestAccepted} already accepted: this is a replay ` +
            'of an old list. Fetch the current list.',
    );
    this.version = version;
    this.highestAccepted = highestAccepted;
  }
}

/** The plugin's files hash differently from the digest the list records for it. */
export class DigestMismatchError extends TrustError {
  readonly plugin: string;
  readonly version: string;
  readonly expected: string;
  readonly actual: string;
  constructor(plugin: string, version: string, expected: string, actual: string) {
    super(
      'ERR_TRUST_DIGEST_MISMATCH',
      `files of ${plugin}@${version} do not match the trust list (expected ${expected.slice(0, 24)}…, ` +
        `got ${actual.slice(0, 24)}…). Reinstall the plugin, or list the new digest (warden hash, warden trust add).`,
    );
    this.plugin = plugin;
    this.version = version;
    this.expected = expected;
    this.actual = actual;
  }
}

/** No entry for this plugin name, or none for this version of it. */
export class NotListedError extends TrustError {
  readonly plugin: string;
  readonly version: string;
  readonly listedVersions: string[];
  constructor(plugin: string, version: string, listedVersions: string[]) {
    super(
      'ERR_TRUST_NOT_LISTED',
      listedVersions.length === 0
        ? `plugin ${plugin} is not in the trust list. Add it (warden trust add) and re-sign the list.`
        : `version ${version} of ${plugin} is not in the trust list (listed: ${listedVersions.join(', ')}). ` +
            'Install a listed version or add this one.',
    );
    this.plugin = plugin;
    this.version = version;
    this.listedVersions = listedVersions;
  }
}

/** The document (or a key, state or envelope file) is not what it should be: size, depth, syntax or schema. */
export class MalformedError extends TrustError {
  /** Where in the document, as a JSON-path-like string ("$.signed.entries[3].digest"); "$" for the whole file. */
  readonly where: string;
  readonly file: string | undefined;
  constructor(where: string, reason: string, file?: string) {
    super('ERR_TRUST_MALFORMED', `${file !== undefined ? `${file}: ` : ''}${where}: ${reason}`);
    this.where = where;
    this.file = file;
  }
}

/** The encrypted envelope does not open with this key: wrong key, or the ciphertext or header was changed. */
export class DecryptError extends TrustError {
  readonly keyId: string;
  constructor(keyId: string, reason: string) {
    super('ERR_TRUST_DECRYPT', `${reason}. Check that you use the right envelope key (id ${keyId}) and obtain the file again.`);
    this.keyId = keyId;
  }
}

/** A plugin directory holds something a digest cannot vouch for (escaping symlink, device, fifo, socket…). */
export class UnsafeFileError extends TrustError {
  readonly path: string;
  readonly kind: string;
  constructor(path: string, kind: string, what: string) {
    super('ERR_TRUST_UNSAFE_FILE', `${path}: ${what}. Remove it from the plugin directory.`);
    this.path = path;
    this.kind = kind;
  }
}

/** A plugin directory could not be read (missing, permission, I/O error): `errno` says which. */
export class TreeReadError extends TrustError {
  readonly path: string;
  readonly errno: string;
  constructor(path: string, errno: string, detail: string) {
    super('ERR_TRUST_TREE_UNREADABLE', `${path}: cannot read the plugin's files (${detail}). Check that the directory exists and is readable.`);
    this.path = path;
    this.errno = errno;
  }
}

/** A key file is unreadable, of the wrong kind, or too widely readable. */
export class KeyFileError extends TrustError {
  readonly path: string;
  constructor(path: string, reason: string) {
    super('ERR_TRUST_KEY', `${path}: ${reason}`);
    this.path = path;
  }
}

/**
 * The host state file (highest accepted version) is unreadable, corrupt, or a symlink (never
 * followed). Refused, never reset silently: starting over is `warden trust reset-state`.
 */
export class StateFileError extends TrustError {
  readonly path: string;
  constructor(path: string, reason: string, code = 'ERR_TRUST_STATE') {
    super(
      code,
      `${path}: ${reason}. The state file protects against rollbacks: restore it from backup, or start over ` +
        'deliberately (warden trust reset-state; see the trust section of the README).',
    );
    this.path = path;
  }
}

/**
 * The state file does not exist. At a host's start this is a fresh install or a deletion, which look
 * the same: both need an operator to say so (warden trust reset-state, or the store's startOver
 * option). While running, the file vanished under the host.
 */
export class StateMissingError extends StateFileError {
  constructor(path: string, running: boolean) {
    super(
      path,
      running
        ? 'the state file disappeared while this host was running (it still enforces the version it accepted)'
        : 'no state file: nothing tells which trust list version was accepted last',
      'ERR_TRUST_STATE_MISSING',
    );
  }
}

/** The state file records less than this running host accepted: it was replaced, or reset under it. */
export class StateReplacedError extends StateFileError {
  readonly recorded: number;
  readonly highestAccepted: number;
  constructor(path: string, recorded: number, highestAccepted: number, what: string) {
    super(path, `${what} (this host accepted version ${highestAccepted}; a reset takes effect when the host starts)`, 'ERR_TRUST_STATE_REPLACED');
    this.recorded = recorded;
    this.highestAccepted = highestAccepted;
  }
}

/** Compatibility refusals: the plugin cannot run on this host or without its dependencies. */
export class CompatError extends WardenError {
  readonly plugin: string;
  constructor(code: string, plugin: string, message: string) {
    super(code, message);
    this.plugin = plugin;
  }
}

export class HostRangeError extends CompatError {
  readonly range: string;
  readonly hostVersion: string;
  constructor(plugin: string, range: string, hostVersion: string) {
    super(
      'ERR_COMPAT_HOST_RANGE',
      plugin,
      `${plugin} needs host API ${range}, this host provides ${hostVersion}. Install a version of the plugin built for this host.`,
    );
    this.range = range;
    this.hostVersion = hostVersion;
  }
}

export class MissingDependencyError extends CompatError {
  readonly dependency: string;
  readonly range: string;
  constructor(plugin: string, dependency: string, range: string) {
    super(
      'ERR_COMPAT_MISSING_DEPENDENCY',
      plugin,
      `${plugin} depends on ${dependency}@${range}, which is not loaded. Load ${dependency} first.`,
    );
    this.dependency = dependency;
    this.range = range;
  }
}

export class DependencyRangeError extends CompatError {
  readonly dependency: string;
  readonly range: string;
  readonly found: string;
  constructor(plugin: string, dependency: string, range: string, found: string) {
    super(
      'ERR_COMPAT_DEPENDENCY_RANGE',
      plugin,
      `${plugin} depends on ${dependency}@${range}, but ${dependency}@${found} is loaded. Load a matching version.`,
    );
    this.dependency = dependency;
    this.range = range;
    this.found = found;
  }
}

export class ManifestError extends CompatError {
  readonly field: string;
  constructor(plugin: string, field: string, reason: string) {
    super('ERR_COMPAT_MANIFEST', plugin, `${plugin} manifest: ${field}: ${reason}`);
    this.field = field;
  }
}

/**
 * `warden trust SUBCOMMAND`: create, edit, sign, verify, inspect, encrypt and decrypt trust lists.
 * Every write goes through writeFileAtomic: a failed command leaves the previous file intact.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as semver from 'semver';
import {
  addEntry, createTrustList, editTrustList, formatExpires, keySetOf, parseTrustList, removeEntry, serializeTrustList,
  signTrustList, TRUST_LEVELS, TrustLevel, TrustListDocument, isValidPluginName,
} from '../trust/document';
import { digestDirectory } from '../trust/digest';
import { decryptEnvelope, encryptEnvelope, isEnvelope } from '../trust/envelope';
import { MalformedError } from '../trust/errors';
import { DEFAULT_MAX_BYTES, readBounded, writeFileAtomic } from '../trust/io';
import { loadEnvelopeKey, loadPublicKey, loadSigningKey, PublicKey } from '../trust/keys';
import { parseJsonBounded } from '../trust/canonical';
import { isResetState, readTrustState, StateRecord, writeResetState, writeTrustState } from '../trust/state';
import { AuditLog } from '../audit/log';
import { checkTrustList, TrustAnchor } from '../trust/verify';
import { flag, list, parse, Parsed, parseWhen, positiveInt, run, str, UsageError } from './trust-common';
import { readManifest } from '../plugins/manifest';
import { PluginManifestError } from '../plugins/errors';
import { PLUGIN_LIMIT_NAMES } from '../plugins/limits';
import { formatReport, scanPlugin } from '../scan';
import { checkLevelCeiling } from '../plugins/levels';
import { RECOMMENDED_LEVELS, UNLISTED_LEVELS } from '../trust/levels';

const USAGE = `usage: warden trust <subcommand> LIST [options]

  init LIST --key PUB [--key PUB]... [--threshold N] [--expires WHEN] [--force] [--no-levels]
        create an empty list signed by the given public keys (threshold N, default 1), with the
        recommended trust levels table (--no-levels: levels are labels only, as in older lists)
  add LIST DIR --publisher P [--name N] [--version V] [--trust LEVEL]
        [--permission P]... [--limit NAME=INT]... [--replace] [--force]
        hash plugin directory DIR and list it (name/version default to DIR's manifest);
        a permission above LEVEL's ceiling is refused; DIR is scanned first (warden scan):
        a --permission the code never uses is refused unless --force, and capabilities
        the code uses but not granted are warned about
  level LIST LEVEL [--permission P]... [--limit NAME=INT]...
        set what LEVEL means: its ceiling of permissions ("*": any) and its default limits
  remove LIST NAME[@VERSION]      drop one version, or every version, of a plugin
  bump LIST [--expires WHEN]      start the next version (new expiry, signatures dropped)
  keys LIST --key PUB... [--threshold N]
        declare a new key set (a rotation: sign with a threshold of old AND new keys)
  sign LIST --key SECRET          add a signature
  verify LIST --pin PUB... [--threshold N] [--state FILE] [--envelope-key KEY]
        [--plugin DIR [--name N] [--version V]]
        --state FILE must exist (create it with reset-state)
        exit 0: verified and trusted; 3: valid signature from a key that is not pinned; 1: failed
  reset-state STATE --reason TEXT [--audit FILE]
        start over: forget the highest accepted version (the next list signed by the pinned
        keys is accepted whatever its version); recorded at critical in the audit log
        (--audit or $WARDEN_AUDIT_LOG, required). Run it while the host is stopped.
  show LIST [--envelope-key KEY] [--json]
  encrypt LIST --key ENVKEY [--out FILE]      default FILE: LIST.enc
  decrypt FILE --key ENVKEY --out LIST

Editing a signed list starts its next version and drops its signatures: sign it again.
WHEN is a duration (90d, 12h, 2w) or a date (2030-01-31). Default expiry: 90d.
LEVEL is one of ${TRUST_LEVELS.join(', ')} (default restricted).
Limits: ${PLUGIN_LIMIT_NAMES.join(', ')} (memory in bytes, cpu in millicores, cpuTime and callTimeout in ms).
`;

function parseLimits(values: string[]): Record<string, number> {
  const limits: Record<string, number> = {};
  for (const l of values) {
    const m = /^([A-Za-z][A-Za-z0-9_]{0,63})=(0|[1-9][0-9]{0,15})$/.exec(l);
    if (m === null || !Number.isSafeInteger(Number(m[2]))) throw new UsageError(`--limit '${l}' must be NAME=INTEGER, e.g. memory=268435456`);
    if (!(PLUGIN_LIMIT_NAMES as readonly string[]).includes(m[1])) throw new UsageError(`--limit '${m[1]}' is not a plugin limit; known: ${PLUGIN_LIMIT_NAMES.join(', ')} (memory in bytes, cpu in millicores, cpuTime and callTimeout in ms)`);
    limits[m[1]] = Number(m[2]);
  }
  return limits;
}

function level(value: string | undefined, option: string): TrustLevel {
  if (value === undefined || !(TRUST_LEVELS as readonly string[]).includes(value)) throw new UsageError(`${option} '${value ?? ''}' must be one of ${TRUST_LEVELS.join(', ')}`);
  return value as TrustLevel;
}

async function readList(file: string): Promise<TrustListDocument> {
  const buf = await readBounded(file, DEFAULT_MAX_BYTES);
  const raw = parseJsonBounded(buf, { maxBytes: DEFAULT_MAX_BYTES, file });
  if (isEnvelope(raw)) throw new MalformedError('$', 'the list is encrypted; decrypt it first (warden trust decrypt)', file);
  return parseTrustList(buf, { file });
}

async function writeList(file: string, doc: TrustListDocument): Promise<void> {
  await writeFileAtomic(file, serializeTrustList(doc), { mode: 0o644 });
}

async function loadKeys(files: string[], option: string): Promise<PublicKey[]> {
  if (files.length === 0) throw new UsageError(`${option} PUB is required (a .pub file from warden keygen)`);
  return Promise.all(files.map((f) => loadPublicKey(f)));
}

function threshold(p: Parsed, keys: number): number {
  const t = str(p, 'threshold');
  const n = t === undefined ? 1 : positiveInt(t, '--threshold');
  if (n > keys) throw new UsageError(`--threshold ${n} is more than the ${keys} key(s) given`);
  return n;
}

interface PluginMeta {
  name?: string;
  version?: string;
}

/** Name and version from the plugin's manifest (warden.json or package.json's `warden` section), if it has one. */
function readPluginMeta(dir: string): PluginMeta {
  if (!fs.existsSync(path.join(dir, 'warden.json')) && !fs.existsSync(path.join(dir, 'package.json'))) return {};
  try {
    const m = readManifest(dir);
    return { name: m.name, version: m.version };
  } catch (e) {
    if (e instanceof PluginManifestError && e.field === '$' && /not a warden plugin/.test(e.message)) return {};
    throw new UsageError(`DIR's manifest is not valid: ${(e as Error).message}`);
  }
}

/**
 * Shows the scan of DIR against the permissions about to be granted. A grant the code never uses
 * is refused (false) unless forced; one it uses without a grant is a warning (the load would not
 * give it, and the plugin would fail where it tries).
 */
async function scanAgainstGrants(dir: string, grants: string[], force: boolean): Promise<boolean> {
  const report = await scanPlugin(dir, { requested: grants });
  const d = report.diff;
  process.stdout.write(`scan of ${dir}:\n${formatReport(report).replace(/^/gm, '  ')}`);
  if (d.usedNotRequested.length > 0) process.stderr.write(`warden trust add: warning: the code uses ${d.usedNotRequested.join(', ')}, not granted here${d.usedNotRequested.includes('*') ? " ('*': code the scan could not see through; read the findings)" : ''}\n`);
  if (d.requestedUnused.length > 0 && d.complete) {
    if (!force) {
      process.stderr.write(`warden trust add: refused: the code never uses ${d.requestedUnused.join(', ')}; drop the --permission, or pass --force to grant it anyway\n`);
      return false;
    }
    process.stderr.write(`warden trust add: --force: granting ${d.requestedUnused.join(', ')}, which the code never uses\n`);
  }
  return true;
}

async function nameAndVersion(p: Parsed, dir: string): Promise<{ name: string; version: string }> {
  const meta = readPluginMeta(dir);
  const name = str(p, 'name') ?? meta.name;
  const version = str(p, 'version') ?? meta.version;
  if (name === undefined) throw new UsageError(`--name is required (DIR has no warden.json or package.json \`warden\` section)`);
  if (version === undefined) throw new UsageError(`--version is required (DIR has no warden.json or package.json \`warden\` section)`);
  if (!isValidPluginName(name)) throw new UsageError(`--name '${name}' must be a lowercase package-style name`);
  if (semver.valid(version) !== version) throw new UsageError(`--version '${version}' must be an exact semver version like 1.2.3`);
  return { name, version };
}

const sub: Record<string, (args: string[]) => Promise<number>> = {
  async init(args) {
    const p = parse(args, { key: { type: 'string', multiple: true }, threshold: { type: 'string' }, expires: { type: 'string' }, force: { type: 'boolean' }, 'no-levels': { type: 'boolean' } }, { min: 1, max: 1, names: 'LIST' });
    const file = p.positionals[0];
    if (!flag(p, 'force') && fs.existsSync(file)) throw new UsageError(`LIST ${file} already exists; pass --force to replace it`);
    const keys = await loadKeys(list(p, 'key'), '--key');
    const distinct = new Set(keys.map((k) => k.keyId)).size;
    const levels = flag(p, 'no-levels') ? undefined : RECOMMENDED_LEVELS;
    const doc = createTrustList({ keys, threshold: threshold(p, distinct), expires: parseWhen(str(p, 'expires') ?? '90d', '--expires'), levels, now: new Date() });
    await writeList(file, doc);
    process.stdout.write(`created ${file}: version 1, ${distinct} key(s), threshold ${doc.signed.keys.threshold}, expires ${doc.signed.expires}\n`);
    return 0;
  },

  async add(args) {
    const p = parse(args, {
      name: { type: 'string' }, version: { type: 'string' }, publisher: { type: 'string' }, trust: { type: 'string' },
      permission: { type: 'string', multiple: true }, limit: { type: 'string', multiple: true }, replace: { type: 'boolean' }, force: { type: 'boolean' },
    }, { min: 2, max: 2, names: 'LIST DIR' });
    const [file, dir] = p.positionals;
    const publisher = str(p, 'publisher');
    if (publisher === undefined || publisher === '') throw new UsageError('--publisher is required');
    const trust = level(str(p, 'trust') ?? 'restricted', '--trust');
    const limits = parseLimits(list(p, 'limit'));
    const doc = await readList(file);
    const { name, version } = await nameAndVersion(p, dir);
    const permissions = list(p, 'permission');
    // Refused here rather than at every host's load.
    checkLevelCeiling(name, trust, (doc.signed.levels ?? UNLISTED_LEVELS)[trust], permissions);
    const digest = await digestDirectory(dir);
    if (!(await scanAgainstGrants(dir, permissions, flag(p, 'force')))) return 1;
    const next = addEntry(doc, { name, version, digest, publisher, trust, permissions, limits, added: formatExpires(new Date()) }, { replace: flag(p, 'replace') });
    await writeList(file, next);
    process.stdout.write(`added ${name}@${version} ${digest} to ${file} (version ${next.signed.version}, unsigned)\n`);
    return 0;
  },

  async level(args) {
    const p = parse(args, { permission: { type: 'string', multiple: true }, limit: { type: 'string', multiple: true } }, { min: 2, max: 2, names: 'LIST LEVEL' });
    const [file, name] = p.positionals;
    const lvl = level(name, 'LEVEL');
    const doc = await readList(file);
    const policy = { permissions: [...new Set(list(p, 'permission'))].sort(), limits: parseLimits(list(p, 'limit')) };
    const next = editTrustList(doc, (s) => ({ ...s, levels: { ...(s.levels ?? UNLISTED_LEVELS), [lvl]: policy } }));
    // A narrower ceiling must not leave entries above it: they would be refused at every load.
    for (const e of next.signed.entries) if (e.trust === lvl) checkLevelCeiling(e.name, lvl, policy, e.permissions);
    await writeList(file, next);
    process.stdout.write(`${file}: level ${lvl} allows ${policy.permissions.join(', ') || 'no permissions'}; limits ${Object.entries(policy.limits).map(([k, v]) => `${k}=${v}`).join(', ') || 'host defaults'} (version ${next.signed.version}, unsigned)\n`);
    return 0;
  },

  async remove(args) {
    const p = parse(args, {}, { min: 2, max: 2, names: 'LIST NAME[@VERSION]' });
    const [file, spec] = p.positionals;
    const at = spec.lastIndexOf('@');
    const name = at > 0 ? spec.slice(0, at) : spec;
    const version = at > 0 ? spec.slice(at + 1) : undefined;
    const next = removeEntry(await readList(file), name, version);
    await writeList(file, next);
    process.stdout.write(`removed ${spec} from ${file} (version ${next.signed.version}, unsigned)\n`);
    return 0;
  },

  async bump(args) {
    const p = parse(args, { expires: { type: 'string' } }, { min: 1, max: 1, names: 'LIST' });
    const file = p.positionals[0];
    const doc = await readList(file);
    const expires = str(p, 'expires');
    const next = editTrustList({ ...doc, signatures: [] }, (s) => ({
      ...s, version: s.version + 1, expires: expires === undefined ? s.expires : formatExpires(parseWhen(expires, '--expires')),
    }));
    await writeList(file, next);
    process.stdout.write(`${file}: version ${next.signed.version}, expires ${next.signed.expires}, unsigned\n`);
    return 0;
  },

  async keys(args) {
    const p = parse(args, { key: { type: 'string', multiple: true }, threshold: { type: 'string' } }, { min: 1, max: 1, names: 'LIST' });
    const file = p.positionals[0];
    const keys = await loadKeys(list(p, 'key'), '--key');
    const t = threshold(p, new Set(keys.map((k) => k.keyId)).size);
    const doc = await readList(file);
    // Keys declared before keep the time they were first declared; new ones are stamped now.
    const added: Record<string, string> = {};
    for (const k of keys) added[k.keyId] = doc.signed.keys.keys[k.keyId]?.added ?? formatExpires(new Date());
    const next = editTrustList(doc, (s) => ({ ...s, keys: keySetOf(keys, t, added) }));
    await writeList(file, next);
    process.stdout.write(`${file}: version ${next.signed.version} declares ${Object.keys(next.signed.keys.keys).length} key(s), threshold ${t}; sign with a threshold of the old keys and of the new ones\n`);
    return 0;
  },

  async sign(args) {
    const p = parse(args, { key: { type: 'string' } }, { min: 1, max: 1, names: 'LIST' });
    const file = p.positionals[0];
    const keyFile = str(p, 'key');
    if (keyFile === undefined) throw new UsageError('--key SECRET is required (a .key file from warden keygen)');
    const key = await loadSigningKey(keyFile);
    const doc = await readList(file);
    const next = await signTrustList(doc, key);
    await writeList(file, next);
    const declared = key.keyId in doc.signed.keys.keys ? '' : ' (note: this key is not declared in the list; that is right only for a rotation)';
    process.stdout.write(`signed ${file} version ${doc.signed.version} with ${key.name} (${key.keyId}); ${next.signatures.length} signature(s)${declared}\n`);
    return 0;
  },

  async verify(args) {
    const p = parse(args, {
      pin: { type: 'string', multiple: true }, threshold: { type: 'string' }, state: { type: 'string' }, 'envelope-key': { type: 'string' },
      plugin: { type: 'string' }, name: { type: 'string' }, version: { type: 'string' },
    }, { min: 1, max: 1, names: 'LIST' });
    const file = p.positionals[0];
    const pins = await loadKeys(list(p, 'pin'), '--pin');
    const anchor: TrustAnchor = { keys: pins, threshold: threshold(p, new Set(pins.map((k) => k.keyId)).size) };
    const statePath = str(p, 'state');
    const record = statePath === undefined ? undefined : await readTrustState(statePath);
    const state = record === undefined || isResetState(record) ? undefined : record;
    if (statePath === undefined) process.stderr.write('warden trust verify: no --state file: rollback to an older list is not detected\n');
    let bytes: Uint8Array = await readBounded(file, DEFAULT_MAX_BYTES);
    const envKeyFile = str(p, 'envelope-key');
    if (isEnvelope(parseJsonBounded(bytes, { maxBytes: DEFAULT_MAX_BYTES, file }))) {
      if (envKeyFile === undefined) throw new UsageError(`${file} is encrypted: --envelope-key KEY is required`);
      bytes = await decryptEnvelope(bytes, await loadEnvelopeKey(envKeyFile), { file });
    }
    const check = await checkTrustList(bytes, { anchor: state?.keys ?? anchor, accepted: state, file });
    if (check.level === 'unpinned') {
      process.stdout.write(`UNPINNED: ${file} has valid signature(s) from ${check.signers.join(', ')}, none pinned. Not trusted.\n`);
      return 3;
    }
    if (check.level === 'failed' || check.list === undefined) {
      process.stdout.write(`FAILED: ${file}\n`);
      throw check.error;
    }
    const listed = check.list;
    if (statePath !== undefined && (state === undefined || state.version !== listed.version || listed.rotated)) await writeTrustState(statePath, listed);
    if (record !== undefined && isResetState(record)) process.stderr.write(`warden trust verify: ${statePath} had been reset (${record.resetAt}); version ${listed.version} is now the floor\n`);
    const pluginDir = str(p, 'plugin');
    let plugin = '';
    if (pluginDir !== undefined) {
      const { name, version } = await nameAndVersion(p, pluginDir);
      const e = await listed.verifyPlugin(name, version, pluginDir);
      plugin = `; plugin ${e.name}@${e.version} matches (trust ${e.trust}, publisher ${e.publisher})`;
    }
    process.stdout.write(`TRUSTED: ${file} version ${listed.version}, expires ${listed.document.signed.expires}, signed by ${listed.signers.join(', ')}${listed.rotated ? ' (key rotation accepted)' : ''}${plugin}\n`);
    return 0;
  },

  async 'reset-state'(args) {
    const p = parse(args, { reason: { type: 'string' }, audit: { type: 'string' } }, { min: 1, max: 1, names: 'STATE' });
    const file = p.positionals[0];
    const reason = str(p, 'reason');
    if (reason === undefined || reason.trim() === '') throw new UsageError('--reason TEXT is required: say why the rollback protection is reset (it goes to the audit log)');
    const auditFile = str(p, 'audit') ?? process.env.WARDEN_AUDIT_LOG;
    if (auditFile === undefined || auditFile === '') throw new UsageError('--audit FILE (or $WARDEN_AUDIT_LOG) is required: a reset is recorded at critical in the audit log');
    let before: StateRecord | undefined;
    let was: string;
    try {
      before = await readTrustState(file);
      was = isResetState(before) ? `already reset at ${before.resetAt}` : `version ${before.version} accepted at ${before.acceptedAt}`;
    } catch (e) {
      was = (e as Error).message.split('. The state file')[0];
    }
    // The audit line first: a reset that could not be recorded is not made.
    const failures: Error[] = [];
    const log = new AuditLog({ path: auditFile, sync: true, onError: (e) => failures.push(e) });
    try {
      log.append({
        severity: 'critical', event: 'trust-state-reset', reason: `trust state ${file} reset by the operator: ${reason}`,
        details: { statePath: file, previous: was, previousVersion: before !== undefined && !isResetState(before) ? before.version : null, user: process.env.SUDO_USER ?? process.env.USER ?? null },
      });
    } finally {
      log.close();
    }
    if (failures.length > 0) throw new UsageError(`cannot write the audit log ${auditFile} (${failures[0].message}); the state was NOT reset`);
    await writeResetState(file, reason);
    process.stdout.write(`reset ${file} (was: ${was}). The next trust list signed by the host's pinned keys is accepted whatever its version; start the host now.\n`);
    return 0;
  },

  async show(args) {
    const p = parse(args, { 'envelope-key': { type: 'string' }, json: { type: 'boolean' } }, { min: 1, max: 1, names: 'LIST' });
    const file = p.positionals[0];
    let bytes: Uint8Array = await readBounded(file, DEFAULT_MAX_BYTES);
    if (isEnvelope(parseJsonBounded(bytes, { maxBytes: DEFAULT_MAX_BYTES, file }))) {
      const k = str(p, 'envelope-key');
      if (k === undefined) throw new UsageError(`${file} is encrypted: --envelope-key KEY is required`);
      bytes = await decryptEnvelope(bytes, await loadEnvelopeKey(k), { file });
    }
    const doc = parseTrustList(bytes, { file });
    if (flag(p, 'json')) {
      process.stdout.write(serializeTrustList(doc));
      return 0;
    }
    const s = doc.signed;
    const out = [
      `trust list ${file}  (signatures NOT checked here; use warden trust verify)`,
      `  version  ${s.version}`,
      `  expires  ${s.expires}`,
      `  keys     threshold ${s.keys.threshold} of ${Object.keys(s.keys.keys).length}`,
      ...Object.entries(s.keys.keys).map(([id, k]) => `           ${id}  ${k.name}`),
      `  signed by ${doc.signatures.length === 0 ? '(unsigned)' : doc.signatures.map((x) => x.keyId).join(', ')}`,
      `  levels   ${s.levels === undefined ? '(no table: labels only, any permission, host default limits)' : ''}`,
      ...Object.entries(s.levels ?? {}).map(([n, l]) => `           ${n}  ceiling=${l.permissions.join(',') || '-'}  limits=${Object.entries(l.limits).map(([k, v]) => `${k}=${v}`).join(',') || '-'}`),
      `  entries  ${s.entries.length}`,
      ...s.entries.map((e) => {
        const limits = Object.entries(e.limits).map(([k, v]) => `${k}=${v}`).join(',');
        return `    ${e.name}@${e.version}  ${e.trust}  publisher=${e.publisher}  permissions=${e.permissions.join(',') || '-'}  limits=${limits || '-'}\n      ${e.digest}`;
      }),
    ];
    process.stdout.write(out.join('\n') + '\n');
    return 0;
  },

  async encrypt(args) {
    const p = parse(args, { key: { type: 'string' }, out: { type: 'string' } }, { min: 1, max: 1, names: 'LIST' });
    const file = p.positionals[0];
    const keyFile = str(p, 'key');
    if (keyFile === undefined) throw new UsageError('--key ENVKEY is required (warden keygen NAME --envelope)');
    const key = await loadEnvelopeKey(keyFile);
    const bytes = await readBounded(file, DEFAULT_MAX_BYTES);
    parseTrustList(bytes, { file }); // refuse to wrap something that is not a trust list
    const out = str(p, 'out') ?? `${file}.enc`;
    await writeFileAtomic(out, await encryptEnvelope(bytes, key), { mode: 0o644 });
    process.stdout.write(`encrypted ${file} to ${out} with envelope key ${key.keyId}\n`);
    return 0;
  },

  async decrypt(args) {
    const p = parse(args, { key: { type: 'string' }, out: { type: 'string' } }, { min: 1, max: 1, names: 'FILE' });
    const file = p.positionals[0];
    const keyFile = str(p, 'key');
    if (keyFile === undefined) throw new UsageError('--key ENVKEY is required');
    const out = str(p, 'out');
    if (out === undefined) throw new UsageError('--out LIST is required');
    const key = await loadEnvelopeKey(keyFile);
    const plain = await decryptEnvelope(await readBounded(file, DEFAULT_MAX_BYTES), key, { file });
    parseTrustList(plain, { file });
    await writeFileAtomic(out, plain, { mode: 0o644 });
    process.stdout.write(`decrypted ${file} to ${out}\n`);
    return 0;
  },
};

export async function trust(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === '--help' || name === '-h') {
    process.stdout.write(USAGE);
    return name === undefined ? 2 : 0;
  }
  const fn = sub[name];
  if (fn === undefined) {
    process.stderr.write(`warden trust: unknown subcommand '${name}'\n\n${USAGE}`);
    return 2;
  }
  return run(`trust ${name}`, USAGE, rest, () => fn(rest));
}

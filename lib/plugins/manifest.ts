/**
 * A plugin's manifest: `warden.json` in its directory, or the `warden` section of its package.json
 * (name and version then come from package.json itself). Fields:
 *
 *   name, version     package-style name, exact semver
 *   entry             module to load, relative to the directory (default: package.json `main`, or index.js)
 *   hostApi           semver range of the host API it needs
 *   dependencies      other plugins by name → semver range
 *   permissions       what it asks for: "fs:read:/abs/path", "fs:write:/abs/path", "net:outbound", "sys:exec"
 *   limits            what it asks for: memory, pids, cpu, cpuTime, callTimeout (LimitsOptions syntax)
 *   hooks             the hooks it handles (so a lazy host knows whom to start for a hook)
 *   provides          on the bus: "events:publish:TOPIC", "service:provide:NAME" (lib/bus/grants.ts)
 *   consumes          on the bus: "events:subscribe:TOPIC", "service:call:PLUGIN/NAME",
 *                     "data:read:OWNER/PREFIX", "data:write:OWNER/PREFIX"
 *
 * Everything is checked before any process starts; each error names the file and the field.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as semver from 'semver';

import { parseDeclarations, type BusGrant } from '../bus';
import { isValidPluginName } from '../trust/document';
import { parseJsonBounded } from '../trust/canonical';
import { PluginManifestError } from './errors';
import { parsePermission, type Permission } from './permissions';
import { parsePluginLimits, type PluginLimits } from './limits';

export interface PluginManifest {
  name: string;
  version: string;
  /** Absolute path of the plugin's directory (resolved, no symlinks). */
  dir: string;
  /** Absolute path of the entry module, inside `dir`. */
  entry: string;
  hostApi: string;
  dependencies: Record<string, string>;
  permissions: Permission[];
  limits: PluginLimits;
  hooks: string[];
  /** What it declares on the bus (`provides` then `consumes`); each must be granted by the trust entry. */
  bus: BusGrant[];
  /** The file the manifest came from. */
  file: string;
}

const MANIFEST_MAX_BYTES = 256 * 1024;
/** Entries of each list of a manifest (hooks, permissions, dependencies): a manifest is read on every (re)load. */
const MAX_LIST = 256;
const FIELDS = new Set(['name', 'version', 'entry', 'hostApi', 'dependencies', 'permissions', 'limits', 'hooks', 'provides', 'consumes', 'description']);
export const HOOK_NAME_RE = /^[a-z][a-zA-Z0-9_.:-]{0,127}$/;

function readJson(file: string, plugin: string): Record<string, unknown> {
  let text: Buffer;
  let fd = -1;
  try {
    // One open file, read to at most the bound: a file that grows after the size check (or a FIFO,
    // or /dev/zero behind a symlink) cannot make the host read more.
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new PluginManifestError(plugin, file, '$', 'is not a regular file');
    if (st.size > MANIFEST_MAX_BYTES) throw new PluginManifestError(plugin, file, '$', `is ${st.size} bytes, larger than the ${MANIFEST_MAX_BYTES} a manifest may have`);
    // Sized from the stat, one byte over to see growth; a file that grew is read on, up to the
    // bound. (A bound-sized buffer per read, zero-filled, was most of start()'s first synchronous
    // pass: 200 plugins held the event loop ~0.4 s, each read a fresh 256 KiB.) Only the bytes
    // read are used, so the buffer need not be zeroed.
    let buf = Buffer.allocUnsafe(Math.min(st.size, MANIFEST_MAX_BYTES) + 1);
    let n = 0;
    for (;;) {
      const r = fs.readSync(fd, buf, n, buf.length - n, n);
      if (r === 0) break;
      n += r;
      if (n < buf.length) continue;
      if (buf.length > MANIFEST_MAX_BYTES) break;
      const bigger = Buffer.allocUnsafe(Math.min(buf.length * 2, MANIFEST_MAX_BYTES + 1));
      buf.copy(bigger, 0, 0, n);
      buf = bigger;
    }
    if (n > MANIFEST_MAX_BYTES) throw new PluginManifestError(plugin, file, '$', `grew past the ${MANIFEST_MAX_BYTES} bytes a manifest may have while it was read`);
    text = buf.subarray(0, n);
  } catch (e) {
    if (e instanceof PluginManifestError) throw e;
    throw new PluginManifestError(plugin, file, '$', `cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
  let v: unknown;
  try {
    v = parseJsonBounded(text, { maxBytes: MANIFEST_MAX_BYTES, file });
  } catch (e) {
    throw new PluginManifestError(plugin, file, '$', `is not valid JSON (${(e as Error).message})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new PluginManifestError(plugin, file, '$', 'must be a JSON object');
  return v as Record<string, unknown>;
}

/** Reads and checks the manifest of the plugin in `dir`. Throws PluginManifestError. */
export function readManifest(dir: string): PluginManifest {
  const label = path.basename(dir);
  let real: string;
  try {
    real = fs.realpathSync(dir);
  } catch (e) {
    throw new PluginManifestError(label, dir, '$', `the plugin directory cannot be opened (${(e as NodeJS.ErrnoException).code})`);
  }
  const wardenJson = path.join(real, 'warden.json');
  const pkgJson = path.join(real, 'package.json');
  const pkg = fs.existsSync(pkgJson) ? readJson(pkgJson, label) : undefined;
  const hasSection = pkg !== undefined && pkg.warden !== undefined;
  let raw: Record<string, unknown>;
  let file: string;
  if (fs.existsSync(wardenJson)) {
    // Two manifests could disagree; which one the host believed would be a guess.
    if (hasSection) throw new PluginManifestError(label, wardenJson, '$', 'package.json has a `warden` section too; keep one manifest');
    raw = readJson(wardenJson, label);
    file = wardenJson;
  } else if (hasSection) {
    const section = pkg.warden;
    if (section === null || typeof section !== 'object' || Array.isArray(section)) throw new PluginManifestError(label, pkgJson, 'warden', 'must be an object');
    for (const k of ['name', 'version']) {
      if (k in (section as object)) throw new PluginManifestError(label, pkgJson, `warden.${k}`, `comes from package.json's own "${k}"; remove it from the section`);
    }
    raw = { ...(section as Record<string, unknown>), name: pkg.name, version: pkg.version };
    if (raw.entry === undefined && typeof pkg.main === 'string') raw.entry = pkg.main;
    file = pkgJson;
  } else {
    throw new PluginManifestError(label, real, '$', 'no warden.json and no `warden` section in package.json: this is not a warden plugin');
  }
  return checkManifestFields(raw, real, file);
}

function fail(name: string, file: string, field: string, why: string): never {
  throw new PluginManifestError(name, file, field, why);
}

export function checkManifestFields(raw: Record<string, unknown>, dir: string, file: string): PluginManifest {
  const prefix = path.basename(file) === 'package.json' ? 'warden.' : '';
  const label = typeof raw.name === 'string' ? raw.name : path.basename(dir);
  for (const k of Object.keys(raw)) {
    if (!FIELDS.has(k)) fail(label, file, `${prefix}${k}`, `unknown field; known: ${[...FIELDS].join(', ')}`);
  }
  const name = raw.name;
  if (typeof name !== 'string' || !isValidPluginName(name)) fail(label, file, 'name', 'must be a lowercase package-style name (a-z, 0-9, . _ ~ -, optional @scope/)');
  if (typeof raw.version !== 'string' || semver.valid(raw.version) !== raw.version) fail(name, file, 'version', 'must be an exact semver version like 1.2.3');
  if (typeof raw.hostApi !== 'string' || semver.validRange(raw.hostApi) === null) fail(name, file, `${prefix}hostApi`, 'must be a semver range of the host API, like "^1.0.0"');

  const entryRel = raw.entry ?? 'index.js';
  if (typeof entryRel !== 'string' || entryRel.length === 0 || path.isAbsolute(entryRel)) fail(name, file, `${prefix}entry`, 'must be a path relative to the plugin directory');
  const entry = path.resolve(dir, entryRel);
  if (path.relative(dir, entry).startsWith('..')) fail(name, file, `${prefix}entry`, 'must stay inside the plugin directory');
  let entryReal: string;
  try {
    entryReal = fs.realpathSync(entry);
  } catch {
    fail(name, file, `${prefix}entry`, `${entryRel} does not exist`);
  }
  if (path.relative(dir, entryReal).startsWith('..')) fail(name, file, `${prefix}entry`, 'resolves (through a symlink) outside the plugin directory');

  const dependencies: Record<string, string> = {};
  if (raw.dependencies !== undefined) {
    const d = raw.dependencies;
    if (d === null || typeof d !== 'object' || Array.isArray(d)) fail(name, file, `${prefix}dependencies`, 'must be an object of plugin name → semver range');
    if (Object.keys(d).length > MAX_LIST) fail(name, file, `${prefix}dependencies`, `lists more than ${MAX_LIST} plugins`);
    for (const [dep, range] of Object.entries(d as Record<string, unknown>)) {
      if (!isValidPluginName(dep)) fail(name, file, `${prefix}dependencies.${dep}`, 'is not a valid plugin name');
      if (dep === name) fail(name, file, `${prefix}dependencies.${dep}`, 'a plugin cannot depend on itself');
      if (typeof range !== 'string' || semver.validRange(range) === null) fail(name, file, `${prefix}dependencies.${dep}`, 'must be a semver range');
      dependencies[dep] = range;
    }
  }

  const permissions: Permission[] = [];
  if (raw.permissions !== undefined) {
    if (!Array.isArray(raw.permissions)) fail(name, file, `${prefix}permissions`, 'must be an array of strings like "fs:read:/srv/data" or "net:outbound"');
    if (raw.permissions.length > MAX_LIST) fail(name, file, `${prefix}permissions`, `lists more than ${MAX_LIST} permissions`);
    raw.permissions.forEach((p, i) => {
      const field = `${prefix}permissions[${i}]`;
      if (typeof p !== 'string') fail(name, file, field, 'must be a string');
      try {
        permissions.push(parsePermission(p));
      } catch (e) {
        fail(name, file, field, (e as Error).message);
      }
    });
  }

  let limits: PluginLimits = {};
  if (raw.limits !== undefined) {
    try {
      limits = parsePluginLimits(raw.limits, `${prefix}limits`);
    } catch (e) {
      fail(name, file, (e as { field?: string }).field ?? `${prefix}limits`, (e as Error).message.replace(/^[^:]*: /, ''));
    }
  }

  const hooks: string[] = [];
  if (raw.hooks !== undefined) {
    if (!Array.isArray(raw.hooks)) fail(name, file, `${prefix}hooks`, 'must be an array of hook names');
    if (raw.hooks.length > MAX_LIST) fail(name, file, `${prefix}hooks`, `lists more than ${MAX_LIST} hooks`);
    raw.hooks.forEach((h, i) => {
      if (typeof h !== 'string' || !HOOK_NAME_RE.test(h)) fail(name, file, `${prefix}hooks[${i}]`, `must be a hook name matching ${HOOK_NAME_RE}`);
      if (!hooks.includes(h)) hooks.push(h);
    });
  }
  const bus: BusGrant[] = [];
  for (const field of ['provides', 'consumes'] as const) {
    try {
      bus.push(...parseDeclarations(raw[field], field));
    } catch (e) {
      fail(name, file, `${prefix}${(e as { field?: string }).field ?? field}`, (e as Error).message);
    }
  }
  return { name, version: raw.version, dir, entry: entryReal, hostApi: raw.hostApi, dependencies, permissions, limits, hooks, bus, file };
}

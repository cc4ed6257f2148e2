/**
 * Semver compatibility of a plugin with this host: the host API range the plugin needs, and the other
 * plugins it depends on with their ranges. Every failure names the range that failed.
 */
import * as semver from 'semver';
import { DependencyRangeError, HostRangeError, ManifestError, MissingDependencyError, CompatError } from './errors';
import { isValidPluginName } from './document';

/** The part of a plugin manifest that compatibility is about (the full manifest: lib/plugins/manifest.ts). */
export interface CompatManifest {
  name: string;
  version: string;
  /** Semver range of the host API, e.g. "^1.2.0". */
  hostApi: string;
  /** Other plugins by name, each with a semver range. */
  dependencies?: Record<string, string>;
}

export interface HostContext {
  /** The host API version, exact semver. */
  hostApiVersion: string;
  /** Plugins already loaded (or about to be), name → exact version. */
  loaded: ReadonlyMap<string, string> | Record<string, string>;
}

function loadedVersion(loaded: HostContext['loaded'], name: string): string | undefined {
  if (loaded instanceof Map) return loaded.get(name);
  return Object.prototype.hasOwnProperty.call(loaded, name) ? (loaded as Record<string, string>)[name] : undefined;
}

/** Checks the manifest's own fields. Throws ManifestError (ERR_COMPAT_MANIFEST). */
export function checkManifest(m: unknown): CompatManifest {
  const o = (m ?? {}) as Record<string, unknown>;
  const name = typeof o.name === 'string' && isValidPluginName(o.name) ? o.name : undefined;
  if (name === undefined) throw new ManifestError(String(o.name ?? '(unnamed)'), 'name', 'must be a lowercase package-style name');
  if (typeof o.version !== 'string' || semver.valid(o.version) !== o.version) throw new ManifestError(name, 'version', 'must be an exact semver version');
  if (typeof o.hostApi !== 'string' || semver.validRange(o.hostApi) === null) throw new ManifestError(name, 'hostApi', `is not a semver range: ${String(o.hostApi)}`);
  const deps: Record<string, string> = {};
  if (o.dependencies !== undefined) {
    if (o.dependencies === null || typeof o.dependencies !== 'object' || Array.isArray(o.dependencies)) {
      throw new ManifestError(name, 'dependencies', 'must be an object of name → range');
    }
    for (const [dep, range] of Object.entries(o.dependencies)) {
      if (!isValidPluginName(dep)) throw new ManifestError(name, `dependencies.${dep}`, 'is not a valid plugin name');
      if (typeof range !== 'string' || semver.validRange(range) === null) throw new ManifestError(name, `dependencies.${dep}`, `is not a semver range: ${String(range)}`);
      if (dep === name) throw new ManifestError(name, `dependencies.${dep}`, 'a plugin cannot depend on itself');
      deps[dep] = range;
    }
  }
  return { name, version: o.version, hostApi: o.hostApi, dependencies: deps };
}

/** Every compatibility problem of the manifest, host range first; empty if it can load. */
export function compatibilityProblems(manifest: CompatManifest, host: HostContext): CompatError[] {
  const m = checkManifest(manifest);
  const problems: CompatError[] = [];
  if (!semver.satisfies(host.hostApiVersion, m.hostApi)) problems.push(new HostRangeError(m.name, m.hostApi, host.hostApiVersion));
  for (const [dep, range] of Object.entries(m.dependencies ?? {})) {
    const found = loadedVersion(host.loaded, dep);
    if (found === undefined) problems.push(new MissingDependencyError(m.name, dep, range));
    else if (!semver.satisfies(found, range)) problems.push(new DependencyRangeError(m.name, dep, range, found));
  }
  return problems;
}

/** Throws the first compatibility problem (ERR_COMPAT_*), or returns the checked manifest. */
export function assertCompatible(manifest: CompatManifest, host: HostContext): CompatManifest {
  const problems = compatibilityProblems(manifest, host);
  if (problems.length > 0) throw problems[0];
  return checkManifest(manifest);
}

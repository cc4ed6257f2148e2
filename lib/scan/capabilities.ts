/**
 * What a capability found in code implies, in the permission names of the plugin host
 * (lib/plugins/permissions.ts), and how the findings compare with a plugin's requested permissions.
 *
 * The scan names families, not paths or hosts: `fs:*` stands for fs:read:PATH and fs:write:PATH,
 * `net:outbound` for any of net:outbound, net:connect:HOST and net:host, `sys:exec` for itself. `*`
 * means the scan could not see what the code does (a file it could not parse, a require of a
 * computed name, a native addon, code built at runtime): it could use anything.
 */
import { isBuiltin } from 'node:module';

export type ImpliedPermission = 'fs:*' | 'net:outbound' | 'sys:exec' | '*';

/** Built-in modules worth a finding, and what each implies (null: notable, but no permission). */
const BUILTINS: Readonly<Record<string, ImpliedPermission | null>> = {
  fs: 'fs:*',
  'fs/promises': 'fs:*',
  sqlite: 'fs:*',
  net: 'net:outbound',
  http: 'net:outbound',
  https: 'net:outbound',
  http2: 'net:outbound',
  dns: 'net:outbound',
  'dns/promises': 'net:outbound',
  dgram: 'net:outbound',
  tls: 'net:outbound',
  child_process: 'sys:exec',
  // cluster.fork() starts a process.
  cluster: 'sys:exec',
  // Code given as a string at runtime, which this scan does not see.
  vm: '*',
  repl: '*',
  inspector: '*',
  'inspector/promises': '*',
  worker_threads: null,
  module: null,
  wasi: null,
  v8: null,
};

/** Globals worth a finding (when read, called or constructed), and what each implies. */
export const GLOBALS: Readonly<Record<string, ImpliedPermission | null>> = {
  fetch: 'net:outbound',
  WebSocket: 'net:outbound',
  EventSource: 'net:outbound',
  eval: '*',
  Function: '*',
  // A module's imports are JavaScript functions, seen here; its own code cannot reach the system.
  WebAssembly: null,
};

/** process.X worth a finding: each reaches the runtime's internals or loads native code. */
export const PROCESS_PROPERTIES: Readonly<Record<string, ImpliedPermission>> = {
  binding: '*',
  _linkedBinding: '*',
  dlopen: '*',
};

/** 'node:fs' → 'fs'; undefined for what is not a built-in module. */
export function builtinName(specifier: string): string | undefined {
  if (!isBuiltin(specifier)) return undefined;
  return specifier.startsWith('node:') ? specifier.slice(5) : specifier;
}

/** The finding a built-in module is worth: undefined for the harmless ones (path, util, events...). */
export function builtinCapability(name: string): { permission: ImpliedPermission | null } | undefined {
  return Object.prototype.hasOwnProperty.call(BUILTINS, name) ? { permission: BUILTINS[name]! } : undefined;
}

/** The family an implied permission stands for, as the kinds of the host's permissions. */
function family(p: ImpliedPermission): readonly string[] {
  switch (p) {
    case 'fs:*': return ['fs:read', 'fs:write'];
    case 'net:outbound': return ['net:outbound', 'net:connect', 'net:host'];
    case 'sys:exec': return ['sys:exec'];
    case '*': return [];
  }
}

/** The permission kinds some finding can imply: the rest are outside what a scan can judge. */
const SEEN_KINDS: ReadonlySet<string> = new Set((['fs:*', 'net:outbound', 'sys:exec'] as const).flatMap(family));

/** 'fs:read:/srv' → 'fs:read'; 'net:connect:example.com:443' → 'net:connect'. */
function kindOf(permission: string): string {
  const parts = permission.split(':');
  return parts.length >= 2 ? `${parts[0]}:${parts[1]}` : permission;
}

export interface PermissionDiff {
  /** Implied permissions with no requested permission of their family ('*' included when seen). */
  usedNotRequested: ImpliedPermission[];
  /** Requested permissions whose family no finding implies. Not conclusive when `complete` is false. */
  requestedUnused: string[];
  /** False when a finding implies '*': then nothing requested can be called unused for sure. */
  complete: boolean;
}

/** Compares what the code implies with what is requested (permission strings of the host). */
export function diffPermissions(implied: ReadonlySet<ImpliedPermission>, requested: readonly string[]): PermissionDiff {
  const requestedKinds = new Set(requested.map(kindOf));
  const usedNotRequested = [...implied].filter((p) => p === '*' || !family(p).some((k) => requestedKinds.has(k))).sort();
  const usedKinds = new Set([...implied].flatMap(family));
  // Only kinds the code's syntax can show are judged: a bus grant (events:, service:, data:) names
  // another plugin's topic or service, which no built-in or global reveals.
  const requestedUnused = requested.filter((r) => SEEN_KINDS.has(kindOf(r)) && !usedKinds.has(kindOf(r)));
  return { usedNotRequested, requestedUnused, complete: !implied.has('*') };
}

/** Public types of a sandbox: options, exit results, violations. */
import type { ObservedViolation } from '../errors';
import type { LimitsOptions } from '../limits/options';
import type { RlimitName, RlimitValue } from '../limits/rlimits';
import type { NetworkOptions } from '../net/policy';

export type NamespaceName = 'user' | 'pid' | 'mount' | 'net' | 'ipc' | 'uts' | 'cgroup';
export const NAMESPACES: readonly NamespaceName[] = ['user', 'pid', 'mount', 'net', 'ipc', 'uts', 'cgroup'];

/** How one of the sandbox's standard streams is connected. A number is a host fd to pass. */
export type StdioOption = 'pipe' | 'inherit' | 'ignore' | number;

export interface BindMount {
  /**
   * Host path: a real path (no component may be a symlink) that the sandbox's host uid can reach.
   * Opened at every spawn without following symlinks and as that uid; else the spawn fails at stage
   * 'bind-source' (ELOOP, EACCES).
   */
  source: string;
  /** Path inside the sandbox (reached without symlinks, else stage 'mount-target'); defaults to `source`. */
  target?: string;
  /** Read-write; binds are read-only unless this is true. */
  writable?: boolean;
  /**
   * Open the source with the host's own rights instead of the sandbox's host uid's (symlinks are
   * refused all the same). Only for paths the host chose for its own use and no sandbox can write,
   * such as the package a runner loads from a 0700 home directory; never for a path a plugin names.
   */
  hostAccess?: boolean;
}

export interface TmpfsMount {
  target: string;
  /** Bytes, or a size like '64M'. Default 64 MiB. */
  size?: number | string;
}

// Defined with the limits (lib/limits sits below the sandbox and merges them with its stand-ins).
export type { RlimitName, RlimitValue };

export interface SpawnOptions {
  /** The command and its arguments. A name without '/' is looked up in the sandbox's PATH. */
  command: readonly string[];
  /** The whole environment of the command: nothing is inherited. Default: PATH only. */
  env?: Record<string, string>;
  /** Working directory inside the sandbox. Default '/'. */
  cwd?: string;
  /** Each namespace is on unless switched off here. */
  namespaces?: Partial<Record<NamespaceName, boolean>>;
  /** Share the host's network: no network namespace, and the seccomp profile allows inet sockets. */
  shareNet?: boolean;
  /**
   * Network by policy: the sandbox keeps its own network namespace; connects to the destinations
   * allowed here are made by the host and handed in, everything else fails (see lib/net/policy.ts).
   */
  network?: NetworkOptions;
  /** uid/gid inside the sandbox. Default: 65534 as root, the caller's ids otherwise. */
  uid?: number;
  gid?: number;
  /**
   * As root: the unprivileged host uid/gid the sandbox maps to. Never 0. Default: an id of its own,
   * drawn from `hostIds` for the sandbox's life (the gid has the same number), so that no two live
   * sandboxes share the kernel's per-user counts. An id given here is the caller's to keep apart.
   */
  hostUid?: number;
  hostGid?: number;
  /**
   * As root: the range the sandbox's host ids are drawn from (ignored unprivileged, and when hostUid
   * is given). Default { first: 0x7ffc0000, count: 65536 } (2147221504-2147287039); see
   * lib/sandbox/ids.ts for the choice. Ids named in /etc/passwd or /etc/group are skipped.
   */
  hostIds?: { first: number; count: number };
  /** Hostname in the UTS namespace. Default 'warden'. */
  hostname?: string;
  /** Bind the default system directories read-only (/usr, /bin, /lib, ...). Default true. */
  defaultBinds?: boolean;
  binds?: readonly BindMount[];
  tmpfs?: readonly TmpfsMount[];
  /** Size of the private /tmp. Default 64 MiB. */
  tmpSize?: number | string;
  stdio?: readonly [StdioOption, StdioOption, StdioOption];
  /** Extra host fds passed into the sandbox, at `target` (3 or more). Nothing else is inherited. */
  fds?: ReadonlyArray<{ fd: number; target: number }>;
  /** Resource limits (setrlimit). core is 0 unless set here. */
  rlimits?: Partial<Record<RlimitName, RlimitValue>>;
  /** A named seccomp profile, a policy object, or 'none'. Default 'default'. */
  seccomp?: string | object;
  /** Milliseconds the setup may take before the child is killed and spawn fails. Default 10000. */
  setupTimeout?: number;
  /**
   * cgroup limits (memory, pids, cpu, cpuTime, timeout, io). The sandbox gets a cgroup of its own
   * under the host's, entered before it runs; everything in it is killed at exit. See LimitsOptions.
   */
  limits?: LimitsOptions;
}

/** What the sandbox observed; the shape every layer above passes on (ObservedViolation). */
export interface Violation extends ObservedViolation {
  kind: 'seccomp' | 'memory' | 'pids' | 'cpu-time' | 'timeout' | 'protocol' | 'flood' | 'network';
  /** Milliseconds since the epoch. */
  at: number;
  /** seccomp: the syscall's name. */
  syscall?: string;
  limit?: number | string;
  observed?: number | string;
}

export interface ExitResult {
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The violation that ended it: the first, except that a `pids` one (which ends nothing) gives way to the first that does. */
  violation: Violation | null;
}

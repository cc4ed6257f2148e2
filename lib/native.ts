/**
 * The addon's interface, loaded once through native-file.ts (which finds the prebuilt binary and says
 * how to build one when none fits).
 */
import { requireAddon } from './native-file';

/** The plan object native/launcher_binding.cc reads (built by lib/sandbox/plan.ts). */
export interface NativePlan {
  candidates: string[];
  argv: string[];
  envp: string[];
  cwd: string;
  hostname: string;
  namespaces: Record<'user' | 'pid' | 'mount' | 'net' | 'ipc' | 'uts' | 'cgroup', boolean>;
  mapUidInside: number;
  mapUidOutside: number;
  mapGidInside: number;
  mapGidOutside: number;
  denySetgroups: boolean;
  /** Root only: the clone runs with the host ids as effective ids, which then own the user namespace. */
  ownUserNamespace: boolean;
  dropGroups: boolean;
  uid: number;
  gid: number;
  lastCap: number;
  setupTimeoutMs: number;
  /** The mount list, prepared once (see MountSet); null without a mount namespace. */
  mountSet: NativeMountSet | null;
  rlimits: ReadonlyArray<{ resource: number; soft: number; hard: number }>;
  /** Host fd → sandbox fd; source -1 is the host's /dev/null, which the launcher opens. */
  fds: Array<{ source: number; target: number }>;
  seccomp: Buffer | null;
  /** cgroup v1 `tasks` files the child writes "0" into, moving itself, before anything else. */
  cgroupTasks: string[];
  /** A cgroup2 directory the child is cloned into (CLONE_INTO_CGROUP); '' for none. */
  cgroupDir: string;
  /**
   * What the host made for this sandbox: closed and removed by the addon if the JS environment
   * ends (a worker thread) before JS could do it: the fds while the launch is pending, the cgroup
   * directories (in creation order) until the exit has been delivered.
   */
  teardown?: { fds: number[]; dirs: string[] };
}

export interface NativeMount {
  kind: 'bind' | 'tmpfs' | 'proc' | 'symlink' | 'dir';
  source?: string;
  target: string;
  writable?: boolean;
  device?: boolean;
  /** bind: opened with the host's rights instead of the sandbox's host identity (still no symlinks). */
  hostAccess?: boolean;
  options?: string;
  mode?: number;
}

/**
 * A mount list turned into the launcher's ops once, for any number of spawns. When the host is root
 * it also holds a template root (the mount points, symlinks and device binds, read-only), which each
 * spawn clones in one step instead of building its root op by op.
 */
export interface NativeMountSet {
  /** Whether spawns clone a prepared root. */
  readonly template: boolean;
  /** Whether that root is also a mount namespace the sandbox is cloned from (no host tree to detach). */
  readonly templateNamespace: boolean;
  /** Why not, when they do not ('' when they do both). */
  readonly noTemplateReason: string;
  /** Drops this object's hold: the fds close once no sandbox launched from it is still running. */
  close(): void;
}

export interface NativeViolation {
  syscall: string;
  nr: number;
  pid: number;
  args: bigint[];
}

export interface NativeSandboxProcess {
  readonly pid: number;
  kill(signal: number): boolean;
  ref(): void;
  unref(): void;
  /** Network policy hooks (native/net_intercept.h); throws ERR_SANDBOX_SETUP (stage 'network'). */
  interceptNetwork(
    decide: (r: import('./net/policy').ConnectRequest) => import('./net/policy').Verdict,
    report: (id: number, errno: number, cookie: number) => void,
    connected: (address: string, port: number, errno: number, cookie: number, at: number) => void,
    dns: (query: Buffer, port: number) => void,
  ): void;
  replyDns(port: number, answer: Buffer): number;
  /** The most items the network thread's queue to the event loop held at once (tests). */
  netQueuePeak(): number;
  /** JS has undone plan.teardown itself: the addon forgets it. */
  forgetTeardown(): void;
}

export interface NativeSetupError extends Error {
  code: 'ERR_SANDBOX_SETUP';
  stage: string;
  errno: number;
  index: number;
  detail: string;
}

export interface Addon {
  SandboxProcess: new (
    plan: NativePlan,
    onExit: (code: number | null, signal: number | null) => void,
    onViolation: (v: NativeViolation) => void,
    /**
     * Given: the launch runs on the addon's launch thread and this is called on a later turn,
     * with null or the setup error (as NativeSetupError); pid is known from then on. Without: the
     * constructor launches (the JS thread waits) and throws the setup error.
     */
    onLaunched?: (err: NativeSetupError | Error | null) => void,
  ) => NativeSandboxProcess;
  pipe(): [number, number];
  /** Closes an fd pipe() made (fs.closeSync warns in a worker about fds its fs did not open). */
  closePipe(fd: number): void;
  /** Throws a TypeError (code ERR_INVALID_OPTION) naming a bad entry. */
  MountSet: new (mounts: NativeMount[], options?: { template?: boolean }) => NativeMountSet;
  /** Every setup stage a launch can fail at (native/stages.h): the `stage` of ERR_SANDBOX_SETUP. */
  setupStages: readonly string[];
  [name: string]: unknown;
}

let loaded: Addon | undefined;

export function addon(): Addon {
  if (loaded === undefined) loaded = requireAddon() as Addon;
  return loaded;
}

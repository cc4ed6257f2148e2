import { WardenError } from '../errors';
import * as os from 'node:os';

/**
 * What to try when a setup stage fails, for every stage of the native table (native/stages.h, which
 * the addon exports as `setupStages`). test/setup-stages.test.ts fails when a native stage has no
 * hint here, or a hint names no native stage.
 */
export const SETUP_STAGE_HINTS: Readonly<Record<string, string>> = {
  clone: 'the kernel refused a namespace: run `warden doctor` to see which ones this host offers, or switch that namespace off',
  'setgroups-file': 'the user namespace could not be set up: run `warden doctor`',
  'uid-map': 'writing the uid map failed: unprivileged user namespaces may be restricted here (`warden doctor`), or the uid is not yours to map',
  'gid-map': 'writing the gid map failed: unprivileged user namespaces may be restricted here (`warden doctor`), or the gid is not yours to map',
  'cgroup-place': 'the sandbox could not be placed in its cgroup: check that the cgroup exists and is delegated to this user',
  'wait-parent': 'the handshake between the launcher and the child failed (the host was killed meanwhile, or ran out of file descriptors); the command never ran: check the host\'s fd limit and retry',
  'cgroup-namespace': 'unsharing the cgroup namespace failed: this host may not offer it (`warden doctor`); switch namespaces.cgroup off if so',
  setsid: 'the child could not leave the host\'s session (setsid); this is a bug in warden, please report it',
  'mount-private': 'the sandbox\'s mounts could not be made private: the mount namespace is missing or restricted here (`warden doctor`)',
  timeout: 'the sandbox setup did not finish in time (a bind source on a hung filesystem?); raise setupTimeout if the host is just slow',
  'mount-root': 'the tmpfs for the new root could not be mounted',
  'pivot-root': 'pivot_root failed: EINVAL here usually means the host runs from an initramfs (rootfs), which cannot be pivoted; boot with a real root or switch_root into a tmpfs first',
  mkdir: 'a mount point could not be created: a target may lie under a read-only bind or a symlink',
  touch: 'a mount point could not be created: a target may lie under a read-only bind or a symlink',
  bind: 'a bind mount failed: check that the source exists and that this user can read it',
  'bind-source': 'a bind source is opened component by component without following symlinks, with the rights of the sandbox\'s host identity: bind the real path, one the sandbox\'s host uid can reach',
  'mount-target': 'a mount target inside the sandbox is reached without following symlinks: pick a target with none on the way',
  'bind-attrs': 'making a bind mount read-only/nosuid/nodev failed (mount_setattr needs Linux 5.12)',
  tmpfs: 'a tmpfs could not be mounted: check its size option',
  proc: 'mounting /proc failed: it needs the pid namespace (and, unprivileged, the user namespace)',
  symlink: 'a symlink could not be created in the new root',
  'detach-old-root': 'the host root could not be detached; the sandbox was not started',
  'remount-root': 'the sandbox\'s root could not be made read-only; the sandbox was not started: run `warden doctor`',
  securebits: 'the sandbox\'s securebits could not be locked (needs CAP_SETPCAP in its user namespace): run warden as root, or with the user namespace on',
  'capability-bounding-set': 'the capability bounding set could not be dropped (needs CAP_SETPCAP in the sandbox\'s user namespace): run warden as root, or with the user namespace on',
  capabilities: 'the sandbox\'s capability sets could not be emptied (capset, PR_CAP_AMBIENT); the command never ran: run `warden doctor`',
  'no-new-privs': 'PR_SET_NO_NEW_PRIVS was refused (a kernel before 3.5, or a security module of the host); the command never ran',
  signals: 'the child could not unblock its signals before execve; this is a bug in warden, please report it',
  hostname: 'sethostname failed: it needs the uts namespace',
  setgroups: 'dropping supplementary groups failed',
  setgid: 'switching to the sandbox gid failed: is the gid mapped?',
  setuid: 'switching to the sandbox uid failed: is the uid mapped?',
  fds: 'passing the file descriptors failed: check that each fd is open and the target numbers are sane',
  rlimit: 'an rlimit could not be set: a soft limit may exceed the hard limit, or raising a hard limit needs privilege',
  chdir: 'cwd does not exist inside the sandbox: bind it or create it with a tmpfs',
  seccomp: 'the seccomp filter was refused by the kernel',
  network: 'the DNS stub could not be opened inside the sandbox (see the detail); `warden doctor` says whether this host can intercept connect',
  'seccomp-listener': 'the seccomp listener could not be handed to the host (does the policy deny sendmsg?)',
  exec: 'the path must exist inside the sandbox, with its interpreter (#!) and dynamic loader: bind it or its directory (binds, or --ro-bind for warden run), or use a program under the default binds (/usr, /bin, /lib); ENOENT: not there (or its interpreter is not), EACCES: not executable by the sandbox\'s uid',
  'namespace-owner': "the launcher could not take the sandbox's host ids for the clone (prctl PR_SET_SECUREBITS needs CAP_SETPCAP, and securebits locked by the host's own setup refuse it); run warden with full root capabilities",
  'died-in-setup': 'the child died during setup; this is a bug in warden, please report it',
};

/** Stages whose failure `index` is an entry of the mount list (the error then names that entry). */
export const MOUNT_ENTRY_STAGES: readonly string[] = ['mkdir', 'touch', 'bind', 'bind-attrs', 'bind-source', 'mount-target', 'tmpfs', 'proc', 'symlink'];

export function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(os.constants.errno)) {
    if (value === errno) return name;
  }
  return `errno ${errno}`;
}

/** A setup step failed: the command never ran. `stage` names the step, `errno` the kernel's answer. */
export class SandboxSetupError extends WardenError {
  readonly stage: string;
  readonly errno: number;
  readonly errnoName: string;
  /** The offending entry (for instance 'mounts[3]', 'rlimits.nofile', 'fds[0]'), if any. */
  readonly entry: string | undefined;
  readonly detail: string;

  constructor(stage: string, errno: number, entry: string | undefined, detail: string) {
    const name = errno > 0 ? errnoName(errno) : '';
    const what = [entry, detail].filter((s) => s !== undefined && s !== '').join(': ');
    super(
      'ERR_SANDBOX_SETUP',
      `sandbox setup failed at stage '${stage}'${name ? ` (${name})` : ''}${what ? ` for ${what}` : ''}; ` +
        (SETUP_STAGE_HINTS[stage] ?? 'run `warden doctor` to see what this host offers'),
    );
    this.stage = stage;
    this.errno = errno;
    this.errnoName = name;
    this.entry = entry;
    this.detail = detail;
  }
}

/**
 * Named seccomp profiles, as data. The sandbox layer calls resolveSeccompProfile() and hands the
 * result to the launcher, which compiles it in the addon.
 *
 * - `default`: a deny-list at least as strict as Docker's default profile: everything is allowed
 *   except what is listed below, which is a violation (the sandbox is killed and the syscall named)
 *   or, for probes that programs handle, an errno.
 * - `strict`: an allow-list (everything else is a violation) enough for Node.js (workers, libuv
 *   threadpool, fs, timers, crypto, unix sockets) and ordinary dynamically linked programs
 *   (/bin/sh scripts, coreutils). Found with strace and widened to the obvious siblings (pread64 with
 *   read, statx with newfstatat, ...).
 * - `none`: no filter at all.
 *
 * Both profiles share the argument restrictions of sharedRestrictions().
 */
import { InvalidOptionError } from '../errors';
import { SeccompPolicy, SeccompRule, validateSeccompPolicy } from './seccomp';

export type SeccompProfileName = 'default' | 'strict' | 'none';
export const SECCOMP_PROFILE_NAMES: readonly SeccompProfileName[] = ['default', 'strict', 'none'];

export interface SeccompProfileOptions {
  /** The sandbox has network access (its own network namespace disabled, or a configured one). */
  readonly network: boolean;
}

// Constants of the argument checks (x86_64 uapi).
const CLONE_NEW_ANY =
  0x00020000 /* CLONE_NEWNS */ | 0x02000000 /* CLONE_NEWCGROUP */ | 0x04000000 /* CLONE_NEWUTS */ |
  0x08000000 /* CLONE_NEWIPC */ | 0x10000000 /* CLONE_NEWUSER */ | 0x20000000 /* CLONE_NEWPID */ |
  0x40000000; /* CLONE_NEWNET */ // = 0x7e020000, the mask Docker's profile uses
const CLONE_THREAD = 0x00010000;
const TIOCSTI = 0x5412;
const TIOCLINUX = 0x541c;
const AF_UNIX = 1;
const AF_INET = 2;
const AF_INET6 = 10;
const AF_NETLINK = 16;
const NETLINK_ROUTE = 0;
// Docker's allowed personalities: PER_LINUX, UNAME26 (0x0020000), PER_LINUX32 (0x0008),
// UNAME26|PER_LINUX32, and 0xffffffff (query the current persona).
const SAFE_PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff];
// seccomp(2) operations and filter flags (uapi/linux/seccomp.h).
const SECCOMP_SET_MODE_STRICT = 0;
const SECCOMP_SET_MODE_FILTER = 1;
const SECCOMP_GET_ACTION_AVAIL = 2;
const SECCOMP_GET_NOTIF_SIZES = 3;
const SECCOMP_FILTER_FLAG_TSYNC = 1;
const SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 16;
const PR_SET_SPECULATION_CTRL = 53;
const PR_SPEC_ENABLE = 2;

/**
 * Restrictions on arguments, shared by both profiles. They come first: the first matching rule wins.
 * Each ends its syscall with an explicit decision except clone, ioctl and prctl, which fall through
 * to the profile (allowed by `default`'s default action, allowed explicitly by `strict`).
 */
function sharedRestrictions(network: boolean): SeccompRule[] {
  const families = network
    ? [AF_UNIX, AF_INET, AF_INET6]
    : [AF_UNIX];
  return [
    // New namespaces from inside would reopen what the launcher closed (user namespaces are the
    // main kernel attack surface reachable unprivileged). clone's flags are `unsigned long` but the
    // kernel uses only the low 32 bits; every CLONE_NEW* bit is there, so a full-width test is exact.
    { syscalls: ['clone'], action: 'violation', args: [{ index: 0, op: 'anyBitsSet', mask: CLONE_NEW_ANY }] },
    // clone3 passes its flags in memory, which seccomp cannot read: refuse it with ENOSYS so that
    // glibc (>= 2.34) falls back to clone, whose flags are checked above.
    { syscalls: ['clone3'], action: { errno: 'ENOSYS' } },
    // io_uring performs I/O outside the syscall path (so outside this filter) and has a long CVE
    // history. libuv in Node probes io_uring_setup and falls back to epoll on ENOSYS; a violation
    // would kill every Node program.
    { syscalls: ['io_uring_setup', 'io_uring_enter', 'io_uring_register'], action: { errno: 'ENOSYS' } },
    // TIOCSTI pushes bytes into a terminal's input (CVE-2017-5226 in bubblewrap), TIOCLINUX can do
    // the same on a virtual console. The request is `unsigned int` for the kernel: compare the low
    // 32 bits only, so 0xffffffff00005412 cannot slip past a 64-bit comparison.
    { syscalls: ['ioctl'], action: 'violation', args: [{ index: 1, op: 'eq', value: TIOCSTI, low32: true }] },
    { syscalls: ['ioctl'], action: 'violation', args: [{ index: 1, op: 'eq', value: TIOCLINUX, low32: true }] },
    // personality can disable ASLR (ADDR_NO_RANDOMIZE) or enable READ_IMPLIES_EXEC; allow only what
    // Docker allows. The kernel takes `unsigned int`: compare the low 32 bits.
    ...SAFE_PERSONALITIES.map((p): SeccompRule => ({
      syscalls: ['personality'], action: 'allow', args: [{ index: 0, op: 'eq', value: p, low32: true }],
    })),
    { syscalls: ['personality'], action: 'violation' },
    // Socket families: the rarely used ones are where the kernel's socket bugs live. Other families
    // get EAFNOSUPPORT rather than a violation: it is what a kernel built without the family says,
    // and ordinary programs probe (glibc's getaddrinfo opens AF_NETLINK and AF_INET sockets, Node's
    // os.networkInterfaces() opens AF_NETLINK) and must fail softly, not kill the sandbox.
    ...families.map((f): SeccompRule => ({
      syscalls: ['socket', 'socketpair'], action: 'allow', args: [{ index: 0, op: 'eq', value: f, low32: true }],
    })),
    // With network, netlink is allowed for NETLINK_ROUTE only: getifaddrs() (Node's
    // os.networkInterfaces) and glibc's getaddrinfo(AI_ADDRCONFIG) need it to list addresses. The
    // other netlink protocols (audit, xfrm, netfilter, ...) stay refused.
    ...(network
      ? [{
        syscalls: ['socket'], action: 'allow',
        args: [{ index: 0, op: 'eq', value: AF_NETLINK, low32: true }, { index: 2, op: 'eq', value: NETLINK_ROUTE, low32: true }],
      } satisfies SeccompRule]
      : []),
    { syscalls: ['socket', 'socketpair'], action: { errno: 'EAFNOSUPPORT' } },
    // seccomp: a process may add filters (the plugin runner narrows itself this way before loading a
    // plugin), never loosen what it runs under. Refused flags: SPEC_ALLOW turns the speculative
    // store bypass mitigation off; NEW_LISTENER would make the process the supervisor of its own
    // syscalls (the kernel refuses a second listener in a stack, but a custom policy without
    // 'violation' has none); LOG writes every matching syscall to the host's kernel log. The flags
    // argument is `unsigned int`: low 32 bits.
    {
      syscalls: ['seccomp'], action: 'allow',
      args: [
        { index: 0, op: 'eq', value: SECCOMP_SET_MODE_FILTER, low32: true },
        { index: 1, op: 'maskedEq', mask: ~(SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_TSYNC_ESRCH) >>> 0, value: 0, low32: true },
      ],
    },
    ...[SECCOMP_SET_MODE_STRICT, SECCOMP_GET_ACTION_AVAIL, SECCOMP_GET_NOTIF_SIZES].map((op): SeccompRule => ({
      syscalls: ['seccomp'], action: 'allow', args: [{ index: 0, op: 'eq', value: op, low32: true }],
    })),
    { syscalls: ['seccomp'], action: { errno: 'EPERM' } },
    // Speculation controls may be tightened (PR_SPEC_DISABLE, FORCE_DISABLE), not switched back on.
    {
      syscalls: ['prctl'], action: { errno: 'EPERM' },
      args: [{ index: 0, op: 'eq', value: PR_SET_SPECULATION_CTRL, low32: true }, { index: 2, op: 'eq', value: PR_SPEC_ENABLE }],
    },
    // Mount listing by id: answered ENOSYS so that programs fall back to /proc/self/mountinfo.
    { syscalls: ['statmount', 'listmount', 'listns'], action: { errno: 'ENOSYS' } },
  ];
}

/**
 * What `default` denies with a violation. Docker's default profile (an allow-list whose absent
 * entries give EPERM) denies these to a container without extra capabilities; a few go further
 * than Docker (ptrace, name_to_handle_at, adjtimex, sethostname: denied here, allowed there).
 */
const DEFAULT_DENIED: readonly string[] = [
  // Mounts and namespaces: the launcher built the filesystem view; nothing inside may change it.
  'mount', 'umount2', 'pivot_root', 'chroot', 'setns', 'unshare',
  'fsopen', 'fsconfig', 'fsmount', 'fspick', 'open_tree', 'open_tree_attr', 'move_mount', 'mount_setattr',
  // Other processes' memory and tracing.
  'ptrace', 'process_vm_readv', 'process_vm_writev', 'process_madvise', 'kcmp', 'pidfd_getfd',
  // Kernel attack surface that unprivileged code rarely needs.
  'bpf', 'perf_event_open', 'userfaultfd', 'keyctl', 'add_key', 'request_key', 'fanotify_init',
  'lookup_dcookie', 'modify_ldt', 'iopl', 'ioperm',
  // Kernel and machine administration.
  'kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module', 'create_module',
  'get_kernel_syms', 'query_module', 'acct', 'swapon', 'swapoff', 'reboot', 'syslog', 'quotactl',
  'quotactl_fd', 'nfsservctl', 'vhangup', 'sethostname', 'setdomainname',
  'settimeofday', 'clock_settime', 'clock_adjtime', 'adjtimex',
  // File handles bypass path-based checks (the "shocker" container escape).
  'open_by_handle_at', 'name_to_handle_at',
  // Obsolete or unimplemented: nothing legitimate calls them.
  'uselib', 'ustat', 'sysfs', '_sysctl', 'afs_syscall', 'tuxcall', 'security', 'vserver', 'getpmsg', 'putpmsg',
];

/** NUMA calls that move OTHER processes' pages: EPERM, as Docker answers without CAP_SYS_NICE. */
const DEFAULT_EPERM: readonly string[] = ['move_pages', 'migrate_pages'];

/**
 * What `strict` allows (after the shared restrictions). clone, ioctl, personality and socket are
 * allowed only as far as sharedRestrictions() lets them through.
 */
const STRICT_ALLOWED: readonly string[] = [
  // Launcher hand-off and process lifecycle.
  'execve', 'execveat', 'sendmsg', 'exit', 'exit_group', 'restart_syscall',
  'clone', 'fork', 'vfork', 'wait4', 'waitid', 'kill', 'tgkill', 'tkill', 'pidfd_open', 'pidfd_send_signal',
  // Threads, signals, time.
  'futex', 'futex_waitv', 'futex_wake', 'futex_wait', 'futex_requeue', 'set_robust_list', 'get_robust_list',
  'set_tid_address', 'rseq', 'arch_prctl', 'prctl', 'sched_yield', 'sched_getaffinity', 'sched_setaffinity',
  'sched_getparam', 'sched_getscheduler', 'sched_get_priority_max', 'sched_get_priority_min', 'getcpu',
  'rt_sigaction', 'rt_sigprocmask', 'rt_sigreturn', 'rt_sigpending', 'rt_sigtimedwait', 'rt_sigsuspend',
  'rt_sigqueueinfo', 'rt_tgsigqueueinfo', 'sigaltstack', 'pause', 'alarm', 'getitimer', 'setitimer',
  'nanosleep', 'clock_nanosleep', 'clock_gettime', 'clock_getres', 'gettimeofday', 'time', 'times',
  'timer_create', 'timer_settime', 'timer_gettime', 'timer_getoverrun', 'timer_delete',
  'timerfd_create', 'timerfd_settime', 'timerfd_gettime',
  // Identity and limits (setters fail without capabilities, which the launcher drops).
  'getpid', 'getppid', 'gettid', 'getpgrp', 'getpgid', 'setpgid', 'getsid', 'setsid',
  'getuid', 'geteuid', 'getgid', 'getegid', 'getgroups', 'getresuid', 'getresgid',
  'setuid', 'setgid', 'setreuid', 'setregid', 'setresuid', 'setresgid', 'setgroups', 'setfsuid', 'setfsgid',
  'capget', 'getrlimit', 'setrlimit', 'prlimit64', 'getrusage', 'getpriority', 'setpriority', 'umask',
  'uname', 'sysinfo', 'getrandom',
  // Memory. get/set_mempolicy: Node calls set_mempolicy at start-up.
  'brk', 'mmap', 'munmap', 'mprotect', 'mremap', 'madvise', 'msync', 'mincore', 'mlock', 'mlock2', 'munlock',
  'membarrier', 'memfd_create', 'pkey_alloc', 'pkey_free', 'pkey_mprotect', 'get_mempolicy', 'set_mempolicy',
  'mseal', 'map_shadow_stack',
  // File descriptors and I/O.
  'read', 'write', 'readv', 'writev', 'pread64', 'pwrite64', 'preadv', 'pwritev', 'preadv2', 'pwritev2',
  'lseek', 'close', 'close_range', 'dup', 'dup2', 'dup3', 'fcntl', 'flock', 'fsync', 'fdatasync',
  'sync_file_range', 'ftruncate', 'truncate', 'fallocate', 'fadvise64', 'readahead', 'sendfile',
  'copy_file_range', 'splice', 'ioctl', 'pipe', 'pipe2',
  // Paths and metadata.
  'open', 'openat', 'openat2', 'creat', 'stat', 'fstat', 'lstat', 'newfstatat', 'statx', 'statfs', 'fstatfs',
  'access', 'faccessat', 'faccessat2', 'readlink', 'readlinkat', 'getdents', 'getdents64', 'getcwd', 'chdir',
  'fchdir', 'mkdir', 'mkdirat', 'rmdir', 'unlink', 'unlinkat', 'rename', 'renameat', 'renameat2', 'link',
  'linkat', 'symlink', 'symlinkat', 'chmod', 'fchmod', 'fchmodat', 'fchmodat2', 'chown', 'fchown', 'lchown',
  'fchownat', 'utime', 'utimes', 'utimensat', 'futimesat',
  'getxattr', 'lgetxattr', 'fgetxattr', 'listxattr', 'llistxattr', 'flistxattr',
  'setxattr', 'lsetxattr', 'fsetxattr', 'removexattr', 'lremovexattr', 'fremovexattr',
  // Event loop (libuv): epoll, eventfd, inotify for fs.watch, signalfd.
  'epoll_create', 'epoll_create1', 'epoll_ctl', 'epoll_wait', 'epoll_pwait', 'epoll_pwait2', 'eventfd',
  'eventfd2', 'poll', 'ppoll', 'select', 'pselect6', 'inotify_init', 'inotify_init1', 'inotify_add_watch',
  'inotify_rm_watch', 'signalfd', 'signalfd4',
  // Sockets (families restricted above).
  'socket', 'socketpair', 'connect', 'bind', 'listen', 'accept', 'accept4', 'sendto', 'recvfrom', 'recvmsg',
  'sendmmsg', 'recvmmsg', 'shutdown', 'getsockname', 'getpeername', 'getsockopt', 'setsockopt',
  // Self-restriction only ever narrows what a process can do.
  'seccomp', 'landlock_create_ruleset', 'landlock_add_rule', 'landlock_restrict_self',
];

function defaultProfile(network: boolean): SeccompPolicy {
  return {
    defaultAction: 'allow',
    rules: [
      ...sharedRestrictions(network),
      { syscalls: DEFAULT_DENIED, action: 'violation' },
      { syscalls: DEFAULT_EPERM, action: { errno: 'EPERM' } },
    ],
  };
}

function strictProfile(network: boolean): SeccompPolicy {
  return {
    defaultAction: 'violation',
    rules: [
      ...sharedRestrictions(network),
      { syscalls: STRICT_ALLOWED, action: 'allow' },
    ],
  };
}

/**
 * The policy for a profile name, or a custom policy validated and copied; null for `none`.
 * Throws InvalidOptionError (field `seccomp`) for an unknown name or an invalid custom policy.
 */
export function resolveSeccompProfile(
  profile: SeccompProfileName | SeccompPolicy,
  options: SeccompProfileOptions,
): SeccompPolicy | null {
  if (typeof profile === 'string') {
    switch (profile) {
      case 'default': return defaultProfile(options.network);
      case 'strict': return strictProfile(options.network);
      case 'none': return null;
    }
    throw new InvalidOptionError('seccomp', `unknown profile '${String(profile)}'; use ${SECCOMP_PROFILE_NAMES.map((n) => `'${n}'`).join(', ')} or a policy object`);
  }
  return validateSeccompPolicy(profile, 'seccomp');
}

/**
 * Stacked by the plugin runner, after node has started and before the plugin's code loads, when the
 * plugin lacks the `sys:exec` permission: it cannot run programs. Starting a program from Node
 * takes a new process first (libuv forks, then the child calls execve), and a denied execve would
 * only kill that child, silently for the host. So the filter denies creating processes as well:
 * clone without CLONE_THREAD (threads, and so worker_threads, stay allowed), fork and vfork, plus
 * execve and execveat themselves. A filter a process adds to itself has no listener, so the action
 * is 'kill': the runner (the sandbox's first process) dies of SIGSYS and the host reports a
 * `seccomp` violation naming 'execve' (see PluginProcess.sigsysMeans).
 */
export const NO_EXEC_POLICY: SeccompPolicy = {
  defaultAction: 'allow',
  rules: [
    { syscalls: ['clone'], action: 'allow', args: [{ index: 0, op: 'anyBitsSet', mask: CLONE_THREAD }] },
    { syscalls: ['clone', 'fork', 'vfork', 'execve', 'execveat'], action: 'kill' },
  ],
};

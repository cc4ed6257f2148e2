// The child between clone and execve: the most dangerous code in warden.
//
// It runs on a small stack in the parent's address space (CLONE_VM), with the parent thread's TLS.
// Rules: raw syscalls only (no errno, no libc locks), no allocation, read the plan and never write
// it (but for `reached_exec`), and on any failure report {stage, errno} on the status socket and
// exit before execve. A command never runs partly sandboxed.
//
// Its mount steps are in mount_child.cc (same rules); what it waits for midway is the parent's
// release (launch_release.cc), which writes its id maps and hands over the mounts the parent made.
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/prctl.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>

#include <cerrno>

#include "launch_plan.h"
#include "mounts.h"
#include "raw_syscall.h"
#include "spawn_trace.h"

namespace warden {

namespace {

// The kernel's struct for rt_sigaction (glibc's struct sigaction has another layout).
struct KernelSigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)(void);
  unsigned long mask;
};

constexpr int kMaxFds = 256;  // checked by the parent

[[noreturn]] void Exit(int code) {
  for (;;) Sys(SYS_exit_group, code);
}

[[noreturn]] void Report(const LaunchPlan& plan, int fd, Stage stage, long ret, int index = -1) {
  ChildFailure failure{static_cast<uint32_t>(stage), static_cast<int32_t>(-ret), index};
  Sys(SYS_write, fd, &failure, sizeof failure);
  Exit(127);
}

[[noreturn]] void Report(const LaunchPlan& plan, int fd, const ChildFailure& failure) {
  Sys(SYS_write, fd, &failure, sizeof failure);
  Exit(127);
}

// Sends the seccomp listener to the parent. The filter is already installed: sendmsg must be allowed
// by every policy (CompileSeccomp enforces it).
long SendListener(int status_fd, int listener) {
  char byte = 'L';
  struct iovec iov = {&byte, 1};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  __builtin_memset(&control, 0, sizeof control);
  struct msghdr msg;
  __builtin_memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  __builtin_memcpy(CMSG_DATA(cmsg), &listener, sizeof(int));
  return Sys(SYS_sendmsg, status_fd, &msg, MSG_NOSIGNAL);
}

// Waits for the parent's release: 'G', with (prepared mode) the `expected` mounts it made, which
// land in `fds` in op order. Anything else, including a parent that died, ends the child.
bool ReceiveRelease(int status_fd, int* fds, int expected) {
  char go = 0;
  if (expected == 0) return Sys(SYS_read, status_fd, &go, 1) == 1 && go == 'G';
  struct iovec iov = {&go, 1};
  union {
    char buf[CMSG_SPACE(sizeof(int) * kMaxBinds)];
    struct cmsghdr align;
  } control;
  struct msghdr msg;
  __builtin_memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * expected);
  if (Sys(SYS_recvmsg, status_fd, &msg, MSG_CMSG_CLOEXEC) != 1 || go != 'G') return false;
  struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  if ((msg.msg_flags & MSG_CTRUNC) != 0 || cmsg == nullptr || cmsg->cmsg_level != SOL_SOCKET ||
      cmsg->cmsg_type != SCM_RIGHTS || cmsg->cmsg_len != CMSG_LEN(sizeof(int) * expected)) {
    return false;
  }
  __builtin_memcpy(fds, CMSG_DATA(cmsg), sizeof(int) * expected);
  return true;
}

}  // namespace

int ChildMain(void* arg) {
  LaunchPlan& plan = *static_cast<LaunchPlan*>(arg);
  int status = plan.child_status_fd;
  long r;
  SPAWN_TRACE(10, "c-start");

  // Our copy of the parent's end must go, or the parent would never see EOF and we would never see
  // the parent's death while waiting below.
  Sys(SYS_close, plan.parent_status_fd);

  // Into our cgroup v1 hierarchies before anything else, so that what the setup costs is charged
  // there. "0" to `tasks` moves the calling thread, which the kernel does without taking the
  // global threadgroup lock (see LaunchPlan::cgroup_tasks); the file's opener, the host, is the
  // one whose permission counts. We are one thread, so the thread is the process.
  for (int i = 0; i < plan.ncgroup_task_fds; i++) {
    r = Sys(SYS_write, plan.cgroup_task_fds[i], "0", 1);
    if (r < 0) Report(plan, status, Stage::kCgroupPlace, r, i);
  }

  // Node installs handlers (and ignores SIGPIPE); handlers point into the parent's code and an
  // ignored disposition would survive execve. Every signal goes back to its default. Signals stay
  // blocked (the parent blocked them around clone) until just before execve.
  KernelSigaction dfl;
  __builtin_memset(&dfl, 0, sizeof dfl);
  for (int sig = 1; sig < 65; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    Sys(SYS_rt_sigaction, sig, &dfl, nullptr, 8);
  }

  SPAWN_TRACE(11, "c-signals");
  // Die with the thread that cloned us (the launch thread, which lives as long as the host
  // process). Set before waiting, so a parent that dies in between is seen as EOF on the status
  // socket.
  r = Sys(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (r < 0) Report(plan, status, Stage::kWaitParent, r);

  // Until the 'G' below, the parent is writing our id maps (and, where clone3 is hidden, placing us
  // in our cgroup2 directory). What needs neither is done meanwhile.

  // No controlling terminal: TIOCSTI injection into the host's terminal becomes impossible.
  r = Sys(SYS_setsid);
  if (r < 0) Report(plan, status, Stage::kSetsid, r);

  // Root inside the sandbox gets no capabilities from execve, and uid changes neither clear nor
  // re-grant any (NO_SETUID_FIXUP): we switch identity first, keep the capabilities we need for the
  // mounts, then empty every set by hand below. Needs CAP_SETPCAP, which we still hold.
  r = Sys(SYS_prctl, PR_SET_SECUREBITS,
          SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
              SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
              SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
          0, 0, 0);
  if (r < 0) Report(plan, status, Stage::kSecurebits, r);

  // The bounding set first (dropping needs CAP_SETPCAP). It only limits what a later execve or
  // capset may grant: the effective capabilities the setup needs stay until the capset below.
  for (int cap = 0; cap <= plan.last_cap; cap++) {
    r = Sys(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0);
    if (r < 0 && r != -EINVAL) Report(plan, status, Stage::kCapBound, r, cap);
  }
  SPAWN_TRACE(13, "c-bounding");

  // With the host identity still: bind sources resolve as the host process would resolve them
  // (prepared mode: the parent resolves them). A template root needs no id maps either, so the host
  // tree can go now too.
  int trees[kMaxBinds];
  if (plan.mount_ns) {
    ChildFailure failure{};
    if (!ChildCloneSources(plan, trees, &failure)) Report(plan, status, failure);
    if (plan.root_template >= 0 && !ChildPivot(plan, &failure)) Report(plan, status, failure);
  }

  // The hostname needs no maps either.
  if (plan.uts_ns && !plan.hostname.empty()) {
    r = Sys(SYS_sethostname, plan.hostname.data(), plan.hostname.size());
    if (r < 0) Report(plan, status, Stage::kHostname, r);
  }

  // Wait until the parent has written our id maps (prepared mode: and made our binds, /proc and
  // tmpfs). Usually it is about done: poll its flag for a while (about 0.1 ms of TSC cycles) before
  // sleeping in recvmsg, since waking a sleeper costs more than that on an idle virtual CPU. Poll by
  // yielding, not spinning: when the scheduler started us on the CPU of the task that releases us
  // (it does when the other CPUs are busy), a spin would hold that task off for the whole while.
  const unsigned long long poll_start = __builtin_ia32_rdtsc();
  while (!__atomic_load_n(&plan.released, __ATOMIC_ACQUIRE) && __builtin_ia32_rdtsc() - poll_start < 300000) {
    Sys(SYS_sched_yield);
  }
  if (!ReceiveRelease(status, trees, plan.prepared() ? plan.parent_mounts : 0)) Exit(127);
  SPAWN_TRACE(12, "c-go");

  // Now that we are placed in every hierarchy, our cgroups become the roots of the new cgroup
  // namespace.
  if (plan.cgroup_ns && !plan.cgroup_ns_with_clone()) {
    r = Sys(SYS_unshare, CLONE_NEWCGROUP);
    if (r < 0) Report(plan, status, Stage::kCgroupNamespace, r);
  }

  // A fresh tmpfs root is mounted with the sandbox's ids as owner, which needs the maps.
  if (plan.mount_ns && !plan.prepared()) {
    ChildFailure failure{};
    if (!ChildPivot(plan, &failure)) Report(plan, status, failure);
  }

  SPAWN_TRACE(20, "c-prepared");
  // Identity before creating mount points: in a user namespace that maps only the sandbox's ids,
  // files created while still the (unmapped) host uid fail with EOVERFLOW.
  if (plan.drop_supplementary_groups) {
    r = Sys(SYS_setgroups, 0, nullptr);
    if (r < 0) Report(plan, status, Stage::kSetgroups, r);
  }
  r = Sys(SYS_setresgid, plan.gid, plan.gid, plan.gid);
  if (r < 0) Report(plan, status, Stage::kSetgid, r);
  r = Sys(SYS_setresuid, plan.uid, plan.uid, plan.uid);
  if (r < 0) Report(plan, status, Stage::kSetuid, r);

  // A credential change clears the parent-death signal: set it again, then make sure the parent did
  // not die in between (its end of the status socket would be closed).
  r = Sys(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (r < 0) Report(plan, status, Stage::kWaitParent, r);
  struct pollfd parent_alive = {status, POLLRDHUP, 0};
  r = Sys(SYS_poll, &parent_alive, 1, 0);
  if (r != 0) Exit(127);

  SPAWN_TRACE(21, "c-identity");
  if (plan.mount_ns) {
    ChildFailure failure{};
    if (!ChildPopulateRoot(plan, trees, &failure)) Report(plan, status, failure);
  }

  SPAWN_TRACE(26, "c-populated");

  // Every other capability set emptied (the bounding set already is).
  struct __user_cap_header_struct cap_header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct cap_data[2];
  __builtin_memset(cap_data, 0, sizeof cap_data);
  r = Sys(SYS_capset, &cap_header, cap_data);
  if (r < 0) Report(plan, status, Stage::kCapabilities, r);
  r = Sys(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  if (r < 0) Report(plan, status, Stage::kCapabilities, r);

  SPAWN_TRACE(27, "c-caps");
  // fds: move the status socket and every source above all targets, mark every fd close-on-exec,
  // then place the sources at their targets (dup3 clears close-on-exec on the copy). Nothing but
  // the targets survives execve; the status socket closes at execve, which the parent sees as EOF.
  const int ceiling = plan.fd_ceiling;
  r = Sys(SYS_fcntl, status, F_DUPFD_CLOEXEC, ceiling);
  if (r < 0) Report(plan, status, Stage::kFds, r);
  status = static_cast<int>(r);
  int moved[kMaxFds];
  const size_t nfds = plan.fds.size();
  for (size_t i = 0; i < nfds; i++) {
    r = Sys(SYS_fcntl, plan.fds[i].source, F_DUPFD_CLOEXEC, ceiling);
    if (r < 0) Report(plan, status, Stage::kFds, r, static_cast<int>(i));
    moved[i] = static_cast<int>(r);
  }
  r = Sys(SYS_close_range, 0, ~0u, CLOSE_RANGE_CLOEXEC);
  if (r < 0) Report(plan, status, Stage::kFds, r);
  for (size_t i = 0; i < nfds; i++) {
    r = Sys(SYS_dup3, moved[i], plan.fds[i].target, 0);
    if (r < 0) Report(plan, status, Stage::kFds, r, static_cast<int>(i));
  }

  for (size_t i = 0; i < plan.rlimits.size(); i++) {
    struct {
      uint64_t cur, max;
    } lim = {plan.rlimits[i].soft, plan.rlimits[i].hard};
    r = Sys(SYS_prlimit64, 0, plan.rlimits[i].resource, &lim, nullptr);
    if (r < 0) Report(plan, status, Stage::kRlimit, r, static_cast<int>(i));
  }

  r = Sys(SYS_chdir, plan.cwd.c_str());
  if (r < 0) Report(plan, status, Stage::kChdir, r);

  r = Sys(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  if (r < 0) Report(plan, status, Stage::kNoNewPrivs, r);

  unsigned long empty_mask = 0;
  r = Sys(SYS_rt_sigprocmask, SIG_SETMASK, &empty_mask, nullptr, 8);
  if (r < 0) Report(plan, status, Stage::kSignals, r);

  SPAWN_TRACE(28, "c-fds-limits");
  // Seccomp last: from here on only what the policy allows runs, and the policy must allow
  // sendmsg (to hand over the listener) and execve.
  if (!plan.seccomp.empty()) {
    struct sock_fprog prog = {static_cast<unsigned short>(plan.seccomp.size()),
                              const_cast<sock_filter*>(plan.seccomp.data())};
    unsigned long flags = plan.seccomp_listener ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0;
    r = Sys(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
    if (r < 0) Report(plan, status, Stage::kSeccomp, r);
    if (plan.seccomp_listener) {
      const int listener = static_cast<int>(r);
      r = SendListener(status, listener);
      if (r < 0) Report(plan, status, Stage::kSeccompListener, r);
      Sys(SYS_close, listener);
    }
  }

  SPAWN_TRACE(29, "c-seccomp");
  plan.reached_exec = 1;
  long first_error = -ENOENT;
  for (const char* path : plan.exec_candidates) {
    r = Sys(SYS_execve, path, plan.argv.data(), plan.envp.data());
    // PATH search semantics: keep looking past "not there", remember anything more telling.
    if (r != -ENOENT && r != -ENOTDIR && first_error == -ENOENT) first_error = r;
  }
  plan.reached_exec = 0;
  Report(plan, status, Stage::kExec, first_error);
}

}  // namespace warden

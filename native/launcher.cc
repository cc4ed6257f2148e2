#include "launcher.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <linux/prctl.h>
#include <linux/securebits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <algorithm>
#include <vector>
#include <cstring>

#include "mounts.h"
#include "raw_syscall.h"
#include "spawn_trace.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

namespace warden {

namespace {

// waitid's idtype for a pidfd (P_PIDFD, Linux 5.4); older glibc headers lack the name.
constexpr idtype_t kIdPidfd = static_cast<idtype_t>(3);

constexpr size_t kStackSize = 256 * 1024;
constexpr size_t kTrampolineStack = 16 * 1024;  // at the bottom of the same mapping, above the guard

// Owns an fd; closes it unless released.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { int fd = fd_; fd_ = -1; return fd; }
  void Reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }
 private:
  int fd_;
};

// The child's stack, with a guard page below it. One per thread that launches, kept for the
// thread's life: a launch returns only once its child has left the stack (execve'd or been reaped),
// and a fresh mapping per launch would cost an mmap, page faults and a TLB-flushing munmap.
class ChildStack {
 public:
  static ChildStack& ForThisThread() {
    thread_local ChildStack stack;
    return stack;
  }
  ~ChildStack() {
    if (base_ != nullptr) munmap(base_, kStackSize);
  }
  // The child's stack top, and (below it, well apart) the template-namespace trampoline's.
  void* top() {
    if (base_ == nullptr) {
      void* p = mmap(nullptr, kStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                     -1, 0);
      if (p == MAP_FAILED) return nullptr;
      mprotect(p, 4096, PROT_NONE);
      base_ = p;
    }
    return static_cast<char*>(base_) + kStackSize;
  }
  void* trampoline_top() { return top() == nullptr ? nullptr : static_cast<char*>(base_) + 4096 + kTrampolineStack; }
 private:
  ChildStack() = default;
  void* base_ = nullptr;
};

// The creator of a user namespace owns it (its effective uid at the clone), and the kernel charges
// what every process inside takes of the per-user counts (inotify instances and watches, message
// queue bytes, pending signals, locked memory, processes: kernel/ucount.c) to its own uid in the
// namespace *and* to the owner in the parent namespace, against the parent's limits. Created by
// root, every sandbox would draw on root's counts: one sandbox holding 128 inotify instances would
// leave none to any other sandbox or to root on the host. So the clone runs with the sandbox's host
// ids as effective ids: the namespace is then owned by them, and what it takes is counted against
// them alone. SECBIT_NO_SETUID_FIXUP keeps our capabilities over the switch (the clone and the
// release need them: cgroup placement, the template namespace, the id maps). Raw syscalls change
// only the calling thread's credentials (glibc's setresuid would change every thread's); the
// switch lasts from here to RestoreIds, with every signal blocked. A vfork-style trampoline starts
// with these credentials and restores its own copy the same way.
struct SavedIds {
  bool switched = false;
  long securebits = 0;
  uid_t euid = 0;
  gid_t egid = 0;
};

long SwitchToOwner(const LaunchPlan& plan, SavedIds* saved) {
  if (!plan.own_user_ns) return 0;
  long bits = Sys(SYS_prctl, PR_GET_SECUREBITS, 0, 0, 0, 0);
  if (bits < 0) return bits;
  uid_t ruid, euid, suid;
  gid_t rgid, egid, sgid;
  long r = Sys(SYS_getresuid, &ruid, &euid, &suid);
  if (r == 0) r = Sys(SYS_getresgid, &rgid, &egid, &sgid);
  if (r < 0) return r;
  r = Sys(SYS_prctl, PR_SET_SECUREBITS, bits | SECBIT_NO_SETUID_FIXUP, 0, 0, 0);
  if (r < 0) return r;
  saved->securebits = bits;
  saved->euid = euid;
  saved->egid = egid;
  saved->switched = true;
  r = Sys(SYS_setresgid, -1, plan.map_gid_outside, -1);
  if (r == 0) r = Sys(SYS_setresuid, -1, plan.map_uid_outside, -1);
  return r;
}

// Back to the ids saved by SwitchToOwner. The real and saved ids never changed, so going back is
// always permitted; a thread of the host left with another identity would be worse than a crash,
// so a failure ends the process (a raw exit: this runs in the trampoline too).
void RestoreIds(SavedIds* saved) {
  if (!saved->switched) return;
  if (Sys(SYS_setresuid, -1, saved->euid, -1) != 0 || Sys(SYS_setresgid, -1, saved->egid, -1) != 0 ||
      Sys(SYS_prctl, PR_SET_SECUREBITS, saved->securebits, 0, 0, 0) != 0) {
    for (;;) Sys(SYS_exit_group, 134);
  }
  saved->switched = false;
}

// A failure the child already reported, if any (it may have failed before we released it).
bool TakeChildFailure(int fd, ChildFailure* failure) {
  for (;;) {
    ChildFailure msg{};
    ssize_t n = recv(fd, &msg, sizeof msg, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n == static_cast<ssize_t>(sizeof msg)) {
      *failure = msg;
      return true;
    }
    return false;
  }
}

void KillAndReap(int pidfd) {
  syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  siginfo_t info;
  while (waitid(kIdPidfd, pidfd, &info, WEXITED | __WALL) < 0 &&
         errno == EINTR) {
  }
}

bool ParentFail(LaunchError* error, Stage stage, int err, std::string detail = "") {
  error->stage = stage;
  error->error = err;
  error->detail = std::move(detail);
  return false;
}

// A failure the child (or the release) reported. A cgroup placement names the file.
bool ChildFail(LaunchError* error, const ChildFailure& failure, const LaunchPlan& plan) {
  error->stage = static_cast<Stage>(failure.stage);
  error->error = failure.error;
  error->index = failure.index;
  if (error->stage == Stage::kCgroupPlace && failure.index >= 0 &&
      static_cast<size_t>(failure.index) < plan.cgroup_tasks.size()) {
    error->detail = plan.cgroup_tasks[failure.index];
    error->index = -1;
  }
  return false;
}

// Reads the child's messages until EOF (execve closed its end, or it exited). Returns false on
// timeout or a socket error.
bool ReadChildMessages(int fd, int timeout_ms, ChildFailure* failure, bool* failed, int* listener,
                       LaunchError* error) {
  for (;;) {
    struct pollfd pfd = {fd, POLLIN, 0};
    int ready = poll(&pfd, 1, timeout_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return ParentFail(error, Stage::kWaitParent, errno, "poll on the status socket");
    if (ready == 0) return ParentFail(error, Stage::kTimeout, ETIMEDOUT);

    ChildFailure msg{};
    struct iovec iov = {&msg, sizeof msg};
    union {
      char buf[CMSG_SPACE(sizeof(int))];
      struct cmsghdr align;
    } control;
    struct msghdr hdr;
    memset(&hdr, 0, sizeof hdr);
    hdr.msg_iov = &iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.buf;
    hdr.msg_controllen = sizeof control.buf;
    ssize_t n = recvmsg(fd, &hdr, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    // A child that failed before reading our release leaves it unread, which the kernel reports
    // once as a reset; its failure report is still queued behind.
    if (n < 0 && errno == ECONNRESET) continue;
    if (n < 0) return ParentFail(error, Stage::kWaitParent, errno, "recvmsg on the status socket");
    if (n == 0) return true;  // EOF
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&hdr);
    if (cmsg != nullptr && cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
      int received;
      memcpy(&received, CMSG_DATA(cmsg), sizeof received);
      if (*listener >= 0) close(*listener);
      *listener = received;
      continue;
    }
    if (static_cast<size_t>(n) == sizeof msg && !*failed) {
      *failure = msg;
      *failed = true;
    }
  }
}

// The release of the child: its id maps, its cgroup2 placement where clone3 is hidden, in prepared
// mode its /proc, then 'G' with every mount made for it (as SCM_RIGHTS) on the status socket.
// Everything is prepared before the clone, so that running it takes raw syscalls only: in namespace
// mode the trampoline runs it, on our TLS, while this thread waits for it (vfork).
struct Release {
  LaunchPlan* plan = nullptr;
  int proc_dir = -1;                   // the host's /proc
  char uid_line[48] = {}, gid_line[48] = {};
  int uid_len = 0, gid_len = 0;
  int into_dir = -1;                   // the cgroup2 directory to clone the child into, or -1
  int into_procs = -1;                 // ... its cgroup.procs, written when clone3 is unavailable
  bool into_done = false;              // the child was created in into_dir
  int mounts[kMaxBinds];               // per bind, proc and tmpfs op, in order; -1 until made
  int nmounts = 0;
  int proc_slot = -1;                  // the proc op's slot, made by the release
  int proc_index = -1;                 // ... and its entry in the caller's list
  int host_mounts = 0;                 // futex: 0 being made, 1 made, -1 failed (see host_failure)
  ChildFailure host_failure{};
  ChildFailure failure{};              // the release's own; stage kNone once 'G' is sent
};

// Decimal digits of `v` into `out` (no terminator); returns their count.
int FormatUnsigned(unsigned long v, char* out) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (int i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

bool ReleaseFail(Release& r, Stage stage, long ret, int index = -1) {
  r.failure.stage = static_cast<uint32_t>(stage);
  r.failure.error = static_cast<int32_t>(-ret);
  r.failure.index = index;
  return false;
}

// Writes `data` into /proc/<pid>/<name>.
long WriteProcFile(int proc_dir, const char* pid_text, int pid_len, const char* name, const char* data, int len) {
  char path[64];
  int n = 0;
  for (int i = 0; i < pid_len; i++) path[n++] = pid_text[i];
  path[n++] = '/';
  for (const char* c = name; *c != '\0' && n < static_cast<int>(sizeof path) - 1; c++) path[n++] = *c;
  path[n] = '\0';
  long fd = Sys(SYS_openat, proc_dir, path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return fd;
  long w = Sys(SYS_write, fd, data, len);
  Sys(SYS_close, fd);
  if (w < 0) return w;
  return w == len ? 0 : -EIO;
}

bool RunRelease(Release& r, pid_t pid, int pidfd) {
  LaunchPlan& plan = *r.plan;
  char pid_text[24];
  const int pid_len = FormatUnsigned(static_cast<unsigned long>(pid), pid_text);
  long e;
  if (plan.user_ns) {
    if (plan.deny_setgroups && (e = WriteProcFile(r.proc_dir, pid_text, pid_len, "setgroups", "deny", 4)) < 0) {
      return ReleaseFail(r, Stage::kSetgroupsFile, e);
    }
    if ((e = WriteProcFile(r.proc_dir, pid_text, pid_len, "uid_map", r.uid_line, r.uid_len)) < 0) {
      return ReleaseFail(r, Stage::kUidMap, e);
    }
    if ((e = WriteProcFile(r.proc_dir, pid_text, pid_len, "gid_map", r.gid_line, r.gid_len)) < 0) {
      return ReleaseFail(r, Stage::kGidMap, e);
    }
  }
  SPAWN_TRACE(4, "p-maps");
  // The v1 hierarchies: the child placed itself (see LaunchPlan::cgroup_tasks). The cgroup2 one
  // where clone3 is hidden: the child only waits for 'G' so far.
  if (r.into_procs >= 0 && !r.into_done) {
    e = Sys(SYS_write, r.into_procs, pid_text, pid_len);
    if (e < 0) return ReleaseFail(r, Stage::kCgroupPlace, e);
  }
  if (r.proc_slot >= 0) {
    e = MakeProcMount(pidfd);
    if (e < 0) return ReleaseFail(r, Stage::kProc, e, r.proc_index);
    r.mounts[r.proc_slot] = static_cast<int>(e);
  }
  // The binds and tmpfs, which the launching thread makes meanwhile.
  while (__atomic_load_n(&r.host_mounts, __ATOMIC_ACQUIRE) == 0) {
    Sys(SYS_futex, &r.host_mounts, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
  }
  if (r.host_mounts < 0) {
    r.failure = r.host_failure;
    return false;
  }
  SPAWN_TRACE(5, "p-go");
  char go = 'G';
  struct iovec iov = {&go, 1};
  union {
    char buf[CMSG_SPACE(sizeof(int) * kMaxBinds)];
    struct cmsghdr align;
  } control;
  struct msghdr msg;
  __builtin_memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (r.nmounts > 0) {
    __builtin_memset(&control, 0, sizeof control);
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * r.nmounts);
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * r.nmounts);
    __builtin_memcpy(CMSG_DATA(cmsg), r.mounts, sizeof(int) * r.nmounts);
  }
  e = Sys(SYS_sendmsg, plan.parent_status_fd, &msg, MSG_NOSIGNAL);
  if (e != 1) return ReleaseFail(r, Stage::kWaitParent, e < 0 ? e : -EIO);
  plan.released = 1;
  return true;
}

// The trampoline of namespace mode: cloned vfork-style (CLONE_VM | CLONE_VFORK | CLONE_FILES) with
// its own fs_struct, it enters the template namespace and clones the child from there, so that the
// child's mount namespace is a copy of the template's; then it releases the child. CLONE_PARENT
// makes the child ours (we reap it, its parent-death signal follows this thread) and gives it our
// exit signal, 0; CLONE_FILES puts the pidfd and the proc mount in our table. It runs on our TLS:
// raw syscalls only.
//
// It starts on this thread's CPU, which this thread leaves to it (vfork), rather than on another,
// possibly idle one, which on a virtual machine can take tens of microseconds to wake; it gives
// the child our usual affinity back, so the child starts wherever the scheduler finds room.
struct Trampoline {
  Release* release;
  void* child_stack_low;
  void* child_stack_top;
  const cpu_set_t* affinity = nullptr;  // the launching thread's usual one, for the child
  int pid = -1;
  int pidfd = -1;
  Stage stage = Stage::kNone;  // of a failure before the child exists
  int error = 0;
  SavedIds ids;  // the host thread's, switched to the owner's for the clone (a copy of its state)
};

// Clones the sandbox's first process (ChildMain) on [stack_low, stack_top): into its cgroup2
// directory with clone3 when there is one, else (or where the host's seccomp answers clone3 with
// ENOSYS) with clone, the release then writing that cgroup's cgroup.procs. Raw syscalls only: the
// trampoline runs it too. The new task's id, or -errno.
long CloneChild(Release& r, unsigned long extra_flags, void* stack_low, void* stack_top, int* pidfd) {
  LaunchPlan* plan = r.plan;
  const unsigned long flags = CLONE_VM | CLONE_PIDFD | extra_flags | plan->clone_flags |
                              (plan->cgroup_ns_with_clone() ? CLONE_NEWCGROUP : 0);
  if (r.into_dir >= 0) {
    long pid = RawClone3(flags, r.into_dir, pidfd, stack_low, stack_top, ChildMain, plan);
    if (pid != -ENOSYS) {
      r.into_done = pid >= 0;
      return pid;
    }
  }
  return RawClone(flags, stack_top, pidfd, nullptr, ChildMain, plan);
}

int TrampolineMain(void* arg) {
  Trampoline& t = *static_cast<Trampoline*>(arg);
  LaunchPlan* plan = t.release->plan;
  if (t.affinity != nullptr) Sys(SYS_sched_setaffinity, 0, sizeof(cpu_set_t), t.affinity);
  SavedIds ids = t.ids;  // ours to restore: t.ids is the host thread's, in the memory we share
  long r = Sys(SYS_setns, plan->root_namespace, CLONE_NEWNS);
  if (r < 0) {
    RestoreIds(&ids);
    t.stage = Stage::kMountRoot;
    t.error = static_cast<int>(-r);
    return 0;
  }
  r = CloneChild(*t.release, CLONE_PARENT, t.child_stack_low, t.child_stack_top, &t.pidfd);
  RestoreIds(&ids);
  if (r < 0) {
    t.stage = Stage::kClone;
    t.error = static_cast<int>(-r);
    return 0;
  }
  __atomic_store_n(&t.pid, static_cast<int>(r), __ATOMIC_RELEASE);
  SPAWN_TRACE(3, "p-cloned");
  RunRelease(*t.release, static_cast<pid_t>(r), t.pidfd);
  return 0;
}


}  // namespace

bool Launch(LaunchPlan* plan, LaunchResult* out, LaunchError* error) {
  int sv[2];
  const bool spare = plan->prepared() && plan->mount_set != nullptr && plan->mount_set->TakeSpareSocketPair(sv);
  if (!spare && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return ParentFail(error, Stage::kClone, errno, "socketpair");
  }
  Fd parent_end(sv[0]);
  Fd child_end(sv[1]);
  plan->parent_status_fd = parent_end.get();
  plan->child_status_fd = child_end.get();
  // One /dev/null for every stream the caller ignores: opened here, a raw open, rather than by
  // the caller through Node's fs (several times the cost, on every spawn's path).
  Fd dev_null;
  for (FdMapping& m : plan->fds) {
    if (m.source != FdMapping::kDevNull) continue;
    if (dev_null.get() < 0) dev_null.Reset(open("/dev/null", O_RDWR | O_CLOEXEC));
    if (dev_null.get() < 0) {
      error->index = static_cast<int>(&m - plan->fds.data());
      return ParentFail(error, Stage::kFds, errno, "/dev/null");
    }
    m.source = dev_null.get();
  }
  int ceiling = std::max(parent_end.get(), child_end.get());
  for (const FdMapping& m : plan->fds) ceiling = std::max({ceiling, m.source, m.target});
  plan->fd_ceiling = ceiling + 1;
  plan->reached_exec = 0;
  plan->released = 0;

  SPAWN_TRACE(2, "p-socket");
  void* stack_top = ChildStack::ForThisThread().top();
  if (stack_top == nullptr) return ParentFail(error, Stage::kClone, errno, "mmap of the child's stack");

  // Everything the release needs, prepared now (no allocation once the child exists).
  Release release;
  release.plan = plan;
  // The host's /proc, opened per launch (a few microseconds; an fd kept for the process's life
  // would outlive every host that closes): the release writes the id maps through it, from inside
  // the template namespace too.
  Fd proc_dir(open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC));
  release.proc_dir = proc_dir.get();
  if (plan->user_ns && release.proc_dir < 0) return ParentFail(error, Stage::kUidMap, errno, "/proc");
  release.uid_len = snprintf(release.uid_line, sizeof release.uid_line, "%u %u 1\n", plan->map_uid_inside,
                             plan->map_uid_outside);
  release.gid_len = snprintf(release.gid_line, sizeof release.gid_line, "%u %u 1\n", plan->map_gid_inside,
                             plan->map_gid_outside);
  struct CloseTasks {
    LaunchPlan* plan;
    ~CloseTasks() {
      for (int i = 0; i < plan->ncgroup_task_fds; i++) close(plan->cgroup_task_fds[i]);
      plan->ncgroup_task_fds = 0;
    }
  } close_tasks{plan};
  plan->ncgroup_task_fds = 0;
  for (const std::string& tasks : plan->cgroup_tasks) {
    int fd = open(tasks.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return ParentFail(error, Stage::kCgroupPlace, errno, tasks);
    plan->cgroup_task_fds[plan->ncgroup_task_fds++] = fd;
  }
  Fd into_dir, into_procs;
  if (!plan->cgroup_dir.empty()) {
    into_dir.Reset(open(plan->cgroup_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (into_dir.get() < 0) return ParentFail(error, Stage::kCgroupPlace, errno, plan->cgroup_dir);
    const std::string procs = plan->cgroup_dir + "/cgroup.procs";
    into_procs.Reset(open(procs.c_str(), O_WRONLY | O_CLOEXEC));
    if (into_procs.get() < 0) return ParentFail(error, Stage::kCgroupPlace, errno, procs);
    release.into_dir = into_dir.get();
    release.into_procs = into_procs.get();
  }
  if (plan->prepared()) {
    for (const MountOp& op : plan->mounts) {
      if (op.kind != MountOpKind::kBind && op.kind != MountOpKind::kProc && op.kind != MountOpKind::kTmpfs) continue;
      if (op.kind == MountOpKind::kProc) {
        release.proc_slot = release.nmounts;
        release.proc_index = op.logical_index;
      }
      release.mounts[release.nmounts++] = -1;
    }
  }
  plan->parent_mounts = release.nmounts;
  struct CloseMounts {
    Release* r;
    ~CloseMounts() {
      for (int i = 0; i < r->nmounts; i++) {
        if (r->mounts[i] >= 0) close(r->mounts[i]);  // the child holds its own references
      }
    }
  } close_mounts{&release};

  // Per-spawn mode on a root host: the bind sources are cloned here, as the sandbox's host identity,
  // and inherited by the child (see LaunchPlan::source_trees); our copies go when we return.
  struct CloseSources {
    LaunchPlan* plan;
    ~CloseSources() {
      if (!plan->parent_sources) return;
      for (size_t i = 0; i < kMaxBinds; i++) {
        if (plan->source_trees[i] >= 0) close(plan->source_trees[i]);
      }
      plan->parent_sources = false;
    }
  } close_sources{plan};
  if (plan->mount_ns && !plan->prepared() && geteuid() == 0) {
    for (int& fd : plan->source_trees) fd = -1;
    plan->parent_sources = true;
    ChildFailure f{};
    if (!ParentCloneSources(*plan, plan->source_trees, &f)) {
      error->index = f.index;
      return ParentFail(error, static_cast<Stage>(f.stage), f.error);
    }
  }

  // Namespace mode: the binds and tmpfs first, for the trampoline to hand over (it cannot reach
  // host paths from inside the template namespace).
  if (plan->root_namespace >= 0) {
    if (!ParentMakeHostMounts(*plan, release.mounts, &release.host_failure)) {
      const ChildFailure& f = release.host_failure;
      error->index = f.index;
      return ParentFail(error, static_cast<Stage>(f.stage), f.error);
    }
    release.host_mounts = 1;
    SPAWN_TRACE(0, "p-host-mounts");
  }

  // Signals stay blocked in the child until it has reset every handler: a Node handler running on
  // the child's stack, in the parent's memory, would be a disaster.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int pidfd = -1;
  pid_t pid = -1;
  int clone_errno = 0;
  pid_t trampoline = -1;
  void* stack_low = ChildStack::ForThisThread().trampoline_top();  // the trampoline's stack is below
  Trampoline t{&release, stack_low, stack_top};
  long owner = SwitchToOwner(*plan, &t.ids);
  if (owner < 0) {
    RestoreIds(&t.ids);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return ParentFail(error, Stage::kNamespaceOwner, static_cast<int>(-owner), "switching to the sandbox's host ids for the clone");
  }
  if (plan->root_namespace >= 0) {
    cpu_set_t usual, here;
    bool pinned = false;
    const int cpu = sched_getcpu();
    if (cpu >= 0 && sched_getaffinity(0, sizeof usual, &usual) == 0) {
      CPU_ZERO(&here);
      CPU_SET(cpu, &here);
      pinned = sched_setaffinity(0, sizeof here, &here) == 0;
    }
    t.affinity = pinned ? &usual : nullptr;
    trampoline = clone(TrampolineMain, ChildStack::ForThisThread().trampoline_top(),
                       CLONE_VM | CLONE_VFORK | CLONE_FILES, &t);
    clone_errno = errno;
    if (pinned) sched_setaffinity(0, sizeof usual, &usual);
  } else {
    // Exit signal 0: no SIGCHLD, so no waitpid(-1) anywhere in the host can reap our child; we reap
    // through the pidfd (with __WALL).
    long r = CloneChild(release, 0, stack_low, stack_top, &pidfd);
    pid = r < 0 ? -1 : static_cast<pid_t>(r);
    clone_errno = r < 0 ? static_cast<int>(-r) : 0;
    SPAWN_TRACE(3, "p-cloned");
  }
  RestoreIds(&t.ids);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (plan->root_namespace >= 0 && trampoline < 0) return ParentFail(error, Stage::kClone, clone_errno);
  if (plan->root_namespace < 0 && pid < 0) return ParentFail(error, Stage::kClone, clone_errno);

  // Template mode: the binds and tmpfs, while the child pivots.
  if (plan->prepared() && trampoline < 0) {
    bool made = ParentMakeHostMounts(*plan, release.mounts, &release.host_failure);
    release.host_mounts = made ? 1 : -1;
  } else if (!plan->prepared()) {
    release.host_mounts = 1;
  }

  bool released;
  if (trampoline >= 0) {
    siginfo_t info;
    while (waitid(P_PID, trampoline, &info, WEXITED | __WALL) < 0 && errno == EINTR) {
    }
    if (t.stage != Stage::kNone) {
      return ParentFail(error, t.stage, t.error,
                        t.stage == Stage::kMountRoot ? "entering the template namespace" : "");
    }
    pid = t.pid;
    pidfd = t.pidfd;
    released = release.failure.stage == static_cast<uint32_t>(Stage::kNone);
  } else {
    released = RunRelease(release, pid, pidfd);
  }
  Fd pidfd_owner(pidfd);
  child_end.Reset();
  if (!released) {
    // The child may have failed first (it works on its setup meanwhile): then its report is the
    // cause.
    ChildFailure reported{};
    const ChildFailure& cause = TakeChildFailure(parent_end.get(), &reported) ? reported : release.failure;
    KillAndReap(pidfd);
    return ChildFail(error, cause, *plan);
  }

  ChildFailure failure{};
  bool failed = false;
  int listener = -1;
  bool ok = ReadChildMessages(parent_end.get(), plan->timeout_ms, &failure, &failed, &listener, error);
  Fd listener_owner(listener);
  SPAWN_TRACE(30, "p-eof");
  if (!ok) {
    KillAndReap(pidfd);
    return false;
  }
  if (failed || !plan->reached_exec) {
    // Reap before the stack goes away: the child may still be on its way to exit_group.
    siginfo_t info;
    memset(&info, 0, sizeof info);
    while (waitid(kIdPidfd, pidfd, &info, WEXITED | __WALL) < 0 &&
           errno == EINTR) {
    }
    if (failed) {
      return ChildFail(error, failure, *plan);
    }
    return ParentFail(error, Stage::kDiedInSetup, 0,
                      "the child died before execve (status " + std::to_string(info.si_status) + ")");
  }
  // The command runs: what the next launch of this mount list can have made ahead is made now.
  if (plan->prepared() && plan->mount_set != nullptr) plan->mount_set->RefillSpares(*plan);
  out->pid = pid;
  out->pidfd = pidfd_owner.release();
  out->listener = listener_owner.release();
  return true;
}

const char* StageName(Stage stage) {
  switch (stage) {
    case Stage::kNone: return "none";
    case Stage::kClone: return "clone";
    case Stage::kSetgroupsFile: return "setgroups-file";
    case Stage::kUidMap: return "uid-map";
    case Stage::kGidMap: return "gid-map";
    case Stage::kCgroupPlace: return "cgroup-place";
    case Stage::kWaitParent: return "wait-parent";
    case Stage::kCgroupNamespace: return "cgroup-namespace";
    case Stage::kTimeout: return "timeout";
    case Stage::kSetsid: return "setsid";
    case Stage::kMountPrivate: return "mount-private";
    case Stage::kMountRoot: return "mount-root";
    case Stage::kPivotRoot: return "pivot-root";
    case Stage::kMkdir: return "mkdir";
    case Stage::kTouch: return "touch";
    case Stage::kBind: return "bind";
    case Stage::kBindAttrs: return "bind-attrs";
    case Stage::kBindSource: return "bind-source";
    case Stage::kMountTarget: return "mount-target";
    case Stage::kTmpfs: return "tmpfs";
    case Stage::kProc: return "proc";
    case Stage::kSymlink: return "symlink";
    case Stage::kDetachOldRoot: return "detach-old-root";
    case Stage::kRemountRoot: return "remount-root";
    case Stage::kHostname: return "hostname";
    case Stage::kSecurebits: return "securebits";
    case Stage::kCapBound: return "capability-bounding-set";
    case Stage::kSetgroups: return "setgroups";
    case Stage::kSetgid: return "setgid";
    case Stage::kSetuid: return "setuid";
    case Stage::kCapabilities: return "capabilities";
    case Stage::kFds: return "fds";
    case Stage::kRlimit: return "rlimit";
    case Stage::kChdir: return "chdir";
    case Stage::kNoNewPrivs: return "no-new-privs";
    case Stage::kSignals: return "signals";
    case Stage::kSeccomp: return "seccomp";
    case Stage::kSeccompListener: return "seccomp-listener";
    case Stage::kExec: return "exec";
    case Stage::kDiedInSetup: return "died-in-setup";
    case Stage::kNamespaceOwner: return "namespace-owner";
  }
  return "unknown";
}

}  // namespace warden

#include "launcher.h"

#include <fcntl.h>
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

bool WriteFileAt(int dir, const char* name, const std::string& content, int* err) {
  int fd = openat(dir, name, O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = errno;
    return false;
  }
  ssize_t n = write(fd, content.data(), content.size());
  *err = n < 0 ? errno : 0;
  close(fd);
  if (n < 0) return false;
  if (static_cast<size_t>(n) != content.size()) {
    *err = EIO;
    return false;
  }
  return true;
}

bool WriteFile(const std::string& path, const std::string& content, int* err) {
  return WriteFileAt(AT_FDCWD, path.c_str(), content, err);
}

// The trampoline of namespace mode: cloned vfork-style (the launching thread waits for it) with its
// own fs_struct, it enters the template namespace and clones the child from there, so that the
// child's mount namespace is a copy of the template's. CLONE_PARENT makes the child ours (we reap
// it, its parent-death signal follows this thread) and gives it our exit signal, 0; CLONE_FILES
// puts the pidfd in our table. It runs on our TLS with our thread suspended (CLONE_VFORK), so
// glibc's clone wrapper, which may set errno, is safe here.
struct Trampoline {
  LaunchPlan* plan;
  void* child_stack_top;
  pid_t pid = -1;
  int pidfd = -1;
  Stage stage = Stage::kNone;
  int error = 0;
};

int TrampolineMain(void* arg) {
  Trampoline& t = *static_cast<Trampoline*>(arg);
  long r = Sys(SYS_setns, t.plan->root_namespace, CLONE_NEWNS);
  if (r < 0) {
    t.stage = Stage::kMountRoot;
    t.error = static_cast<int>(-r);
    return 0;
  }
  t.pid = clone(ChildMain, t.child_stack_top, CLONE_VM | CLONE_PIDFD | CLONE_PARENT | t.plan->clone_flags,
                t.plan, &t.pidfd);
  if (t.pid < 0) {
    t.stage = Stage::kClone;
    t.error = errno;
  }
  return 0;
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

// 'G', with the mounts made for the child (SCM_RIGHTS), in one message.
bool SendRelease(int fd, const std::vector<int>& mounts) {
  char go = 'G';
  if (mounts.empty()) return send(fd, &go, 1, MSG_NOSIGNAL) == 1;
  struct iovec iov = {&go, 1};
  std::vector<char> control(CMSG_SPACE(sizeof(int) * mounts.size()), 0);
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int) * mounts.size());
  memcpy(CMSG_DATA(cmsg), mounts.data(), sizeof(int) * mounts.size());
  return sendmsg(fd, &msg, MSG_NOSIGNAL) == 1;
}

}  // namespace

bool Launch(LaunchPlan* plan, LaunchResult* out, LaunchError* error) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return ParentFail(error, Stage::kClone, errno, "socketpair");
  }
  Fd parent_end(sv[0]);
  Fd child_end(sv[1]);
  plan->parent_status_fd = parent_end.get();
  plan->child_status_fd = child_end.get();
  int ceiling = std::max(parent_end.get(), child_end.get());
  for (const FdMapping& m : plan->fds) ceiling = std::max({ceiling, m.source, m.target});
  plan->fd_ceiling = ceiling + 1;
  plan->reached_exec = 0;
  plan->parent_mounts = 0;
  if (plan->prepared()) {
    for (const MountOp& op : plan->mounts) {
      if (op.kind == MountOpKind::kBind || op.kind == MountOpKind::kProc || op.kind == MountOpKind::kTmpfs) {
        plan->parent_mounts++;
      }
    }
  }

  SPAWN_TRACE(2, "p-socket");
  void* stack_top = ChildStack::ForThisThread().top();
  if (stack_top == nullptr) return ParentFail(error, Stage::kClone, errno, "mmap of the child's stack");

  // Signals stay blocked in the child until it has reset every handler: a Node handler running on
  // the child's stack, in the parent's memory, would be a disaster.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int pidfd = -1;
  pid_t pid;
  int clone_errno;
  if (plan->root_namespace >= 0) {
    Trampoline t;
    t.plan = plan;
    t.child_stack_top = stack_top;
    pid_t tramp = clone(TrampolineMain, ChildStack::ForThisThread().trampoline_top(),
                        CLONE_VM | CLONE_VFORK | CLONE_FILES, &t);
    clone_errno = errno;
    if (tramp >= 0) {
      siginfo_t info;
      while (waitid(P_PID, tramp, &info, WEXITED | __WALL) < 0 && errno == EINTR) {
      }
      clone_errno = t.error;
    }
    pid = tramp < 0 ? -1 : t.pid;
    pidfd = t.pidfd;
    if (tramp >= 0 && t.stage == Stage::kMountRoot) {
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      return ParentFail(error, Stage::kMountRoot, clone_errno, "entering the template namespace");
    }
  } else {
    // Exit signal 0: no SIGCHLD, so no waitpid(-1) anywhere in the host can reap our child; we reap
    // through the pidfd (with __WALL).
    pid = clone(ChildMain, stack_top, CLONE_VM | CLONE_PIDFD | plan->clone_flags, plan, &pidfd);
    clone_errno = errno;
  }
  SPAWN_TRACE(3, "p-cloned");
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return ParentFail(error, Stage::kClone, clone_errno);
  Fd pidfd_owner(pidfd);
  child_end.Reset();

  // The child works on its setup while we write; if it failed meanwhile, its report is the cause.
  auto abort_child = [&](Stage stage, int err, std::string detail) {
    ChildFailure failure{};
    bool reported = TakeChildFailure(parent_end.get(), &failure);
    KillAndReap(pidfd);
    if (reported) {
      error->stage = static_cast<Stage>(failure.stage);
      error->error = failure.error;
      error->index = failure.index;
      return false;
    }
    return ParentFail(error, stage, err, std::move(detail));
  };

  if (plan->user_ns) {
    const std::string proc = "/proc/" + std::to_string(pid);
    Fd dir(open(proc.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (dir.get() < 0) return abort_child(Stage::kUidMap, errno, proc);
    char line[64];
    int err = 0;
    if (plan->deny_setgroups && !WriteFileAt(dir.get(), "setgroups", "deny", &err)) {
      return abort_child(Stage::kSetgroupsFile, err, proc + "/setgroups");
    }
    snprintf(line, sizeof line, "%u %u 1\n", plan->map_uid_inside, plan->map_uid_outside);
    if (!WriteFileAt(dir.get(), "uid_map", line, &err)) return abort_child(Stage::kUidMap, err, line);
    snprintf(line, sizeof line, "%u %u 1\n", plan->map_gid_inside, plan->map_gid_outside);
    if (!WriteFileAt(dir.get(), "gid_map", line, &err)) return abort_child(Stage::kGidMap, err, line);
  }

  SPAWN_TRACE(4, "p-maps");
  // The child is placed before it runs any code of its own (it is still waiting for 'G').
  const std::string pid_text = std::to_string(pid);
  for (const std::string& procs : plan->cgroup_procs) {
    int err = 0;
    if (!WriteFile(procs, pid_text, &err)) return abort_child(Stage::kCgroupPlace, err, procs);
  }

  // Prepared mode: the sandbox's own mounts, made here while the child pivots into the template.
  std::vector<int> mounts;
  if (plan->prepared() && plan->parent_mounts > 0) {
    ChildFailure failure{};
    bool made = ParentMakeMounts(*plan, pidfd, &mounts, &failure);
    if (!made || static_cast<int>(mounts.size()) != plan->parent_mounts) {
      for (int fd : mounts) close(fd);
      ChildFailure reported{};
      if (TakeChildFailure(parent_end.get(), &reported)) failure = reported;
      KillAndReap(pidfd);
      error->stage = made ? Stage::kWaitParent : static_cast<Stage>(failure.stage);
      error->error = made ? EPROTO : failure.error;
      error->index = made ? -1 : failure.index;
      return false;
    }
  }
  SPAWN_TRACE(5, "p-go");
  bool released = SendRelease(parent_end.get(), mounts);
  int release_errno = errno;
  for (int fd : mounts) close(fd);  // the child has its own references now
  if (!released) return abort_child(Stage::kWaitParent, release_errno, "releasing the child");

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
      error->stage = static_cast<Stage>(failure.stage);
      error->error = failure.error;
      error->index = failure.index;
      return false;
    }
    return ParentFail(error, Stage::kDiedInSetup, 0,
                      "the child died before execve (status " + std::to_string(info.si_status) + ")");
  }
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
  }
  return "unknown";
}

}  // namespace warden

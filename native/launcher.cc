// Parent side of a launch: what every launch mode shares. The status socket, the fds, the release
// prepared ahead, the launch mode's own steps (launch_modes.cc), then the setup handshake: the
// child's failure reports, or its execve, seen as end-of-file on the status socket.
#include "launcher.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "launch_clone.h"
#include "launch_modes.h"
#include "launch_release.h"
#include "mounts.h"
#include "spawn_trace.h"

namespace warden {

namespace {

// waitid's idtype for a pidfd (P_PIDFD, Linux 5.4); older glibc headers lack the name.
constexpr idtype_t kIdPidfd = static_cast<idtype_t>(3);


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

}  // namespace

void KillAndReap(int pidfd) {
  syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  siginfo_t info;
  for (;;) {
    if (waitid(kIdPidfd, pidfd, &info, WEXITED | __WALL) == 0) return;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return;
    // A nonblocking pidfd (one the event loop watched) answers EAGAIN until the process is gone.
    struct pollfd p = {pidfd, POLLIN, 0};
    poll(&p, 1, -1);
  }
}

bool ParentFail(LaunchError* error, Stage stage, int err, std::string detail) {
  error->stage = stage;
  error->error = err;
  error->detail = std::move(detail);
  return false;
}

bool Launch(LaunchPlan* plan, LaunchResult* out, LaunchError* error) {
  const LaunchMode mode = LaunchModeOf(*plan);
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
  // The plan may be launched again (LaunchWithFallback's next mode): its /dev/null entries go back
  // to kDevNull when this attempt ends, rather than naming an fd closed with it, whose number the
  // host may meanwhile have given to another file.
  struct RestoreDevNull {
    LaunchPlan* plan;
    const Fd& dev_null;
    ~RestoreDevNull() {
      if (dev_null.get() < 0) return;
      for (FdMapping& m : plan->fds) {
        if (m.source == dev_null.get()) m.source = FdMapping::kDevNull;
      }
    }
  } restore_dev_null{plan, dev_null};
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
  struct CloseMounts {
    Release* r;
    ~CloseMounts() {
      for (int i = 0; i < r->nmounts; i++) {
        if (r->mounts[i] >= 0) close(r->mounts[i]);  // the child holds its own references
      }
    }
  } close_mounts{&release};

  // Per-spawn mode on a root host: the bind sources' clones (see LaunchPlan::source_trees); the child
  // inherits them, our copies go when we return.
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
  if (!PrepareParentMounts(mode, plan, &release, error)) return false;

  StartedChild child;
  if (!StartChild(mode, plan, &release, stack_top, &child, error)) return false;
  const int pidfd = child.pidfd;
  const pid_t pid = child.pid;
  const bool released = child.released;
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

}  // namespace warden

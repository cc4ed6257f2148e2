#include "launch_release.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <cerrno>

#include "mounts.h"
#include "raw_syscall.h"
#include "spawn_trace.h"

namespace warden {

namespace {

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

}  // namespace

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

}  // namespace warden

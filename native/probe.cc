// What this host offers, for `warden doctor`: each namespace type, seccomp, Landlock.
// Each probe asks the kernel directly (a clone that exits at once, a prctl, a syscall): reading
// sysctls alone would miss LSM policies and container restrictions.
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "bindings.h"
#include "raw_syscall.h"

namespace warden {

namespace {

int ExitAtOnce(void*) {
  Sys(SYS_exit_group, 0);
  return 0;
}

// 0 when the kernel lets this process create namespaces of `flags`, else the errno.
int ProbeClone(int flags) {
  const size_t size = 64 * 1024;
  void* stack = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return errno;
  pid_t pid = clone(ExitAtOnce, static_cast<char*>(stack) + size, CLONE_VM | CLONE_VFORK | flags | SIGCHLD, nullptr);
  int err = pid < 0 ? errno : 0;
  if (pid > 0) {
    int st;
    while (waitpid(pid, &st, __WALL) < 0 && errno == EINTR) {
    }
  }
  munmap(stack, size);
  return err;
}

Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);

  Napi::Object ns = Napi::Object::New(env);
  const struct {
    const char* name;
    int flag;
  } kinds[] = {{"user", CLONE_NEWUSER}, {"pid", CLONE_NEWPID},   {"mount", CLONE_NEWNS},
               {"net", CLONE_NEWNET},   {"ipc", CLONE_NEWIPC},   {"uts", CLONE_NEWUTS},
               {"cgroup", CLONE_NEWCGROUP}};
  for (const auto& k : kinds) {
    // Without privilege every other namespace needs a user namespace around it.
    int flags = k.flag;
    if (geteuid() != 0 && k.flag != CLONE_NEWUSER) flags |= CLONE_NEWUSER;
    ns.Set(k.name, Napi::Number::New(env, ProbeClone(flags)));
  }
  out.Set("namespaces", ns);

  // Seccomp: mode of this process (0 = none) and whether filters can be installed at all.
  out.Set("seccompMode", Napi::Number::New(env, prctl(PR_GET_SECCOMP, 0, 0, 0, 0)));
  long action = SECCOMP_RET_USER_NOTIF;
  long notif = syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action);
  out.Set("seccompUserNotif", Napi::Boolean::New(env, notif == 0));
  long kill_process = SECCOMP_RET_KILL_PROCESS;
  out.Set("seccompKillProcess",
          Napi::Boolean::New(env, syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &kill_process) == 0));

  long abi = syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  out.Set("landlockAbi", Napi::Number::New(env, abi < 0 ? -errno : abi));

  // pidfd + CLONE_PIDFD (5.2), mount_setattr (5.12), close_range CLOEXEC (5.11): the launcher needs all.
  long ms = syscall(SYS_mount_setattr, -1, "", 0, nullptr, 0);
  out.Set("mountSetattr", Napi::Boolean::New(env, !(ms < 0 && errno == ENOSYS)));
  long cr = syscall(SYS_close_range, ~0u, ~0u, 0);
  out.Set("closeRange", Napi::Boolean::New(env, !(cr < 0 && errno == ENOSYS)));
  return out;
}

}  // namespace

void InitProbe(Napi::Env env, Napi::Object exports) {
  exports.Set("probe", Napi::Function::New(env, Probe));
}

}  // namespace warden

#include "launch_clone.h"

#include <linux/prctl.h>
#include <linux/securebits.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "raw_syscall.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

namespace warden {

namespace {
constexpr size_t kStackSize = 256 * 1024;
constexpr size_t kTrampolineStack = 16 * 1024;  // at the bottom of the same mapping, above the guard
}  // namespace

ChildStack& ChildStack::ForThisThread() {
  thread_local ChildStack stack;
  return stack;
}

ChildStack::~ChildStack() {
  if (base_ != nullptr) munmap(base_, kStackSize);
}

void* ChildStack::top() {
  if (base_ == nullptr) {
    void* p = mmap(nullptr, kStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                   -1, 0);
    if (p == MAP_FAILED) return nullptr;
    mprotect(p, 4096, PROT_NONE);
    base_ = p;
  }
  return static_cast<char*>(base_) + kStackSize;
}

void* ChildStack::trampoline_top() {
  return top() == nullptr ? nullptr : static_cast<char*>(base_) + 4096 + kTrampolineStack;
}

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

void RestoreIds(SavedIds* saved) {
  if (!saved->switched) return;
  if (Sys(SYS_setresuid, -1, saved->euid, -1) != 0 || Sys(SYS_setresgid, -1, saved->egid, -1) != 0 ||
      Sys(SYS_prctl, PR_SET_SECUREBITS, saved->securebits, 0, 0, 0) != 0) {
    for (;;) Sys(SYS_exit_group, 134);
  }
  saved->switched = false;
}

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

}  // namespace warden

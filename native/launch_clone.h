// Cloning the sandbox's first process (parent side, launch_clone.cc): its stack, the identity the
// clone runs with, and the clone itself. Raw syscalls where the trampoline of namespace mode
// (launch_modes.cc) runs them.
#pragma once

#include <sys/types.h>

#include "launch_plan.h"
#include "launch_release.h"

namespace warden {

// The child's stack, with a guard page below it. One per thread that launches, kept for the
// thread's life: a launch returns only once its child has left the stack (execve'd or been reaped),
// and a fresh mapping per launch would cost an mmap, page faults and a TLB-flushing munmap.
class ChildStack {
 public:
  static ChildStack& ForThisThread();
  ~ChildStack();
  // The child's stack top, and (below it, well apart) the template-namespace trampoline's; null
  // when the mapping fails.
  void* top();
  void* trampoline_top();

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

// Switches the calling thread's effective ids to the sandbox's host ids (plan.own_user_ns only);
// 0 or -errno. RestoreIds goes back, also after a failure.
long SwitchToOwner(const LaunchPlan& plan, SavedIds* saved);
// Back to the ids saved by SwitchToOwner. The real and saved ids never changed, so going back is
// always permitted; a thread of the host left with another identity would be worse than a crash,
// so a failure ends the process (a raw exit: this runs in the trampoline too).
void RestoreIds(SavedIds* saved);

// Clones the sandbox's first process (ChildMain) on [stack_low, stack_top): into its cgroup2
// directory with clone3 when there is one, else (or where the host's seccomp answers clone3 with
// ENOSYS) with clone, the release then writing that cgroup's cgroup.procs. Raw syscalls only: the
// trampoline runs it too. The new task's id, or -errno.
long CloneChild(Release& r, unsigned long extra_flags, void* stack_low, void* stack_top, int* pidfd);

}  // namespace warden

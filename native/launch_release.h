// The parent's release of the child (parent side, launch_release.cc): what the child waits for
// before it goes on past its first steps.
#pragma once

#include <sys/types.h>

#include "launch_plan.h"

namespace warden {

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

// Runs the release of the child `pid` (its pidfd `pidfd`); false with r.failure set. Raw syscalls
// only, no allocation: the trampoline of namespace mode (launch_modes.cc) runs it too.
bool RunRelease(Release& r, pid_t pid, int pidfd);

}  // namespace warden

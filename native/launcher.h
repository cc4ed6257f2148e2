// Parent side of a launch: clone, id maps, cgroup placement, release, and the setup handshake.
#pragma once

#include <string>

#include "launch_plan.h"

namespace warden {

struct LaunchResult {
  pid_t pid = -1;
  int pidfd = -1;     // owned by the caller
  int listener = -1;  // seccomp user-notification fd, owned by the caller; -1 without one
};

struct LaunchError {
  Stage stage = Stage::kNone;
  int error = 0;   // errno
  int index = -1;  // mount entry / rlimit / fd index, or -1
  std::string detail;
};

// Starts the sandboxed process. Blocks the calling thread until the child has called execve or
// failed (bounded by plan->timeout_ms). Never forks the calling process the ordinary way: the child
// is cloned with CLONE_VM on its own stack, so the cost does not grow with the host's memory.
// The fallback between launch modes is LaunchWithFallback (launch_modes.h), which calls this.
bool Launch(LaunchPlan* plan, LaunchResult* out, LaunchError* error);

// Ends a child of ours through its pidfd and reaps it (blocks until it has died).
void KillAndReap(int pidfd);

// Records a failure of the parent's side in `error`; returns false.
bool ParentFail(LaunchError* error, Stage stage, int err, std::string detail = "");

}  // namespace warden

// What the mount files (mount_*.cc) share: a child-failure record and the owner of a sandbox's
// tmpfs. Not for other files: the launcher reaches the mounts through mounts.h.
#pragma once

#include "launch_plan.h"

namespace warden {

// Records a failure (ret is -errno) for the parent to report.
inline bool Fail(ChildFailure* f, Stage stage, long ret, int index = -1) {
  f->stage = static_cast<uint32_t>(stage);
  f->error = static_cast<int32_t>(-ret);
  f->index = index;
  return false;
}

// The host ids that own a sandbox's tmpfs: the sandbox's ids, as the host sees them.
inline unsigned TmpfsOwnerUid(const LaunchPlan& plan) { return plan.user_ns ? plan.map_uid_outside : plan.uid; }
inline unsigned TmpfsOwnerGid(const LaunchPlan& plan) { return plan.user_ns ? plan.map_gid_outside : plan.gid; }

}  // namespace warden

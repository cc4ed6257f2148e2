// The sandbox's filesystem: a tmpfs root, bind mounts, /proc, /dev, pivot_root, the old root detached.
#pragma once

#include <string>
#include <vector>

#include "launch_plan.h"

namespace warden {

// One entry of the caller's mount list (already validated by lib/sandbox).
struct MountSpec {
  enum class Kind { kBind, kTmpfs, kProc, kSymlink, kDir } kind;
  std::string source;  // kBind: host path; kSymlink: link content
  std::string target;  // absolute path in the sandbox
  bool writable = false;
  bool device = false;   // kBind of a device node: keep dev, add noexec
  std::string options;   // kTmpfs: "size=...,mode=..."
  uint32_t mode = 0755;  // kDir
};

// Parent side: turns the caller's list into the flat op list the child executes, creating the
// directories each target needs. Returns "" or an error naming the entry.
std::string BuildMountOps(const std::vector<MountSpec>& specs, LaunchPlan* plan);

constexpr size_t kMaxBinds = 128;  // the child keeps one fd per bind (and proc) in a fixed array

// Child side (no allocation, raw syscalls), in two steps around the identity change.
// Before it, with the host identity: make mounts private, clone and restrict every bind source into
// `trees` (kMaxBinds entries), pivot into a fresh tmpfs and detach the host tree.
bool ChildPrepareRoot(const LaunchPlan& plan, int* trees, ChildFailure* failure);
// After it (so created mount points belong to a mapped uid): mount points, binds, tmpfs, /proc,
// symlinks, then the read-only root.
bool ChildPopulateRoot(const LaunchPlan& plan, const int* trees, ChildFailure* failure);

}  // namespace warden

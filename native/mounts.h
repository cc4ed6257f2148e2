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

// Child side (no allocation, raw syscalls): the whole sequence from making mounts private to the
// read-only root. On failure fills *failure and returns false.
bool ChildSetupMounts(const LaunchPlan& plan, ChildFailure* failure);

}  // namespace warden

// The launch modes: the ways a sandbox gets its filesystem (see mounts.h), what the parent does
// differently in each, and the fallback from one to the next. Launch() (launcher.cc) does what
// every mode shares and calls in here where they differ.
//
//  - kNamespace (prepared; a root host whose kernel has proc's pidns=): the mount set holds a
//    template namespace. A trampoline enters it and clones the child there, so the child's mount
//    namespace is a copy of the template and nothing else. The parent makes the binds and tmpfs
//    before the clone (the trampoline cannot reach host paths), the /proc at the release.
//  - kTemplate (prepared, without the namespace): the child is cloned in the host's mount
//    namespace and pivots into a clone of the template; the parent makes the binds and tmpfs
//    meanwhile, the /proc at the release.
//  - kPerSpawn (an unprivileged host, a kernel that refuses the template, or no mount list): the
//    child mounts a fresh tmpfs root and populates it op by op. A root host clones the bind sources
//    for it first, as the sandbox's host identity.
//  - kNoMounts: no mount namespace; the child keeps the host's view of the filesystem.
//
// LaunchPlanFromJs (launcher_binding.cc) picks the best mode the mount set offers;
// LaunchWithFallback steps down from a mode the kernel refuses a sandbox.
#pragma once

#include <sys/types.h>

#include "launch_plan.h"
#include "launch_release.h"
#include "launcher.h"

namespace warden {

enum class LaunchMode { kNoMounts, kPerSpawn, kTemplate, kNamespace };

LaunchMode LaunchModeOf(const LaunchPlan& plan);

// Before the clone: the release's slots for the mounts the parent hands over (prepared modes), and
// what the mode makes ahead. False with `error` set; what was made is closed by the caller (the
// release's mounts and plan->source_trees).
bool PrepareParentMounts(LaunchMode mode, LaunchPlan* plan, Release* release, LaunchError* error);

// The child, once it exists.
struct StartedChild {
  pid_t pid = -1;
  int pidfd = -1;         // owned by the caller
  bool released = false;  // false: the release failed (release->failure), the child must be killed
};

// Clones the child on the stack below `stack_top`, as the mode does it (directly, or through the
// trampoline of namespace mode), with the sandbox's host ids as owner and every signal blocked,
// makes the mounts the mode makes after the clone, and releases the child. False (with `error`
// set) when there is no child.
bool StartChild(LaunchMode mode, LaunchPlan* plan, Release* release, void* stack_top, StartedChild* out,
                LaunchError* error);

// Launch(), stepping down to the next mode when the kernel builds the template namespace (or the
// template) but refuses a sandbox its clone: that mount set uses the next way down from then on.
// The command never ran when that happens, so it is started again.
bool LaunchWithFallback(LaunchPlan* plan, LaunchResult* out, LaunchError* error);

}  // namespace warden

// The setup stages: the one table of the steps a launch can fail at, by the child between clone
// and execve or by the parent around it. Each entry is an enum name and the name JS sees (the
// `stage` of ERR_SANDBOX_SETUP). The addon exports the names as `setupStages`, in this order;
// lib/sandbox/errors.ts holds the hint for each, and test/setup-stages.test.ts fails when a stage
// here has no hint there.
#pragma once

#include <cstdint>

namespace warden {

#define WARDEN_SETUP_STAGES(X)                                                               \
  X(kClone, "clone")                                                                         \
  X(kSetgroupsFile, "setgroups-file")                                                        \
  X(kUidMap, "uid-map")                                                                      \
  X(kGidMap, "gid-map")                                                                      \
  X(kCgroupPlace, "cgroup-place")                                                            \
  X(kWaitParent, "wait-parent")                                                              \
  X(kCgroupNamespace, "cgroup-namespace")                                                    \
  X(kTimeout, "timeout")                                                                     \
  X(kSetsid, "setsid")                                                                       \
  X(kMountPrivate, "mount-private")                                                          \
  X(kMountRoot, "mount-root")                                                                \
  X(kPivotRoot, "pivot-root")                                                                \
  X(kMkdir, "mkdir")                                                                         \
  X(kTouch, "touch")                                                                         \
  X(kBind, "bind")                                                                           \
  X(kBindAttrs, "bind-attrs")                                                                \
  /* a bind source could not be opened: a symlink in it, or out of the sandbox's reach */    \
  X(kBindSource, "bind-source")                                                              \
  /* a mount target inside the new root could not be reached without a symlink */            \
  X(kMountTarget, "mount-target")                                                            \
  X(kTmpfs, "tmpfs")                                                                         \
  X(kProc, "proc")                                                                           \
  X(kSymlink, "symlink")                                                                     \
  X(kDetachOldRoot, "detach-old-root")                                                       \
  X(kRemountRoot, "remount-root")                                                            \
  X(kHostname, "hostname")                                                                   \
  X(kSecurebits, "securebits")                                                               \
  X(kCapBound, "capability-bounding-set")                                                    \
  X(kSetgroups, "setgroups")                                                                 \
  X(kSetgid, "setgid")                                                                       \
  X(kSetuid, "setuid")                                                                       \
  X(kCapabilities, "capabilities")                                                           \
  X(kFds, "fds")                                                                             \
  X(kRlimit, "rlimit")                                                                       \
  X(kChdir, "chdir")                                                                         \
  X(kNoNewPrivs, "no-new-privs")                                                             \
  X(kSignals, "signals")                                                                     \
  X(kSeccomp, "seccomp")                                                                     \
  X(kSeccompListener, "seccomp-listener")                                                    \
  X(kExec, "exec")                                                                           \
  X(kDiedInSetup, "died-in-setup")                                                           \
  X(kNamespaceOwner, "namespace-owner")                                                      \
  /* after the launch: the network policy's DNS stub inside the sandbox (exit_watch.cc) */   \
  X(kNetwork, "network")

// kNone (0) is no stage: "nothing failed". The child sends a Stage as a number on the status
// socket; parent and child are the same binary, so the numbering needs no stability.
enum class Stage : uint32_t {
  kNone = 0,
#define WARDEN_STAGE_ENUM(id, name) id,
  WARDEN_SETUP_STAGES(WARDEN_STAGE_ENUM)
#undef WARDEN_STAGE_ENUM
};

inline const char* StageName(Stage stage) {
  switch (stage) {
    case Stage::kNone: return "none";
#define WARDEN_STAGE_CASE(id, name) \
    case Stage::id: return name;
    WARDEN_SETUP_STAGES(WARDEN_STAGE_CASE)
#undef WARDEN_STAGE_CASE
  }
  return "unknown";  // a number no stage has: only a corrupted report
}

// Every stage's name, in table order (kNone excluded), for the addon's `setupStages`.
inline constexpr const char* kSetupStageNames[] = {
#define WARDEN_STAGE_NAME(id, name) name,
    WARDEN_SETUP_STAGES(WARDEN_STAGE_NAME)
#undef WARDEN_STAGE_NAME
};

}  // namespace warden

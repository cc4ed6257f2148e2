// The launch plan: everything the child needs between clone and execve, prepared by the parent.
//
// The child shares the parent's memory (CLONE_VM) and may not allocate, so every string, array and
// BPF program lives here, built before clone. Storage (std::string / std::vector) belongs to the
// parent; the child only reads the raw pointers below.
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "stages.h"

namespace warden {

class MountSet;

constexpr size_t kMaxBinds = 128;  // the child keeps one fd per bind, proc and tmpfs in a fixed array
constexpr int kMaxCgroupTasks = 16;  // cgroup v1 hierarchies a sandbox is placed in (the kernel has 14 controllers)

enum class MountOpKind : uint8_t { kMkdir, kTouch, kBind, kTmpfs, kProc, kSymlink };

struct MountOp {
  MountOpKind kind;
  const char* source;   // kBind: host path under the old root; kSymlink: the link's content
  const char* target;   // path in the new root
  const char* data;     // kTmpfs: mount options
  uint64_t attr_set;    // kBind: MOUNT_ATTR_* to set recursively after the bind
  uint32_t mode;        // kMkdir
  bool device;          // kBind of a device node (part of the template when there is one)
  int logical_index;    // which entry of the caller's `mounts` this op serves, for error messages
  bool host_access;     // kBind: opened with the host's rights (a path the host chose), not the sandbox's
};

struct FdMapping {
  static constexpr int kDevNull = -1;  // source: the host's /dev/null, opened by Launch
  int source;  // fd in the parent
  int target;  // fd number in the sandbox
};

struct RlimitSetting {
  int resource;
  uint64_t soft;
  uint64_t hard;
};

// The message the child sends on the status socket when a step fails.
struct ChildFailure {
  uint32_t stage;
  int32_t error;   // errno
  int32_t index;   // mount op / rlimit / fd index, or -1
};

struct LaunchPlan {
  // clone
  int clone_flags = 0;
  bool user_ns = false;
  bool mount_ns = false;
  bool uts_ns = false;
  bool cgroup_ns = false;
  // The cgroup namespace's root must be the sandbox's own cgroup, so a child that is placed in
  // cgroups (v1 tasks, or a cgroup2 directory) unshares it after placement. A child placed nowhere
  // stays in our cgroups, and the namespace comes with the clone (one syscall less).
  bool cgroup_ns_with_clone() const { return cgroup_ns && cgroup_tasks.empty() && cgroup_dir.empty(); }

  // exec: candidates are tried in order (PATH search done by the parent); first non-ENOENT error wins
  std::vector<std::string> exec_candidates_storage;
  std::vector<const char*> exec_candidates;
  std::vector<std::string> argv_storage, envp_storage;
  std::vector<char*> argv, envp;  // null-terminated
  std::string cwd = "/";

  // user namespace maps, written by the parent (a process cannot map arbitrary ids for itself)
  uid_t map_uid_inside = 0, map_uid_outside = 0;
  gid_t map_gid_inside = 0, map_gid_outside = 0;
  bool deny_setgroups = false;
  // Root only: the clone runs with map_uid_outside / map_gid_outside as effective ids, so that the
  // user namespace belongs to them (see SwitchToOwner in launch_clone.h).
  bool own_user_ns = false;

  // identity the child switches to before exec
  uid_t uid = 0;
  gid_t gid = 0;
  bool drop_supplementary_groups = true;

  std::string hostname;

  // filesystem: the new root is attached on root_base then pivoted into. It is a clone of the
  // mount set's template when it has one, else a fresh tmpfs mounted with root_options.
  std::string root_base = "/tmp";
  std::string root_options;
  std::shared_ptr<MountSet> mount_set;  // owns the strings the ops point to
  std::vector<MountOp> mounts;          // what the child executes
  int root_template = -1;               // detached tree to clone as the root, or -1
  int root_namespace = -1;              // template namespace to clone the child from, or -1
  // Per-spawn mode on a root host: the bind sources' clones, made by the parent before the clone as
  // the sandbox's host identity (the child, still kuid 0, would look them up with root's rights),
  // one per bind op in order; the child inherits them (its fd table is a copy) and attaches them.
  bool parent_sources = false;
  int source_trees[kMaxBinds];
  // Prepared mode (either of the two above): how many mounts (bind, proc, tmpfs ops, in order) the
  // parent makes and hands over with the release. Set by Launch.
  int parent_mounts = 0;
  bool prepared() const { return root_template >= 0 || root_namespace >= 0; }

  std::vector<RlimitSetting> rlimits;
  std::vector<FdMapping> fds;
  int fd_ceiling = 0;  // above every source, target and internal fd

  std::vector<sock_filter> seccomp;
  bool seccomp_listener = false;

  // The `tasks` files of the sandbox's cgroup v1 hierarchies. The child moves itself in by writing
  // "0" to each, first thing after clone: a task moving itself (one thread, pid 0) skips the
  // cgroup's global threadgroup lock, whose write side waits for an RCU grace period (5-20 ms)
  // after an idle spell, where the parent's cgroup.procs write would wait it on every cold spawn.
  std::vector<std::string> cgroup_tasks;
  int cgroup_task_fds[kMaxCgroupTasks];  // opened by the parent before clone
  int ncgroup_task_fds = 0;
  // A cgroup2 directory the child is created in (CLONE_INTO_CGROUP), or empty. Where the host's
  // seccomp hides clone3 (ENOSYS, as container runtimes do), its cgroup.procs is written instead.
  std::string cgroup_dir;

  int last_cap = 40;
  int timeout_ms = 10000;  // setup must finish within this, or the child is killed

  // Filled in by the parent right before clone.
  int child_status_fd = -1;   // child's end of the status socket
  int parent_status_fd = -1;  // parent's end, closed first thing in the child

  // Written by the child right before execve: EOF without it means the child died in setup.
  volatile int reached_exec = 0;
  // Written by the parent once the release is on the status socket, so that a child that is ready
  // first can wait for it without sleeping (a sleeping child is woken up late on an idle CPU).
  volatile int released = 0;
};

// Runs in the child. Never returns.
int ChildMain(void* plan);

}  // namespace warden

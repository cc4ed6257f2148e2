// The sandbox's filesystem: a read-only root, bind mounts, /proc, /dev, pivot_root, the old root
// detached.
//
// Two ways to make the root, with the same result for the sandboxed program:
//  - prepared (a host running as root): the parts warden synthesizes (the root's directories, empty
//    files and symlinks that serve as mount points, and the device binds of /dev) are built ONCE per
//    mount list, as a detached mount tree held by an fd (the "template"). Each spawn clones that tree
//    with one open_tree() and adds only what must be its own: the caller's binds (resolved at every
//    spawn, as the host sees them then), a fresh /proc, a private /tmp. The template's root is
//    read-only before any sandbox sees it. Those per-spawn mounts are made by the parent while the
//    child sets itself up (ParentMakeHostMounts, MakeProcMount) and handed over with the release;
//    the child only attaches them.
//    Better still, the template is also made the root of a mount namespace of its own (the
//    "template namespace"), held by an nsfs fd. The child is then cloned from inside it
//    (launch_modes.cc), so its mount namespace is a copy of the template and nothing else: there is no
//    host tree to pivot away from and detach, which costs an RCU grace period per spawn. The copy
//    is made into the sandbox's user namespace, so the kernel locks every mount of it (and its
//    read-only, nosuid, nodev, noexec flags) against the sandbox.
//  - per spawn (an unprivileged host, which cannot mount outside its own user namespace, or a kernel
//    that refuses the template): a fresh tmpfs root populated op by op, then remounted read-only.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "launch_plan.h"
#include "signal_hold.h"

namespace warden {

// One entry of the caller's mount list (already validated by lib/sandbox).
struct MountSpec {
  enum class Kind { kBind, kTmpfs, kProc, kSymlink, kDir } kind;
  std::string source;  // kBind: host path; kSymlink: link content
  std::string target;  // absolute path in the sandbox
  bool writable = false;
  bool device = false;   // kBind of a device node: keep dev, add noexec
  bool host_access = false;  // kBind of a path the host chose (its own code): opened with its rights
  std::string options;   // kTmpfs: "size=...,mode=..."
  uint32_t mode = 0755;  // kDir
};

// A mount list turned into ops once, shared (read-only) by every spawn that uses it.
class MountSet {
 public:
  MountSet() = default;
  ~MountSet();
  MountSet(const MountSet&) = delete;
  MountSet& operator=(const MountSet&) = delete;

  // Turns the caller's list into the flat op list, creating the directories each target needs, then
  // (unless `allow_template` is false: the way kernels before 6.17 go, for tests) tries to build
  // the template. Returns "" or an error naming the entry.
  std::string Build(const std::vector<MountSpec>& specs, bool allow_template = true);

  // The ops a spawn executes, and the template to clone as its root (-1: a fresh tmpfs per spawn).
  // Threads: a set is built on its JS thread; from then on only the launch thread changes it
  // (launch_thread.h: drops, spares) while the JS thread may read whether it has a template.
  const std::vector<MountOp>& ops() const { return template_fd() >= 0 ? spawn_ops_ : all_ops_; }
  int template_fd() const { return template_fd_.load(std::memory_order_acquire); }
  // The template namespace to clone the child from (-1: none; the child pivots into a template
  // clone, or a fresh tmpfs).
  int namespace_fd() const { return namespace_fd_.load(std::memory_order_acquire); }
  // For a kernel that refuses a sandbox the template namespace, or the template: later spawns of
  // this set use the next way down. Launch thread only.
  void DropNamespace();
  void DropTemplate();
  // Why there is no template, or no template namespace ("" when there are both): for tests.
  std::string no_template_reason() const;

  // Spares (prepared mode): what a launch needs that depends on nothing but its options can be
  // made ahead, after a launch, while its command runs, for the next launch of the same set:
  // a sandbox's tmpfs (a new, empty filesystem: one per tmpfs op, by owner) and the status socket
  // pair. Only the set launched last keeps spares (every launch of the process runs on the
  // launch thread), so a host that varies its mount lists holds at most one list's worth;
  // closing the set (releasePreparedMounts) closes them.
  // The spare made for op `op` with owner `uid`:`gid`, or -1.
  int TakeSpareTmpfs(size_t op, unsigned uid, unsigned gid);
  // A fresh SOCK_SEQPACKET pair (close-on-exec) into `sv`, if there is one.
  bool TakeSpareSocketPair(int sv[2]);
  // Makes the spares `plan`'s next launch of this set will take (failures are left to that launch).
  void RefillSpares(const LaunchPlan& plan);
  void CloseSpares();

 private:
  bool BuildTemplate(std::string* why);
  bool BuildNamespace(std::string* why);

  std::vector<std::string> strings_;  // storage for MountOp strings (reserved up front)
  std::vector<MountOp> all_ops_;      // the per-spawn way: every op
  std::vector<MountOp> spawn_ops_;    // with the template: the ops left for each spawn
  std::atomic<int> template_fd_{-1};
  std::atomic<int> namespace_fd_{-1};
  mutable std::mutex reason_mutex_;
  std::string no_template_reason_;  // under reason_mutex_
  struct SpareTmpfs {
    size_t op;
    unsigned uid, gid;
    int fd;
  };
  std::vector<SpareTmpfs> spare_tmpfs_;
  int spare_pair_[2] = {-1, -1};
};

// Mount options of a fresh (per-spawn) root: it belongs to the sandbox's ids, because mount points
// are created after the identity change; it is read-only once populated anyway.
std::string FreshRootOptions(uid_t uid, gid_t gid);

// Bind sources and mount targets are reached component by component without following any symlink
// (a sandbox with a writable bind can plant one anywhere under it, for the next spawn to follow):
// openat2 with RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, or where openat2 is missing (ENOSYS:
// kernels before 5.6, or a host seccomp that hides it) a walk of O_PATH | O_NOFOLLOW opens. A
// symlink anywhere in the path is -ELOOP. Raw syscalls, no allocation: the child uses them too.
// The source `path` (absolute, normalized) as an O_PATH fd, or -errno.
long OpenBindSource(const char* path);
// `path` (absolute, normalized) beneath the directory `root` (RESOLVE_BENEATH as well) as an
// O_PATH fd, or -errno.
long OpenBeneath(int root, const char* path);
// A detached clone of the tree at the O_PATH fd `source`, restricted by `attr_set` (recursively,
// before it is attached anywhere): its fd, or -errno with *stage set.
long CloneTree(int source, uint64_t attr_set, Stage* stage);

// The calling thread's filesystem identity switched to the sandbox's host ids for this object's
// life (parent side, a root host only), so that bind sources are looked up with the rights the
// sandbox has on the host: a bind never shows what the sandbox's host uid could not reach itself
// (a file inside a 0700 root directory). setfsuid/setfsgid and setgroups are made as raw system
// calls, which change this thread's credentials only (glibc's setgroups() changes every thread's);
// an fsuid change from 0 drops the filesystem capabilities (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
// ...) from the effective set and the change back restores them. The lookups are synchronous on
// this thread: nothing else runs with the switched identity, and no set*id() of the host lands in
// the middle of the switch (signal_hold.h).
class SandboxFsIdentity {
 public:
  SandboxFsIdentity(uid_t uid, gid_t gid);
  ~SandboxFsIdentity();  // restores the thread's identity; aborts if the kernel refuses (never seen)
  SandboxFsIdentity(const SandboxFsIdentity&) = delete;
  SandboxFsIdentity& operator=(const SandboxFsIdentity&) = delete;
  // 0, or -errno if the switch failed (then nothing is switched).
  long error() const { return error_; }

 private:
  HoldSignals hold_;  // first: held before the switch, let go after the switch back
  bool active_ = false;
  long error_ = 0;
  uid_t saved_uid_ = 0;
  gid_t saved_gid_ = 0;
  std::vector<gid_t> saved_groups_;
};

// Parent side, a root host in per-spawn mode: the bind sources' clones into `trees` (one per bind
// op, in order), opened as the sandbox's host identity. The child attaches them. False with
// `failure` set (the caller closes what was made).
bool ParentCloneSources(const LaunchPlan& plan, int* trees, ChildFailure* failure);

// Parent side, prepared mode: the mounts a sandbox gets of its own, one per bind, proc and tmpfs op
// of plan.mounts, in order (`fds` has a slot for each; the caller closes them).
// The binds and tmpfs, which need nothing of the child (tmpfs belong to the sandbox's ids), into
// their slots; the proc slots are left untouched. False with `failure` set.
bool ParentMakeHostMounts(const LaunchPlan& plan, int* fds, ChildFailure* failure);
// A new tmpfs for `op`, owned by `uid`:`gid`, as a detached mount: its fd, or -errno.
long MakeTmpfs(const MountOp& op, unsigned uid, unsigned gid);
// The proc of the sandbox's PID namespace (found through its `pidfd`): a detached mount fd or
// -errno. Raw syscalls only: it also runs on the trampoline (launch_modes.cc).
long MakeProcMount(int pidfd);

// Child side (no allocation, raw syscalls).
// With the host identity, before the identity change: make mounts private; per-spawn mode: clone
// and restrict every bind source and create the new /proc into `trees` (kMaxBinds entries).
bool ChildCloneSources(const LaunchPlan& plan, int* trees, ChildFailure* failure);
// Pivot into the new root (the template's clone, or a fresh tmpfs, which needs the id maps) and
// detach the host tree.
bool ChildPivot(const LaunchPlan& plan, ChildFailure* failure);
// After the identity change (so created mount points belong to a mapped uid): mount points, binds,
// tmpfs, /proc, symlinks, then (per-spawn root only) the read-only root. `trees` holds the mounts
// of ChildCloneSources, or in prepared mode those the parent made, in op order.
bool ChildPopulateRoot(const LaunchPlan& plan, const int* trees, ChildFailure* failure);

}  // namespace warden

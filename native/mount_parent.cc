// Parent side, per launch: the mounts the parent makes for a sandbox (the bind sources' clones, as
// the sandbox's host identity; in prepared mode the tmpfs and /proc too), handed to the child.
#include <fcntl.h>
#include <linux/mount.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "mounts.h"
#include "mounts_internal.h"
#include "raw_syscall.h"

namespace warden {

SandboxFsIdentity::SandboxFsIdentity(uid_t uid, gid_t gid) {
  if (geteuid() != 0) return;  // an unprivileged host looks paths up as itself, the sandbox's host uid
  const int n = getgroups(0, nullptr);
  if (n > 0) {
    saved_groups_.resize(static_cast<size_t>(n));
    if (getgroups(n, saved_groups_.data()) != n) {
      error_ = -EAGAIN;
      return;
    }
  }
  saved_uid_ = static_cast<uid_t>(syscall(SYS_setfsuid, -1));  // -1 changes nothing, returns the current
  saved_gid_ = static_cast<gid_t>(syscall(SYS_setfsgid, -1));
  active_ = true;
  // The sandbox has no supplementary groups (the child drops them as root): neither has the lookup.
  if (syscall(SYS_setgroups, 0, nullptr) != 0) {
    error_ = -errno;
    return;  // the destructor restores
  }
  syscall(SYS_setfsgid, gid);
  syscall(SYS_setfsuid, uid);
  // setfsuid and setfsgid answer with the previous value even when they refuse: ask again.
  if (static_cast<uid_t>(syscall(SYS_setfsuid, -1)) != uid || static_cast<gid_t>(syscall(SYS_setfsgid, -1)) != gid) {
    error_ = -EPERM;
  }
}

SandboxFsIdentity::~SandboxFsIdentity() {
  if (!active_) return;
  syscall(SYS_setfsuid, saved_uid_);
  syscall(SYS_setfsgid, saved_gid_);
  const long r = syscall(SYS_setgroups, saved_groups_.size(), saved_groups_.data());
  // A thread left with another identity would make every later lookup of the host wrong: fail hard.
  if (r != 0 || static_cast<uid_t>(syscall(SYS_setfsuid, -1)) != saved_uid_ ||
      static_cast<gid_t>(syscall(SYS_setfsgid, -1)) != saved_gid_) {
    abort();
  }
}

namespace {

// Every bind source of `plan`, opened (O_PATH, no symlinks) as the sandbox's host identity, then
// cloned: into fds[slot] for the bind ops among the ops counted by `counts` (the slots of the other
// counted ops are left alone). False with `f` set.
// Binds marked host_access are opened with the host's own rights, before the switch: paths the host
// chose for its own use (the package the runner loads, the node binary), which may lie under a
// directory the sandbox's uid cannot search (a 0700 home or mkdtemp directory). Symlinks are refused
// for them all the same.
bool CloneSourcesAs(const LaunchPlan& plan, bool (*counts)(const MountOp&), int* fds, ChildFailure* f) {
  {
    int k = 0;
    for (const MountOp& op : plan.mounts) {
      if (!counts(op)) continue;
      const int slot = k++;
      if (op.kind != MountOpKind::kBind || !op.host_access) continue;
      const long r = OpenBindSource(op.source);
      if (r < 0) return Fail(f, Stage::kBindSource, r, op.logical_index);
      fds[slot] = static_cast<int>(r);
    }
  }
  {
    SandboxFsIdentity as(TmpfsOwnerUid(plan), TmpfsOwnerGid(plan));
    if (as.error() < 0) return Fail(f, Stage::kBindSource, as.error());
    int k = 0;
    for (const MountOp& op : plan.mounts) {
      if (!counts(op)) continue;
      const int slot = k++;
      if (op.kind != MountOpKind::kBind || op.host_access) continue;
      const long r = OpenBindSource(op.source);
      if (r < 0) return Fail(f, Stage::kBindSource, r, op.logical_index);
      fds[slot] = static_cast<int>(r);
    }
  }  // the host identity is back: the clones need none (open_tree of an fd checks no path)
  int k = 0;
  for (const MountOp& op : plan.mounts) {
    if (!counts(op)) continue;
    const int slot = k++;
    if (op.kind != MountOpKind::kBind) continue;
    Stage stage;
    const long tree = CloneTree(fds[slot], op.attr_set, &stage);
    close(fds[slot]);
    fds[slot] = tree < 0 ? -1 : static_cast<int>(tree);
    if (tree < 0) return Fail(f, stage, tree, op.logical_index);
  }
  return true;
}

bool IsParentMount(const MountOp& op) {
  return op.kind == MountOpKind::kBind || op.kind == MountOpKind::kProc || op.kind == MountOpKind::kTmpfs;
}
bool IsBind(const MountOp& op) { return op.kind == MountOpKind::kBind; }

}  // namespace

bool ParentCloneSources(const LaunchPlan& plan, int* trees, ChildFailure* f) {
  return CloneSourcesAs(plan, IsBind, trees, f);
}

bool ParentMakeHostMounts(const LaunchPlan& plan, int* fds, ChildFailure* f) {
  if (!CloneSourcesAs(plan, IsParentMount, fds, f)) return false;
  int k = 0;
  for (const MountOp& op : plan.mounts) {
    if (!IsParentMount(op)) continue;
    const int idx = op.logical_index;
    const int slot = k++;  // proc slots are not ours: the release fills them, maybe meanwhile
    long r = 0;
    if (op.kind == MountOpKind::kTmpfs) {
      // Owned by the sandbox's ids, as if the sandbox had mounted it.
      const unsigned uid = TmpfsOwnerUid(plan), gid = TmpfsOwnerGid(plan);
      r = plan.mount_set == nullptr ? -1 : plan.mount_set->TakeSpareTmpfs(&op - plan.mounts.data(), uid, gid);
      if (r < 0) r = MakeTmpfs(op, uid, gid);
      if (r < 0) return Fail(f, Stage::kTmpfs, r, idx);
      fds[slot] = static_cast<int>(r);
    }
  }
  return true;
}

long MakeTmpfs(const MountOp& op, unsigned uid, unsigned gid) {
  int fs = static_cast<int>(syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC));
  long r = fs;
  std::string options = op.data == nullptr ? "" : op.data;
  options += (options.empty() ? "" : ",") + std::string("uid=") + std::to_string(uid) + ",gid=" + std::to_string(gid);
  for (size_t pos = 0; r >= 0 && pos < options.size();) {
    size_t end = options.find(',', pos);
    if (end == std::string::npos) end = options.size();
    const std::string item = options.substr(pos, end - pos);
    const size_t eq = item.find('=');
    if (!item.empty()) {
      r = eq == std::string::npos
              ? syscall(SYS_fsconfig, fs, FSCONFIG_SET_FLAG, item.c_str(), nullptr, 0)
              : syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, item.substr(0, eq).c_str(),
                        item.substr(eq + 1).c_str(), 0);
    }
    pos = end + 1;
  }
  if (r >= 0) r = syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0);
  if (r >= 0) r = syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
  const int saved = errno;
  if (fs >= 0) close(fs);
  return r < 0 ? -saved : r;
}

long MakeProcMount(int pidfd) {
  // PIDFD_GET_PID_NAMESPACE: the namespace the sandbox's processes live in.
  long ns = Sys(SYS_ioctl, pidfd, _IO(0xFF, 5), 0);
  if (ns < 0) return ns;
  long fs = Sys(SYS_fsopen, "proc", FSOPEN_CLOEXEC);
  long r = fs;
  if (r >= 0) r = Sys(SYS_fsconfig, fs, FSCONFIG_SET_FD, "pidns", nullptr, ns);
  if (r >= 0) r = Sys(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0);
  if (r >= 0) r = Sys(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
  if (fs >= 0) Sys(SYS_close, fs);
  Sys(SYS_close, ns);
  return r;
}

}  // namespace warden

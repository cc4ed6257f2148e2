#include "mounts.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <set>

#include "raw_syscall.h"
#include "spawn_trace.h"

namespace warden {

namespace {

// Upper bound of strings per spec (parents + source + target + options), so `mount_strings` never
// reallocates while MountOps point into it.
constexpr size_t kStringsPerSpec = 64;

bool IsAbsoluteNormal(const std::string& p) {
  if (p.empty() || p[0] != '/') return false;
  if (p.find("//") != std::string::npos) return false;
  if (p.find("/../") != std::string::npos || p.find("/./") != std::string::npos) return false;
  if (p.size() >= 3 && p.compare(p.size() - 3, 3, "/..") == 0) return false;
  if (p.size() >= 2 && p.compare(p.size() - 2, 2, "/.") == 0) return false;
  return true;
}

class OpBuilder {
 public:
  explicit OpBuilder(LaunchPlan* plan) : plan_(plan) {}

  const char* Keep(std::string s) {
    plan_->mount_strings.push_back(std::move(s));
    return plan_->mount_strings.back().c_str();
  }

  // mkdir -p of every ancestor of `target` (not `target` itself).
  void Parents(const std::string& target, int index) {
    for (size_t pos = target.find('/', 1); pos != std::string::npos; pos = target.find('/', pos + 1)) {
      Dir(target.substr(0, pos), 0755, index);
    }
  }

  void Dir(const std::string& path, uint32_t mode, int index) {
    if (!made_.insert(path).second) return;
    plan_->mounts.push_back({MountOpKind::kMkdir, nullptr, Keep(path), nullptr, 0, mode, index});
  }

  void Touch(const std::string& path, int index) {
    if (!made_.insert(path).second) return;
    plan_->mounts.push_back({MountOpKind::kTouch, nullptr, Keep(path), nullptr, 0, 0, index});
  }

  void Add(MountOp op) { plan_->mounts.push_back(op); }

 private:
  LaunchPlan* plan_;
  std::set<std::string> made_;
};

}  // namespace

std::string BuildMountOps(const std::vector<MountSpec>& specs, LaunchPlan* plan) {
  plan->mounts.clear();
  plan->mount_strings.clear();
  // The root tmpfs belongs to the sandbox's ids: mount points are created after the identity
  // change, and the root is read-only once populated anyway.
  plan->root_options = "mode=0755,size=1m,uid=" + std::to_string(plan->uid) +
                       ",gid=" + std::to_string(plan->gid);
  plan->mount_strings.reserve(specs.size() * kStringsPerSpec + 8);
  OpBuilder b(plan);
  size_t binds = 0;
  for (size_t i = 0; i < specs.size(); i++) {
    const MountSpec& s = specs[i];
    if ((s.kind == MountSpec::Kind::kBind || s.kind == MountSpec::Kind::kProc) && ++binds > kMaxBinds) {
      return "mounts: at most " + std::to_string(kMaxBinds) + " bind and proc mounts";
    }
    const int index = static_cast<int>(i);
    const std::string where = "mounts[" + std::to_string(i) + "]";
    if (!IsAbsoluteNormal(s.target) || s.target == "/") {
      return where + ".target: '" + s.target + "' must be an absolute, normalized path other than /";
    }
    if (std::count(s.target.begin(), s.target.end(), '/') > static_cast<long>(kStringsPerSpec) - 8) {
      return where + ".target: '" + s.target + "' is nested too deeply";
    }
    b.Parents(s.target, index);
    switch (s.kind) {
      case MountSpec::Kind::kBind: {
        if (!IsAbsoluteNormal(s.source)) {
          return where + ".source: '" + s.source + "' must be an absolute, normalized path";
        }
        struct stat st;
        if (stat(s.source.c_str(), &st) != 0) {
          return where + ".source: cannot stat '" + s.source + "': " + strerror(errno) +
                 " (bind only paths that exist and that this process can reach)";
        }
        if (S_ISDIR(st.st_mode)) {
          b.Dir(s.target, 0755, index);
        } else {
          b.Touch(s.target, index);
        }
        uint64_t attrs = MOUNT_ATTR_NOSUID;
        if (s.device) {
          attrs |= MOUNT_ATTR_NOEXEC;
        } else {
          attrs |= MOUNT_ATTR_NODEV;
        }
        if (!s.writable) attrs |= MOUNT_ATTR_RDONLY;
        b.Add({MountOpKind::kBind, b.Keep(s.source), b.Keep(s.target), nullptr, attrs, 0,
               index});
        break;
      }
      case MountSpec::Kind::kTmpfs:
        b.Dir(s.target, 0755, index);
        b.Add({MountOpKind::kTmpfs, nullptr, b.Keep(s.target), b.Keep(s.options), 0, 0, index});
        break;
      case MountSpec::Kind::kProc:
        b.Dir(s.target, 0555, index);
        b.Add({MountOpKind::kProc, nullptr, b.Keep(s.target), nullptr, 0, 0, index});
        break;
      case MountSpec::Kind::kSymlink:
        b.Add({MountOpKind::kSymlink, b.Keep(s.source), b.Keep(s.target), nullptr, 0, 0, index});
        break;
      case MountSpec::Kind::kDir:
        b.Dir(s.target, s.mode, index);
        break;
    }
  }
  return "";
}

// ---- child side: no allocation, no errno, no libc beyond inline code ----

namespace {

bool Fail(ChildFailure* f, Stage stage, long ret, int index = -1) {
  f->stage = static_cast<uint32_t>(stage);
  f->error = static_cast<int32_t>(-ret);
  f->index = index;
  return false;
}

}  // namespace

bool ChildPrepareRoot(const LaunchPlan& plan, int* trees, ChildFailure* f) {
  long r;
  // Nothing we mount may propagate back to the host, and pivot_root refuses shared mounts.
  r = Sys(SYS_mount, nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr);
  if (r < 0) return Fail(f, Stage::kMountPrivate, r);
  SPAWN_TRACE(14, "c-private");

  // Clone every bind source now, while we still resolve host paths with the host identity, and
  // restrict each clone (read-only, nosuid, nodev, recursively) before it is attached anywhere.
  // The clones are detached trees held by fd: the host tree can go right after.
  int k = 0;
  for (size_t i = 0; i < plan.mounts.size(); i++) {
    const MountOp& op = plan.mounts[i];
    if (op.kind == MountOpKind::kProc) {
      // The kernel mounts a new proc only where a fully visible one exists in the mount namespace
      // (mount_too_revealing), so it is created now, detached, while the host's /proc is visible.
      long fs = Sys(SYS_fsopen, "proc", FSOPEN_CLOEXEC);
      if (fs < 0) return Fail(f, Stage::kProc, fs, op.logical_index);
      r = Sys(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0);
      if (r >= 0) {
        r = Sys(SYS_fsmount, fs, FSMOUNT_CLOEXEC,
                MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
      }
      Sys(SYS_close, fs);
      if (r < 0) return Fail(f, Stage::kProc, r, op.logical_index);
      trees[k++] = static_cast<int>(r);
      SPAWN_TRACE(0, "c-fsmount-proc");
      continue;
    }
    if (op.kind != MountOpKind::kBind) continue;
    r = Sys(SYS_open_tree, AT_FDCWD, op.source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (r < 0) return Fail(f, Stage::kBind, r, op.logical_index);
    trees[k] = static_cast<int>(r);
    SPAWN_TRACE(0, "c-open_tree");
    // mount_setattr applies to every submount too (a remount would miss them), and only ever adds
    // restrictions, so flags the kernel locked on the source stay as they are.
    struct mount_attr attr;
    __builtin_memset(&attr, 0, sizeof attr);
    attr.attr_set = op.attr_set;
    attr.propagation = MS_PRIVATE;
    r = Sys(SYS_mount_setattr, trees[k], "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr);
    if (r < 0) return Fail(f, Stage::kBindAttrs, r, op.logical_index);
    SPAWN_TRACE(0, "c-setattr");
    k++;
  }

  // The new root: a small tmpfs, pivoted into with pivot_root(".", "."), which stacks the old root
  // on top of the new one so that a lazy unmount of "." detaches the whole host tree.
  SPAWN_TRACE(15, "c-trees");
  const char* base = plan.root_base.c_str();
  r = Sys(SYS_mount, "tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, plan.root_options.c_str());
  if (r < 0) return Fail(f, Stage::kMountRoot, r);
  SPAWN_TRACE(16, "c-roottmpfs");
  r = Sys(SYS_chdir, base);
  if (r < 0) return Fail(f, Stage::kMountRoot, r);
  r = Sys(SYS_pivot_root, ".", ".");
  if (r < 0) return Fail(f, Stage::kPivotRoot, r);
  SPAWN_TRACE(17, "c-pivot");
  r = Sys(SYS_umount2, ".", MNT_DETACH);
  if (r < 0) return Fail(f, Stage::kDetachOldRoot, r);
  r = Sys(SYS_chdir, "/");
  if (r < 0) return Fail(f, Stage::kPivotRoot, r);
  return true;
}

bool ChildPopulateRoot(const LaunchPlan& plan, const int* trees, ChildFailure* f) {
  long r;
  int k = 0;
  for (size_t i = 0; i < plan.mounts.size(); i++) {
    const MountOp& op = plan.mounts[i];
    const int idx = op.logical_index;
    switch (op.kind) {
      case MountOpKind::kMkdir:
        r = Sys(SYS_mkdir, op.target, op.mode);
        if (r < 0 && r != -EEXIST) return Fail(f, Stage::kMkdir, r, idx);
        break;
      case MountOpKind::kTouch:
        r = Sys(SYS_open, op.target, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (r < 0 && r != -EEXIST) return Fail(f, Stage::kTouch, r, idx);
        if (r >= 0) Sys(SYS_close, r);
        break;
      case MountOpKind::kBind:
        r = Sys(SYS_move_mount, trees[k], "", AT_FDCWD, op.target, MOVE_MOUNT_F_EMPTY_PATH);
        if (r < 0) return Fail(f, Stage::kBind, r, idx);
        Sys(SYS_close, trees[k]);
        k++;
        break;
      case MountOpKind::kTmpfs:
        r = Sys(SYS_mount, "tmpfs", op.target, "tmpfs", MS_NOSUID | MS_NODEV, op.data);
        if (r < 0) return Fail(f, Stage::kTmpfs, r, idx);
        break;
      case MountOpKind::kProc:
        r = Sys(SYS_move_mount, trees[k], "", AT_FDCWD, op.target, MOVE_MOUNT_F_EMPTY_PATH);
        if (r < 0) return Fail(f, Stage::kProc, r, idx);
        Sys(SYS_close, trees[k]);
        k++;
        break;
      case MountOpKind::kSymlink:
        r = Sys(SYS_symlink, op.source, op.target);
        if (r < 0 && r != -EEXIST) return Fail(f, Stage::kSymlink, r, idx);
        break;
    }
#ifdef WARDEN_SPAWN_TRACE
    static const char* const kKindNames[] = {"c-mkdir", "c-touch", "c-bind", "c-tmpfs", "c-proc", "c-symlink"};
    SPAWN_TRACE(0, kKindNames[static_cast<int>(op.kind)]);
#endif
  }

  SPAWN_TRACE(22, "c-ops");
  // The root itself is read-only: the sandbox writes only where a writable mount says so.
  r = Sys(SYS_mount, nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
          nullptr);
  if (r < 0) return Fail(f, Stage::kRemountRoot, r);
  return true;
}

}  // namespace warden

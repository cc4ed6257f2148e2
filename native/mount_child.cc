// Child side of the mounts, between clone and execve (called from child.cc): make the mounts
// private, clone the bind sources (per-spawn mode), pivot into the new root, populate it.
// The rules of child.cc hold: raw syscalls only (no errno, no libc beyond inline code), no
// allocation, the plan only read; a failure is recorded in a ChildFailure for child.cc to report.
#include <fcntl.h>
#include <linux/mount.h>
#include <sys/mount.h>

#include "mounts.h"
#include "mounts_internal.h"
#include "raw_syscall.h"
#include "spawn_trace.h"

namespace warden {

bool ChildCloneSources(const LaunchPlan& plan, int* trees, ChildFailure* f) {
  long r;
  // Cloned from the template namespace: already private, and the parent makes the mounts.
  if (plan.root_namespace >= 0) return true;
  // Nothing we mount may propagate back to the host, and pivot_root refuses shared mounts.
  r = Sys(SYS_mount, nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr);
  if (r < 0) return Fail(f, Stage::kMountPrivate, r);
  SPAWN_TRACE(14, "c-private");
  if (plan.prepared()) return true;  // the parent makes the per-spawn mounts

  // Clone every bind source now, while we still see the host's tree, and restrict each clone
  // (read-only, nosuid, nodev, recursively) before it is attached anywhere. The clones are
  // detached trees held by fd: the host tree can go right after.
  int k = 0;
  int binds = 0;
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
    if (plan.parent_sources) {
      // A root host cloned them as the sandbox's host identity (we are still kuid 0 here).
      trees[k++] = plan.source_trees[binds++];
      continue;
    }
    // An unprivileged host: our identity is the sandbox's host identity already.
    long source = OpenBindSource(op.source);
    if (source < 0) return Fail(f, Stage::kBindSource, source, op.logical_index);
    Stage stage;
    r = CloneTree(static_cast<int>(source), op.attr_set, &stage);
    Sys(SYS_close, source);
    if (r < 0) return Fail(f, stage, r, op.logical_index);
    trees[k++] = static_cast<int>(r);
    SPAWN_TRACE(0, "c-open_tree");
  }

  SPAWN_TRACE(15, "c-trees");
  return true;
}

bool ChildPivot(const LaunchPlan& plan, ChildFailure* f) {
  long r;
  // The new root is pivoted into with pivot_root(".", "."), which stacks the old root on top of the
  // new one so that a lazy unmount of "." detaches the whole host tree.
  const char* base = plan.root_base.c_str();
  if (plan.root_template >= 0) {
    // One clone of the prepared tree: its read-only root, mount points and device binds at once.
    long root = Sys(SYS_open_tree, plan.root_template, "",
                    OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
    if (root < 0) return Fail(f, Stage::kMountRoot, root);
    r = Sys(SYS_move_mount, root, "", AT_FDCWD, base, MOVE_MOUNT_F_EMPTY_PATH);
    Sys(SYS_close, root);
    if (r < 0) return Fail(f, Stage::kMountRoot, r);
  } else {
    // A small tmpfs of the sandbox's ids (the option needs the id maps), populated and made
    // read-only by ChildPopulateRoot.
    r = Sys(SYS_mount, "tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, plan.root_options.c_str());
    if (r < 0) return Fail(f, Stage::kMountRoot, r);
  }
  SPAWN_TRACE(16, "c-root");
  r = Sys(SYS_chdir, base);
  if (r < 0) return Fail(f, Stage::kMountRoot, r);
  r = Sys(SYS_pivot_root, ".", ".");
  if (r < 0) return Fail(f, Stage::kPivotRoot, r);
  SPAWN_TRACE(17, "c-pivot");
  r = Sys(SYS_umount2, ".", MNT_DETACH);
  if (r < 0) return Fail(f, Stage::kDetachOldRoot, r);
  r = Sys(SYS_chdir, "/");
  if (r < 0) return Fail(f, Stage::kPivotRoot, r);
  SPAWN_TRACE(18, "c-detached");
  return true;
}

namespace {

// The directory holding `target` (absolute, normalized, not "/") beneath `root`, reached without
// following any symlink, into *dir (`root` itself for a top-level target), with the target's last
// component in *base. 0 or -errno.
long OpenParent(int root, const char* target, int* dir, const char** base) {
  char path[4096];
  long slash = 0;
  for (long i = 0; target[i] != '\0'; i++) {
    if (target[i] == '/') slash = i;
  }
  *base = target + slash + 1;
  *dir = root;
  if (slash == 0) return 0;
  if (slash >= static_cast<long>(sizeof path)) return -ENAMETOOLONG;
  __builtin_memcpy(path, target, slash);
  path[slash] = '\0';
  const long fd = OpenBeneath(root, path);
  if (fd < 0) return fd;
  *dir = static_cast<int>(fd);
  return 0;
}

// Moves the detached mount `tree` onto `target`, reached beneath `root` without symlinks; closes
// `tree`. On failure, *stage is kMountTarget (the target) or `stage_on_move`.
long MoveOnto(int root, int tree, const char* target, Stage stage_on_move, Stage* stage) {
  long to = OpenBeneath(root, target);
  *stage = Stage::kMountTarget;
  if (to < 0) return to;
  long r = Sys(SYS_move_mount, tree, "", to, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
  Sys(SYS_close, tree);
  *stage = stage_on_move;
  return r;
}

}  // namespace

bool ChildPopulateRoot(const LaunchPlan& plan, const int* trees, ChildFailure* f) {
  long r;
  int k = 0;
  // Targets are reached from the new root without following symlinks: a target under a writable
  // bind lies in a host directory that some sandbox may have filled with symlinks. Our working
  // directory is the new root in every mode (ChildPivot's chdir, or the setns into the template
  // namespace that we were cloned after), so it is the directory they are resolved beneath. The fds
  // of the targets are close-on-exec and left to execve: one system call less per mount.
  const int root = AT_FDCWD;
  for (size_t i = 0; i < plan.mounts.size(); i++) {
    const MountOp& op = plan.mounts[i];
    const int idx = op.logical_index;
    Stage stage = Stage::kNone;
    switch (op.kind) {
      case MountOpKind::kMkdir:
      case MountOpKind::kTouch:
      case MountOpKind::kSymlink: {
        const char* base;
        int dir;
        r = OpenParent(root, op.target, &dir, &base);
        stage = Stage::kMountTarget;
        if (r < 0) break;
        if (op.kind == MountOpKind::kMkdir) {
          r = Sys(SYS_mkdirat, dir, base, op.mode);
          stage = Stage::kMkdir;
        } else if (op.kind == MountOpKind::kTouch) {
          r = Sys(SYS_openat, dir, base, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
          if (r >= 0) r = Sys(SYS_close, r);
          stage = Stage::kTouch;
        } else {
          r = Sys(SYS_symlinkat, op.source, dir, base);
          stage = Stage::kSymlink;
        }
        if (r == -EEXIST) r = 0;
        break;
      }
      case MountOpKind::kBind:
        r = MoveOnto(root, trees[k++], op.target, Stage::kBind, &stage);
        break;
      case MountOpKind::kTmpfs:
        if (plan.prepared()) {
          r = MoveOnto(root, trees[k++], op.target, Stage::kTmpfs, &stage);
          break;
        }
        // mount(2) takes a path: the target is checked first. What could change it in between
        // is only a sandbox writing the same host directory, and the path resolves inside our root.
        r = OpenBeneath(root, op.target);
        stage = Stage::kMountTarget;
        if (r < 0) break;
        r = Sys(SYS_mount, "tmpfs", op.target, "tmpfs", MS_NOSUID | MS_NODEV, op.data);
        stage = Stage::kTmpfs;
        break;
      case MountOpKind::kProc:
        r = MoveOnto(root, trees[k++], op.target, Stage::kProc, &stage);
        break;
    }
    if (r < 0) return Fail(f, stage, r, idx);
#ifdef WARDEN_SPAWN_TRACE
    static const char* const kKindNames[] = {"c-mkdir", "c-touch", "c-bind", "c-tmpfs", "c-proc", "c-symlink"};
    SPAWN_TRACE(0, kKindNames[static_cast<int>(op.kind)]);
#endif
  }

  SPAWN_TRACE(22, "c-ops");
  if (plan.prepared()) return true;  // cloned read-only
  // The root itself is read-only: the sandbox writes only where a writable mount says so.
  r = Sys(SYS_mount, nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
          nullptr);
  if (r < 0) return Fail(f, Stage::kRemountRoot, r);
  return true;
}

}  // namespace warden

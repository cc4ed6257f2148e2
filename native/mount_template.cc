// Parent side, a root host: the template (a detached, read-only mount tree of everything a mount
// list's sandboxes share) and the template namespace (a mount namespace holding the template and
// nothing else, for the child to be cloned from). Built once per MountSet (mount_set.cc).
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "mounts.h"
#include "raw_syscall.h"

namespace warden {

namespace {

// mkdir/touch/symlink/device bind of one op inside the template `root`, resolving the op's parent
// directory as the sandbox will see it (symlinks stay inside the template, never reach the host).
bool TemplateOp(int root, const MountOp& op, std::string* why) {
  const std::string rel(op.target + 1);  // targets are absolute and normalized, never "/"
  const size_t slash = rel.rfind('/');
  const std::string base = slash == std::string::npos ? rel : rel.substr(slash + 1);
  int dir = root;
  if (slash != std::string::npos) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    dir = static_cast<int>(syscall(SYS_openat2, root, rel.substr(0, slash).c_str(), &how, sizeof how));
    if (dir < 0) {
      *why = std::string("openat2 ") + op.target + ": " + strerror(errno);
      return false;
    }
  }
  long r = 0;
  const char* what = "";
  switch (op.kind) {
    case MountOpKind::kMkdir:
      what = "mkdir";
      r = mkdirat(dir, base.c_str(), op.mode);
      if (r < 0 && errno == EEXIST) r = 0;
      break;
    case MountOpKind::kTouch:
      what = "touch";
      r = openat(dir, base.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
      if (r >= 0) r = close(static_cast<int>(r));
      break;
    case MountOpKind::kSymlink:
      what = "symlink";
      r = symlinkat(op.source, dir, base.c_str());
      if (r < 0 && errno == EEXIST) r = 0;
      break;
    case MountOpKind::kBind: {
      what = "bind";
      // The host's device nodes, which every sandbox may use: reached without symlinks all the same.
      long source = OpenBindSource(op.source);
      Stage stage;
      long tree = source < 0 ? source : CloneTree(static_cast<int>(source), op.attr_set, &stage);
      if (source >= 0) close(static_cast<int>(source));
      r = tree < 0 ? tree : syscall(SYS_move_mount, tree, "", dir, base.c_str(), MOVE_MOUNT_F_EMPTY_PATH);
      if (tree < 0) errno = static_cast<int>(-tree);
      if (tree >= 0) {
        int saved = errno;
        close(static_cast<int>(tree));
        errno = saved;
      }
      break;
    }
    case MountOpKind::kTmpfs:
    case MountOpKind::kProc:
      r = -1;
      errno = EINVAL;  // never part of a template: each sandbox has its own
      break;
  }
  int saved = errno;
  if (dir != root) close(dir);
  if (r < 0) {
    *why = std::string(what) + " " + op.target + ": " + strerror(saved);
    return false;
  }
  return true;
}

// Whether proc accepts pidns= (an nsfs fd of the PID namespace to show), tried once on our own.
bool ProcPidnsSupported() {
  static const bool supported = [] {
    int ns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
    int fs = static_cast<int>(syscall(SYS_fsopen, "proc", FSOPEN_CLOEXEC));
    bool ok = ns >= 0 && fs >= 0 && syscall(SYS_fsconfig, fs, FSCONFIG_SET_FD, "pidns", nullptr, ns) == 0;
    if (fs >= 0) close(fs);
    if (ns >= 0) close(ns);
    return ok;
  }();
  return supported;
}

// Is `path` at or beneath the mount point `mount`?
bool Beneath(const char* path, const char* mount) {
  const size_t n = strlen(mount);
  return strncmp(path, mount, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

}  // namespace

bool MountSet::BuildTemplate(std::string* why) {
  // Mounting outside our own user namespace needs root; an unprivileged host builds per spawn.
  if (geteuid() != 0) {
    *why = "the host is not root";
    return false;
  }
  // The parent makes each sandbox's /proc, for the sandbox's PID namespace: proc's pidns= (6.17).
  if (!ProcPidnsSupported()) {
    *why = "the kernel's proc has no pidns= option";
    return false;
  }
  // What the template can hold: mount points and symlinks, and device binds (the same device
  // whenever opened). Not what each sandbox must have for itself (/proc, tmpfs) nor the caller's
  // binds, which are resolved at every spawn as the host then sees them. Whatever lies beneath one
  // of those stays per spawn, in order.
  std::vector<const MountOp*> in_template;
  std::vector<const char*> own;  // targets of the per-spawn mounts so far
  spawn_ops_.clear();
  for (const MountOp& op : all_ops_) {
    bool beneath_own = false;
    for (const char* m : own) beneath_own = beneath_own || Beneath(op.target, m);
    const bool mount = op.kind == MountOpKind::kBind || op.kind == MountOpKind::kTmpfs ||
                       op.kind == MountOpKind::kProc;
    bool shared = !beneath_own && !mount;
    if (!beneath_own && op.kind == MountOpKind::kBind && op.device) {
      // A device bind over an earlier per-spawn mount would be stacked in the wrong order.
      shared = true;
      for (const char* m : own) shared = shared && !Beneath(m, op.target);
    }
    if (shared) {
      in_template.push_back(&op);
    } else {
      spawn_ops_.push_back(op);
      if (mount) own.push_back(op.target);
    }
  }

  int fs = static_cast<int>(syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC));
  if (fs < 0) {
    *why = std::string("fsopen tmpfs: ") + strerror(errno);
    return false;
  }
  long r = syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "mode", "0755", 0);
  if (r == 0) r = syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "size", "1m", 0);
  if (r == 0) r = syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0);
  if (r == 0) r = syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
  int saved = errno;
  close(fs);
  if (r < 0) {
    *why = std::string("tmpfs for the template: ") + strerror(saved);
    return false;
  }
  template_fd_ = static_cast<int>(r);
  for (const MountOp* op : in_template) {
    if (!TemplateOp(template_fd_, *op, why)) return false;  // e.g. a kernel without move_mount into detached trees
  }
  // Read-only before any sandbox sees it. Only the root: device binds keep their own flags.
  struct mount_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.attr_set = MOUNT_ATTR_RDONLY;
  if (syscall(SYS_mount_setattr, template_fd_.load(), "", AT_EMPTY_PATH, &attr, sizeof attr) != 0) {
    *why = std::string("read-only template: ") + strerror(errno);
    return false;
  }
  why->clear();
  return true;
}

namespace {

// The helper that makes the template namespace: cloned vfork-style (CLONE_VM | CLONE_VFORK, so the
// calling thread waits, and CLONE_FILES, so the fd it opens is ours) with its own fs_struct, which
// lets it unshare a mount namespace that no thread of the host ever enters. Raw syscalls only: it
// runs on the calling thread's TLS.
struct NamespaceBuild {
  int template_fd;
  int ns_fd = -1;
  long error = 0;  // -errno
  const char* step = "";
};

int NamespaceBuildMain(void* arg) {
  NamespaceBuild& b = *static_cast<NamespaceBuild*>(arg);
  long r;
#define WARDEN_STEP(call, name)  \
  if ((r = (call)) < 0) {        \
    b.error = r;                 \
    b.step = name;               \
    return 0;                    \
  }
  // A copy of the host's mount table, private so that nothing here propagates back.
  WARDEN_STEP(Sys(SYS_unshare, CLONE_NEWNS), "unshare");
  WARDEN_STEP(Sys(SYS_mount, nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), "mount private");
  WARDEN_STEP(Sys(SYS_open, "/proc/thread-self/ns/mnt", O_RDONLY | O_CLOEXEC), "open ns");
  b.ns_fd = static_cast<int>(r);
  // The template's clone stacked on "/", entered through its fd, made the root; the host tree
  // below is detached: the namespace holds the template and nothing else.
  WARDEN_STEP(Sys(SYS_open_tree, b.template_fd, "",
                  OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH), "open_tree");
  const int tree = static_cast<int>(r);
  WARDEN_STEP(Sys(SYS_move_mount, tree, "", AT_FDCWD, "/", MOVE_MOUNT_F_EMPTY_PATH), "move_mount");
  WARDEN_STEP(Sys(SYS_fchdir, tree), "fchdir");
  Sys(SYS_close, tree);
  WARDEN_STEP(Sys(SYS_pivot_root, ".", "."), "pivot_root");
  WARDEN_STEP(Sys(SYS_umount2, ".", MNT_DETACH), "umount");
#undef WARDEN_STEP
  return 0;
}

}  // namespace

bool MountSet::BuildNamespace(std::string* why) {
  NamespaceBuild build;
  build.template_fd = template_fd_;
  std::vector<char> stack(64 * 1024);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);  // no handler of the host may run on the helper
  pid_t pid = clone(NamespaceBuildMain, stack.data() + stack.size(), CLONE_VM | CLONE_VFORK | CLONE_FILES,
                    &build);
  int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) {
    *why = std::string("template namespace: clone: ") + strerror(clone_errno);
    return false;
  }
  siginfo_t info;
  while (waitid(P_PID, pid, &info, WEXITED | __WALL) < 0 && errno == EINTR) {
  }
  namespace_fd_ = build.ns_fd;
  if (build.error < 0) {
    *why = std::string("template namespace: ") + build.step + ": " + strerror(static_cast<int>(-build.error));
    return false;
  }
  why->clear();
  return true;
}

}  // namespace warden

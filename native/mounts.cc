#include "mounts.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <sys/mount.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/openat2.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <set>

#include "raw_syscall.h"
#include "spawn_trace.h"

namespace warden {

namespace {

// Upper bound of strings per spec (parents + source + target + options), so a MountSet's strings
// never reallocate while its MountOps point into them.
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
  OpBuilder(std::vector<std::string>* strings, std::vector<MountOp>* ops) : strings_(strings), ops_(ops) {}

  const char* Keep(std::string s) {
    strings_->push_back(std::move(s));
    return strings_->back().c_str();
  }

  // mkdir -p of every ancestor of `target` (not `target` itself).
  void Parents(const std::string& target, int index) {
    for (size_t pos = target.find('/', 1); pos != std::string::npos; pos = target.find('/', pos + 1)) {
      Dir(target.substr(0, pos), 0755, index);
    }
  }

  void Dir(const std::string& path, uint32_t mode, int index) {
    if (!made_.insert(path).second) return;
    ops_->push_back({MountOpKind::kMkdir, nullptr, Keep(path), nullptr, 0, mode, false, index, false});
  }

  void Touch(const std::string& path, int index) {
    if (!made_.insert(path).second) return;
    ops_->push_back({MountOpKind::kTouch, nullptr, Keep(path), nullptr, 0, 0, false, index, false});
  }

  void Add(MountOp op) { ops_->push_back(op); }

 private:
  std::vector<std::string>* strings_;
  std::vector<MountOp>* ops_;
  std::set<std::string> made_;
};

}  // namespace

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

// Records a failure (ret is -errno) for the parent to report.
bool Fail(ChildFailure* f, Stage stage, long ret, int index = -1) {
  f->stage = static_cast<uint32_t>(stage);
  f->error = static_cast<int32_t>(-ret);
  f->index = index;
  return false;
}

// The host ids that own a sandbox's tmpfs: the sandbox's ids, as the host sees them.
unsigned TmpfsOwnerUid(const LaunchPlan& plan) { return plan.user_ns ? plan.map_uid_outside : plan.uid; }
unsigned TmpfsOwnerGid(const LaunchPlan& plan) { return plan.user_ns ? plan.map_gid_outside : plan.gid; }

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

constexpr uint64_t kNoSymlinks = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

// The fallback of OpenResolved where openat2 is missing: one O_PATH | O_NOFOLLOW open per component
// of `path` (relative to `dir`, normalized: no "." or ".." and no empty component), each checked
// not to be a symlink (O_NOFOLLOW opens the link itself). Beneath `dir` by construction.
long OpenWalk(int dir, const char* path) {
  char name[256];
  long cur = Sys(SYS_fcntl, dir, F_DUPFD_CLOEXEC, 0);
  if (cur < 0) return cur;
  const char* p = path;
  while (*p == '/') p++;
  while (*p != '\0') {
    size_t n = 0;
    while (p[n] != '\0' && p[n] != '/') n++;
    // "." and ".." would step outside "beneath"; callers pass normalized paths, this makes sure.
    const bool dots = (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.');
    if (n >= sizeof name || dots) {
      Sys(SYS_close, cur);
      return dots ? -EINVAL : -ENAMETOOLONG;
    }
    __builtin_memcpy(name, p, n);
    name[n] = '\0';
    long next = Sys(SYS_openat, cur, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    Sys(SYS_close, cur);
    if (next < 0) return next;
    struct stat st;
    long r = Sys(SYS_fstat, next, &st);
    if (r == 0 && S_ISLNK(st.st_mode)) r = -ELOOP;
    if (r < 0) {
      Sys(SYS_close, next);
      return r;
    }
    cur = next;
    p += n;
    while (*p == '/') p++;
  }
  return cur;
}

// `path` relative to `dir` as an O_PATH fd, following no symlink (`resolve` adds RESOLVE_* flags
// to RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS), or -errno.
long OpenResolved(int dir, const char* path, uint64_t resolve) {
  struct open_how how;
  __builtin_memset(&how, 0, sizeof how);
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = kNoSymlinks | resolve;
  long fd = Sys(SYS_openat2, dir, path, &how, sizeof how);
  if (fd != -ENOSYS) return fd;
  if (dir != AT_FDCWD) return OpenWalk(dir, path);
  long root = Sys(SYS_open, path[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) return root;
  fd = OpenWalk(static_cast<int>(root), path);
  Sys(SYS_close, root);
  return fd;
}

}  // namespace

long OpenBindSource(const char* path) { return OpenResolved(AT_FDCWD, path, 0); }

long OpenBeneath(int root, const char* path) {
  while (*path == '/') path++;
  return OpenResolved(root, path, RESOLVE_BENEATH);
}

long CloneTree(int source, uint64_t attr_set, Stage* stage) {
  *stage = Stage::kBind;
  long tree = Sys(SYS_open_tree, source, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
  if (tree < 0) return tree;
  // mount_setattr applies to every submount too (a remount would miss them), and only ever adds
  // restrictions, so flags the kernel locked on the source stay as they are.
  struct mount_attr attr;
  __builtin_memset(&attr, 0, sizeof attr);
  attr.attr_set = attr_set;
  attr.propagation = MS_PRIVATE;
  long r = Sys(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr);
  if (r < 0) {
    Sys(SYS_close, tree);
    *stage = Stage::kBindAttrs;
    return r;
  }
  return tree;
}

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

MountSet::~MountSet() {
  CloseSpares();
  if (template_fd_ >= 0) close(template_fd_);
  if (namespace_fd_ >= 0) close(namespace_fd_);
}

void MountSet::DropNamespace() {
  // A set belongs to one JS environment (one thread), whose launches are synchronous.
  if (namespace_fd_ >= 0) close(namespace_fd_);
  namespace_fd_ = -1;
  no_template_reason_ = "the kernel refused to clone a sandbox from the template namespace";
}

std::string FreshRootOptions(uid_t uid, gid_t gid) {
  return "mode=0755,size=1m,uid=" + std::to_string(uid) + ",gid=" + std::to_string(gid);
}

void MountSet::DropTemplate() {
  // A set belongs to one JS environment (one thread), whose launches are synchronous.
  if (template_fd_ >= 0) close(template_fd_);
  template_fd_ = -1;
  no_template_reason_ = "the kernel refused to clone the template into the sandbox";
}

std::string MountSet::Build(const std::vector<MountSpec>& specs, bool allow_template) {
  all_ops_.clear();
  strings_.clear();
  strings_.reserve(specs.size() * kStringsPerSpec + 8);
  OpBuilder b(&strings_, &all_ops_);
  size_t binds = 0;
  for (size_t i = 0; i < specs.size(); i++) {
    const MountSpec& s = specs[i];
    if (s.kind != MountSpec::Kind::kSymlink && s.kind != MountSpec::Kind::kDir && ++binds > kMaxBinds) {
      return "mounts: at most " + std::to_string(kMaxBinds) + " bind, proc and tmpfs mounts";
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
        b.Add({MountOpKind::kBind, b.Keep(s.source), b.Keep(s.target), nullptr, attrs, 0, s.device,
               index, s.host_access});
        break;
      }
      case MountSpec::Kind::kTmpfs:
        b.Dir(s.target, 0755, index);
        b.Add({MountOpKind::kTmpfs, nullptr, b.Keep(s.target), b.Keep(s.options), 0, 0, false, index, false});
        break;
      case MountSpec::Kind::kProc:
        b.Dir(s.target, 0555, index);
        b.Add({MountOpKind::kProc, nullptr, b.Keep(s.target), nullptr, 0, 0, false, index, false});
        break;
      case MountSpec::Kind::kSymlink:
        b.Add({MountOpKind::kSymlink, b.Keep(s.source), b.Keep(s.target), nullptr, 0, 0, false, index, false});
        break;
      case MountSpec::Kind::kDir:
        b.Dir(s.target, s.mode, index);
        break;
    }
  }
  if (!allow_template) {
    no_template_reason_ = "the template was switched off";
  } else if (!BuildTemplate(&no_template_reason_)) {
    if (template_fd_ >= 0) close(template_fd_);
    template_fd_ = -1;
    spawn_ops_.clear();
  } else if (!BuildNamespace(&no_template_reason_)) {
    if (namespace_fd_ >= 0) close(namespace_fd_);
    namespace_fd_ = -1;
  }
  return "";
}

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
  if (syscall(SYS_mount_setattr, template_fd_, "", AT_EMPTY_PATH, &attr, sizeof attr) != 0) {
    *why = std::string("read-only template: ") + strerror(errno);
    return false;
  }
  why->clear();
  return true;
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

namespace {
// The set whose spares this thread keeps (see MountSet::RefillSpares). Weak: the set goes when
// its last holder lets go, and its spares with it.
thread_local std::weak_ptr<MountSet> t_spared_set;
}  // namespace

int MountSet::TakeSpareTmpfs(size_t op, unsigned uid, unsigned gid) {
  for (SpareTmpfs& s : spare_tmpfs_) {
    if (s.op == op && s.fd >= 0 && s.uid == uid && s.gid == gid) {
      const int fd = s.fd;
      s.fd = -1;
      return fd;
    }
  }
  return -1;
}

void MountSet::RefillSpares(const LaunchPlan& plan) {
  // A set belongs to one JS environment, so to one thread, whose launches are synchronous.
  const std::shared_ptr<MountSet> previous = t_spared_set.lock();
  if (previous.get() != this) {
    if (previous != nullptr) previous->CloseSpares();
    t_spared_set = plan.mount_set;
  }
  const unsigned uid = TmpfsOwnerUid(plan), gid = TmpfsOwnerGid(plan);
  for (size_t i = 0; i < plan.mounts.size(); i++) {
    if (plan.mounts[i].kind != MountOpKind::kTmpfs) continue;
    SpareTmpfs* spare = nullptr;
    for (SpareTmpfs& s : spare_tmpfs_) {
      if (s.op == i) spare = &s;
    }
    if (spare == nullptr) spare = &spare_tmpfs_.emplace_back(SpareTmpfs{i, 0, 0, -1});
    if (spare->fd >= 0 && spare->uid == uid && spare->gid == gid) continue;
    if (spare->fd >= 0) close(spare->fd);
    const long fd = MakeTmpfs(plan.mounts[i], uid, gid);
    *spare = SpareTmpfs{i, uid, gid, fd < 0 ? -1 : static_cast<int>(fd)};
  }
  if (spare_pair_[0] < 0 && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, spare_pair_) != 0) {
    spare_pair_[0] = spare_pair_[1] = -1;
  }
}

bool MountSet::TakeSpareSocketPair(int sv[2]) {
  if (spare_pair_[0] < 0) return false;
  sv[0] = spare_pair_[0];
  sv[1] = spare_pair_[1];
  spare_pair_[0] = spare_pair_[1] = -1;
  return true;
}

void MountSet::CloseSpares() {
  for (SpareTmpfs& s : spare_tmpfs_) {
    if (s.fd >= 0) close(s.fd);
  }
  spare_tmpfs_.clear();
  for (int& fd : spare_pair_) {
    if (fd >= 0) close(fd);
    fd = -1;
  }
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

// ---- child side: no allocation, no errno, no libc beyond inline code ----

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

// Reaching bind sources and mount targets without following a symlink (see mounts.h), and cloning
// a bind source into a detached, restricted tree. Raw syscalls, no allocation: the parent and the
// child between clone and execve both use them.
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "mounts.h"
#include "raw_syscall.h"

namespace warden {

namespace {

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

}  // namespace warden

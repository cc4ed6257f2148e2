// The mount set: the caller's mount list turned into the flat list of ops once (MountSet::Build),
// shared by every spawn of that list, and the fallback from one way of making the root to the next
// (DropNamespace, DropTemplate). The template itself is made in mount_template.cc, the spares in
// mount_spares.cc.
#include <linux/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "mounts.h"

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

MountSet::~MountSet() {
  CloseSpares();
  if (template_fd_ >= 0) close(template_fd_);
  if (namespace_fd_ >= 0) close(namespace_fd_);
}

void MountSet::DropNamespace() {
  // Launch thread only (launch_thread.h), so no launch of this set holds the fd meanwhile.
  const int fd = namespace_fd_.exchange(-1);
  if (fd >= 0) close(fd);
  std::lock_guard<std::mutex> lock(reason_mutex_);
  no_template_reason_ = "the kernel refused to clone a sandbox from the template namespace";
}

std::string MountSet::no_template_reason() const {
  std::lock_guard<std::mutex> lock(reason_mutex_);
  return no_template_reason_;
}

std::string FreshRootOptions(uid_t uid, gid_t gid) {
  return "mode=0755,size=1m,uid=" + std::to_string(uid) + ",gid=" + std::to_string(gid);
}

void MountSet::DropTemplate() {
  // Launch thread only (launch_thread.h), so no launch of this set holds the fd meanwhile.
  const int fd = template_fd_.exchange(-1);
  if (fd >= 0) close(fd);
  std::lock_guard<std::mutex> lock(reason_mutex_);
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

}  // namespace warden

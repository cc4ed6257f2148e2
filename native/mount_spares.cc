// Parent side, prepared mode: the spares a launch of a mount set makes for the next launch of the
// same set while its command runs (see MountSet::RefillSpares in mounts.h).
#include <sys/socket.h>
#include <unistd.h>

#include <memory>

#include "mounts.h"
#include "mounts_internal.h"

namespace warden {

namespace {
// The set whose spares the launch thread keeps (see MountSet::RefillSpares). Weak: the set goes when
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
  // Launch thread only (launch_thread.h): every launch of the process runs there, one at a time.
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

}  // namespace warden

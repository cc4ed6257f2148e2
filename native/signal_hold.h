// Every signal held off the calling thread for a scope, glibc's internal ones included.
#pragma once

#include <signal.h>
#include <sys/syscall.h>

#include <cstdint>

#include "raw_syscall.h"

namespace warden {

// The launch thread switches its own credentials for short spells (SwitchToOwner..RestoreIds
// around the clone; SandboxFsIdentity around the bind sources' lookups) with raw system calls,
// which change the calling thread only. glibc applies a set*id() or setgroups() of the host to
// every thread by signalling each (SIGSETXID) and waiting until all have made the same call; its
// pthread_sigmask and sigfillset leave that signal out, so within a spell the host's change would
// land on this thread, and the spell's end would then put back the ids saved before it: this
// thread would go on with other ids than the rest of the process (its old, maybe higher, rights
// after the host dropped them). Blocked with the raw system call, the signal waits for the end of
// the spell, and the host's change then lands on top of the restored ids; the host's set*id()
// waits that long (a clone, or a few path lookups). Nothing in a spell may wait for another
// thread of the host, which could be the one waiting in set*id().
//
// Also every other signal: no handler of the host may run on a thread whose ids are switched, nor
// in a CLONE_VM child that starts with this thread's mask (child.cc unblocks once it has reset
// every handler).
class HoldSignals {
 public:
  HoldSignals() {
    const uint64_t all = ~uint64_t{0};  // SIGKILL and SIGSTOP cannot be blocked; the kernel ignores them
    held_ = Sys(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old_, sizeof all) == 0;
  }
  ~HoldSignals() { End(); }
  // Lets them through again (what came meanwhile is delivered now); idempotent.
  void End() {
    if (held_) Sys(SYS_rt_sigprocmask, SIG_SETMASK, &old_, nullptr, sizeof old_);
    held_ = false;
  }
  HoldSignals(const HoldSignals&) = delete;
  HoldSignals& operator=(const HoldSignals&) = delete;

 private:
  uint64_t old_ = 0;
  bool held_ = false;
};

}  // namespace warden

// The spin primitives of the channel's waiting (channel_schedule.cc): a clock, a pause, and the
// Spin policy.
#pragma once

#include <sched.h>
#include <time.h>

#include <cstdint>

#include "channel.h"

namespace warden {
namespace channel {

inline int64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// How a waiting thread polls the ring. For the first kBusyNs it spins without a syscall (an answer
// usually takes a few microseconds); after that it gives up the CPU between polls. When the machine
// has more runnable threads than cores, the peer we wait for may be queued behind us on this very
// core, and spinning on would only delay it; sched_yield lets it run (and costs one cheap syscall
// when nothing else wants the core). A peer that last waited on our CPU is certainly not running:
// then we yield from the start (with both sides squeezed onto one core, spinning first cost each
// hop the whole busy phase: ~21 us round trips instead of ~3).
class Spin {
 public:
  static constexpr int64_t kBusyNs = 8 * 1000;
  explicit Spin(Endpoint* ep) { Reset(ep); }
  Spin() : start_(NowNs()) {}

  void Reset(Endpoint* ep) {
    start_ = NowNs();
    cpu_ = sched_getcpu();
    if (ep != nullptr && cpu_ >= 0) ep->PublishCpu(cpu_);
  }

  // One step of waiting; returns early once `ready()` says so. The clock is read once per step,
  // the ring polled between pauses, so an answer is seen within a few tens of nanoseconds.
  template <typename Ready>
  void Once(const Endpoint* ep, Ready ready) {
    const bool peer_here = ep != nullptr && cpu_ >= 0 && ep->PeerCpu() == cpu_;
    if (!peer_here && NowNs() - start_ < kBusyNs) {
      for (int i = 0; i < 16 && !ready(); ++i) CpuRelax();
    } else {
      sched_yield();
    }
  }

 private:
  int64_t start_;
  int cpu_ = -1;
};

}  // namespace channel
}  // namespace warden

// Optional spawn profiling: build with -DWARDEN_SPAWN_TRACE to timestamp each launch stage (parent
// and child, CLOCK_MONOTONIC); one line per sandbox is printed on stderr when the process exits.
// Off by default: the macros compile to nothing.
#pragma once

#include <cstdint>

#ifdef WARDEN_SPAWN_TRACE
#include <time.h>

#include "raw_syscall.h"

namespace warden {
constexpr int kTracePoints = 256;
struct SpawnTracePoint {
  uint64_t ns;
  const char* name;
};
// Appended to by the child through CLONE_VM (raw syscall, no libc) and by the parent; kept by the
// parent once the child has been reaped. One launch at a time is all profiling needs.
extern SpawnTracePoint g_spawn_trace[kTracePoints];
extern int g_spawn_trace_count;
inline void SpawnTrace(const char* name) {
  struct timespec ts;
  Sys(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
  int i = __atomic_fetch_add(&g_spawn_trace_count, 1, __ATOMIC_RELAXED);
  if (i < kTracePoints) {
    g_spawn_trace[i].ns = static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
    g_spawn_trace[i].name = name;
  }
}
void SpawnTraceDump();
}  // namespace warden
#define SPAWN_TRACE(point, name) ::warden::SpawnTrace(name)
#define SPAWN_TRACE_DUMP() ::warden::SpawnTraceDump()
#else
#define SPAWN_TRACE(point, name) ((void)0)
#define SPAWN_TRACE_DUMP() ((void)0)
#endif

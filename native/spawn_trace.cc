#include "spawn_trace.h"

#ifdef WARDEN_SPAWN_TRACE
#include <algorithm>
#include <cstdio>

namespace warden {
SpawnTracePoint g_spawn_trace[kTracePoints];
int g_spawn_trace_count;

// "spawn-trace t0=<ns> name:+us ..." in time order, relative to the first point; then clears the log.
void SpawnTraceDump() {
  const int n = std::min(g_spawn_trace_count, kTracePoints);
  std::sort(g_spawn_trace, g_spawn_trace + n,
            [](const SpawnTracePoint& a, const SpawnTracePoint& b) { return a.ns < b.ns; });
  const uint64_t t0 = n > 0 ? g_spawn_trace[0].ns : 0;
  fprintf(stderr, "spawn-trace t0=%llu", static_cast<unsigned long long>(t0));
  for (int i = 1; i < n; i++) {
    fprintf(stderr, " %s:%.1f", g_spawn_trace[i].name, (g_spawn_trace[i].ns - t0) / 1000.0);
  }
  fprintf(stderr, "\n");
  g_spawn_trace_count = 0;
}
}  // namespace warden
#endif

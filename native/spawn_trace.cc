#include "spawn_trace.h"

#ifdef WARDEN_SPAWN_TRACE
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace warden {
SpawnTracePoint g_spawn_trace[kTracePoints];
int g_spawn_trace_count;

namespace {
std::vector<std::vector<SpawnTracePoint>>* g_kept;

// At process exit, one line per sandbox: "spawn-trace t0=<ns> name:+us ..." in time order,
// relative to the first point. Printing then, not per sandbox, keeps the printing out of the times.
void PrintKept() {
  for (auto& trace : *g_kept) {
    std::sort(trace.begin(), trace.end(),
              [](const SpawnTracePoint& a, const SpawnTracePoint& b) { return a.ns < b.ns; });
    const uint64_t t0 = trace.empty() ? 0 : trace[0].ns;
    fprintf(stderr, "spawn-trace t0=%llu", static_cast<unsigned long long>(t0));
    for (size_t i = 1; i < trace.size(); i++) {
      fprintf(stderr, " %s:%.1f", trace[i].name, (trace[i].ns - t0) / 1000.0);
    }
    fprintf(stderr, "\n");
  }
}
}  // namespace

// Keeps the points of the sandbox just reaped and clears the log.
void SpawnTraceDump() {
  if (g_kept == nullptr) {
    g_kept = new std::vector<std::vector<SpawnTracePoint>>();
    atexit(PrintKept);
  }
  const int n = std::min(g_spawn_trace_count, kTracePoints);
  g_kept->emplace_back(g_spawn_trace, g_spawn_trace + n);
  g_spawn_trace_count = 0;
}
}  // namespace warden
#endif

// Registration functions, one per concern. Each lives in the file of its concern.
#pragma once
#include <napi.h>

namespace warden {

void InitLauncher(Napi::Env env, Napi::Object exports);  // launcher_binding.cc: spawn, kill
void InitProbe(Napi::Env env, Napi::Object exports);     // probe.cc: what `warden doctor` reports
void InitSeccomp(Napi::Env env, Napi::Object exports);   // seccomp_binding.cc: compileSeccomp, restrictSelf
void InitChannel(Napi::Env env, Napi::Object exports);   // channel_binding.cc: ChannelEndpoint
void InitMallocTuning(Napi::Env env, Napi::Object exports);  // malloc_tuning.cc: reuseLargeAllocations
void InitRunnerScheduling(Napi::Env env, Napi::Object exports);  // runner_scheduling.cc: setBatchScheduling

void InitCgroupEvents(Napi::Env env, Napi::Object exports);  // cgroup_events.cc: v1 eventfd notifications
void InitFileLock(Napi::Env env, Napi::Object exports);      // file_lock.cc: flock for the audit log
void InitNetDiag(Napi::Env env, Napi::Object exports);       // net_diag.cc: tcpStates of handed-in connections

}  // namespace warden

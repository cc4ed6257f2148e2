// Bindings only: each concern registers its own functions on `exports`.
#include <napi.h>

#include "bindings.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  warden::InitLauncher(env, exports);
  warden::InitProbe(env, exports);
  warden::InitSeccomp(env, exports);
  warden::InitCgroupEvents(env, exports);
  warden::InitChannel(env, exports);
  warden::InitMallocTuning(env, exports);
  warden::InitRunnerScheduling(env, exports);
  warden::InitFileLock(env, exports);
  warden::InitNetDiag(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(warden, Init)

// The scheduling class of a runner's event-loop thread (JS: setBatchScheduling(tid)), set by the
// host right after it starts the runner.
//
// Why: a parallel hook writes a call to each of many runners in a row, and each write wakes one.
// A woken task of the normal class preempts the task running on its core when no core is idle
// (the kernel's wake-up preemption), so on a busy machine the host's thread got back to its loop of
// writes only after each woken runner had run: the dispatch of one invoke was spread over the work
// of all its plugins, and its answers waited behind them. A SCHED_BATCH task never preempts on
// wake-up: it runs at once on an idle core, otherwise when the running task blocks or its slice
// ends. Same weight, so the same share of the cpu; nothing changes while a core is free (one plugin
// called at a time finds one). bench:fanout, 200 plugins on 2 cores, three interleaved pairs:
// +12 to +28% plugin calls/s, invoke p50 17 to 20% lower.
#include <errno.h>
#include <napi.h>
#include <sched.h>
#include <string.h>

#include <string>

#include "bindings.h"

namespace warden {
namespace {

Napi::Value SetBatchScheduling(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber() || info[0].As<Napi::Number>().Int64Value() <= 0) {
    Napi::TypeError::New(env, "setBatchScheduling(tid: a positive thread id)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const pid_t tid = static_cast<pid_t>(info[0].As<Napi::Number>().Int64Value());
  struct sched_param param;
  memset(&param, 0, sizeof param);
  if (sched_setscheduler(tid, SCHED_BATCH, &param) != 0) {
    const int err = errno;
    Napi::Error e = Napi::Error::New(env, std::string("sched_setscheduler(") + std::to_string(tid) + ", SCHED_BATCH): " + strerror(err));
    e.Set("code", Napi::String::New(env, "ERR_RUNNER_SCHEDULING"));
    e.Set("errno", Napi::Number::New(env, err));
    e.ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

}  // namespace

void InitRunnerScheduling(Napi::Env env, Napi::Object exports) {
  exports.Set("setBatchScheduling", Napi::Function::New(env, SetBatchScheduling, "setBatchScheduling"));
}

}  // namespace warden

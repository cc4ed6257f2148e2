#include "js_callback.h"

namespace warden {

namespace {

// There is no N-API call that only asks whether JS can run. napi_call_function checks that first
// (with no exception stored) and then refuses the null function without running anything.
bool Probe(napi_env env) {
  return napi_call_function(env, nullptr, nullptr, 0, nullptr, nullptr) == napi_invalid_arg;
}

}  // namespace

bool CanRunJs(napi_env env) {
  if (Probe(env)) return true;
  bool stored = false;
  napi_value error;
  if (napi_is_exception_pending(env, &stored) != napi_ok || !stored) return false;  // stopping
  if (napi_get_and_clear_last_exception(env, &error) != napi_ok || !Probe(env)) return false;
  napi_fatal_exception(env, error);
  return true;
}

void CallFromLoop(napi_env env, napi_async_context context, napi_value recv, napi_value fn, size_t argc,
                  const napi_value* argv) {
  if (!CanRunJs(env)) return;
  napi_value result;
  if (napi_make_callback(env, context, recv, fn, argc, argv, &result) == napi_ok) return;
  bool thrown = false;
  napi_value error;
  if (napi_is_exception_pending(env, &thrown) == napi_ok && thrown &&
      napi_get_and_clear_last_exception(env, &error) == napi_ok && Probe(env)) {
    napi_fatal_exception(env, error);
  }
}

}  // namespace warden

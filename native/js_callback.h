// Calling into JS from the addon's libuv callbacks (an exit, a finished launch, a kernel event, a
// channel message): the one place that knows what can go wrong there.
#pragma once

#include <node_api.h>

#include <cstddef>

namespace warden {

// Whether JS can run in `env` now. Not while it is stopping: a worker thread ending (process.exit()
// in it, or terminate()) stops JS first, then still runs the loop and the cleanup hooks, which may
// hand us a finished launch or an exit. Every N-API call that could run JS fails then, and
// node-addon-api turns an error it cannot throw into a fatal one: the whole host would abort.
// An exception left stored in `env` by some other failed call also blocks every such call, in a
// live environment: that one is reported here as uncaught (it is some callback's throw) and JS can
// run again.
bool CanRunJs(napi_env env);

// fn.call(recv, ...argv) as a callback of the event loop (`context` may be null): microtasks run
// after it, and a throw becomes an uncaught exception as from any callback. In an environment that
// cannot run JS, nothing happens. Never throws, never aborts.
void CallFromLoop(napi_env env, napi_async_context context, napi_value recv, napi_value fn, size_t argc,
                  const napi_value* argv);

}  // namespace warden

// Malloc tuning for the runner (JS: reuseLargeAllocations), the process inside a sandbox that
// exists to receive channel messages.
#include <malloc.h>
#include <napi.h>

#include "bindings.h"

namespace warden {
namespace {

// For the runner, whose process exists to receive messages: glibc serves allocations from 128 KiB
// up with a fresh mmap until it has seen one freed, so each large message (a 1 MiB Buffer) paid a
// page fault per 4 KiB page, 256 of them, three times the copy itself. Served from the heap and
// kept there after free, the next message reuses pages already mapped. These are the values glibc's
// own adaptive threshold reaches after a 32 MiB message; here they hold from the start. Not for the
// host: its allocator belongs to the application.
Napi::Value ReuseLargeAllocations(const Napi::CallbackInfo& info) {
  bool ok = true;
#ifdef M_MMAP_THRESHOLD
  ok = mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 64 << 20) == 1;
#endif
  return Napi::Boolean::New(info.Env(), ok);
}

}  // namespace

void InitMallocTuning(Napi::Env env, Napi::Object exports) {
  exports.Set("reuseLargeAllocations", Napi::Function::New(env, ReuseLargeAllocations, "reuseLargeAllocations"));
}

}  // namespace warden

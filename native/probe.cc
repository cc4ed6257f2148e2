#include "bindings.h"

namespace warden {

void InitProbe(Napi::Env env, Napi::Object exports) {}

}  // namespace warden

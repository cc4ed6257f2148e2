#include "bindings.h"

namespace warden {

void InitLauncher(Napi::Env env, Napi::Object exports) {}

}  // namespace warden

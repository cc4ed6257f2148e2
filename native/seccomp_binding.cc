#include "bindings.h"

namespace warden {

void InitSeccomp(Napi::Env env, Napi::Object exports) {}

}  // namespace warden

// Conversion of the plan object built by lib/sandbox/plan.ts into a LaunchPlan.
#pragma once

#include <napi.h>

#include <string>

#include "launch_plan.h"

namespace warden {

// Returns "" or a message naming the bad field. lib/sandbox validates user input first; this is
// the last line of defence against a malformed plan, not the user-facing validation.
std::string LaunchPlanFromJs(Napi::Object js, LaunchPlan* plan);

}  // namespace warden

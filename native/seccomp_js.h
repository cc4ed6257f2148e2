// JS policy object → SeccompPolicy. Separate from seccomp.h so that the compiler itself does not
// depend on Node-API (the C test driver and the launcher's child code include seccomp.h only).
#pragma once

#include <napi.h>

#include <string>

#include "seccomp.h"

namespace warden {

// Converts the policy object that lib/policy produces (see lib/policy/seccomp.ts for the shape):
//   { defaultAction, rules: [{ syscalls: string[], action, args?: [{ index, op, value?, mask?, low32? }] }] }
// where an action is 'allow' | 'violation' | 'kill' | { errno: 'EPERM' | number }.
// Returns "" on success, otherwise a message that starts with the field path ("seccomp.rules[3].syscalls[1]:
// unknown syscall 'foo'"). Never leaves a JS exception pending (a throwing getter becomes an error
// message). Does not compile: call CompileSeccomp next, whose errors name the same paths.
std::string SeccompPolicyFromJs(Napi::Value value, SeccompPolicy* out);

}  // namespace warden

// JS bindings of the seccomp compiler: compileSeccomp(policy, { stacked? }) -> Buffer of sock_filter (for tests,
// debugging and the runner's stacked filters; the launcher compiles in C++ through SeccompPolicyFromJs +
// CompileSeccomp), restrictSelf(program) (a process narrowing itself, used by the runner) and
// syscallName(nr). Errors are thrown as JS errors with code ERR_INVALID_OPTION and a `field`.
#include <cerrno>
#include <cstring>
#include <vector>

#include "bindings.h"
#include "seccomp_js.h"

namespace warden {

namespace {

constexpr char kRoot[] = "seccomp";

// Reads obj[key]; a throwing getter becomes an error message and the exception is cleared.
bool GetProp(Napi::Object obj, const char* key, const std::string& field, Napi::Value* out, std::string* err) {
  Napi::Env env = obj.Env();
  Napi::Value v = obj.Get(key);
  if (env.IsExceptionPending()) {
    env.GetAndClearPendingException();
    *err = field + ": reading the property threw";
    return false;
  }
  *out = v;
  return true;
}

bool GetIndex(Napi::Array arr, uint32_t i, const std::string& field, Napi::Value* out, std::string* err) {
  Napi::Env env = arr.Env();
  Napi::Value v = arr.Get(i);
  if (env.IsExceptionPending()) {
    env.GetAndClearPendingException();
    *err = field + ": reading the element threw";
    return false;
  }
  *out = v;
  return true;
}

std::string ParseAction(Napi::Value v, const std::string& field, SeccompAction* action, uint16_t* errno_value) {
  if (v.IsString()) {
    std::string s = v.As<Napi::String>().Utf8Value();
    if (s == "allow") *action = SeccompAction::kAllow;
    else if (s == "violation") *action = SeccompAction::kViolation;
    else if (s == "kill") *action = SeccompAction::kKill;
    else return field + ": unknown action '" + s + "'; use 'allow', 'violation', 'kill' or { errno: 'EPERM' }";
    return "";
  }
  if (v.IsObject() && !v.IsArray()) {
    std::string err;
    Napi::Value e;
    if (!GetProp(v.As<Napi::Object>(), "errno", field + ".errno", &e, &err)) return err;
    int value = -1;
    if (e.IsString()) {
      std::string name = e.As<Napi::String>().Utf8Value();
      value = ErrnoNumber(name.c_str());
      if (value < 0) return field + ".errno: unknown errno name '" + name + "'";
    } else if (e.IsNumber()) {
      double d = e.As<Napi::Number>().DoubleValue();
      if (!(d >= 1 && d <= 4095) || d != static_cast<double>(static_cast<int>(d)))
        return field + ".errno: must be an integer between 1 and 4095";
      value = static_cast<int>(d);
    } else {
      return field + ".errno: must be an errno name such as 'EPERM' or a number";
    }
    *action = SeccompAction::kErrno;
    *errno_value = static_cast<uint16_t>(value);
    return "";
  }
  return field + ": must be 'allow', 'violation', 'kill' or { errno: 'EPERM' }";
}

// A 64-bit argument value: a non-negative safe integer Number or a BigInt in 0..2^64-1.
std::string ParseU64(Napi::Value v, const std::string& field, uint64_t* out) {
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0 && d <= 9007199254740991.0) || d != static_cast<double>(static_cast<uint64_t>(d)))
      return field + ": must be a non-negative integer (use a BigInt above 2^53)";
    *out = static_cast<uint64_t>(d);
    return "";
  }
  if (v.IsBigInt()) {
    int sign = 0;
    size_t words = 2;
    uint64_t w[2] = {0, 0};
    napi_status st = napi_get_value_bigint_words(v.Env(), v, &sign, &words, w);
    if (st != napi_ok) return field + ": unreadable BigInt";
    // words comes back as the count the BigInt needs, which may exceed the capacity of w.
    if (sign != 0 || words > 2 || (words == 2 && w[1] != 0)) return field + ": must be between 0 and 2^64-1";
    *out = w[0];
    return "";
  }
  return field + ": must be a number or a BigInt";
}

std::string ParseArg(Napi::Value v, const std::string& field, SeccompArgCheck* a) {
  if (!v.IsObject() || v.IsArray()) return field + ": must be an object { index, op, value?, mask?, low32? }";
  Napi::Object o = v.As<Napi::Object>();
  std::string err;
  Napi::Value index, op, value, mask, low32;
  if (!GetProp(o, "index", field + ".index", &index, &err) || !GetProp(o, "op", field + ".op", &op, &err) ||
      !GetProp(o, "value", field + ".value", &value, &err) || !GetProp(o, "mask", field + ".mask", &mask, &err) ||
      !GetProp(o, "low32", field + ".low32", &low32, &err))
    return err;
  if (!index.IsNumber()) return field + ".index: must be an integer 0..5";
  double d = index.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 5) || d != static_cast<double>(static_cast<int>(d)))
    return field + ".index: must be an integer 0..5 (syscalls have six arguments)";
  a->index = static_cast<uint8_t>(d);
  if (!op.IsString()) return field + ".op: must be 'eq', 'ne', 'maskedEq' or 'anyBitsSet'";
  std::string ops = op.As<Napi::String>().Utf8Value();
  bool needs_value = true, needs_mask = false;
  if (ops == "eq") a->op = SeccompArgCheck::Op::kEq;
  else if (ops == "ne") a->op = SeccompArgCheck::Op::kNe;
  else if (ops == "maskedEq") a->op = SeccompArgCheck::Op::kMaskedEq, needs_mask = true;
  else if (ops == "anyBitsSet") a->op = SeccompArgCheck::Op::kAnyBitsSet, needs_mask = true, needs_value = false;
  else return field + ".op: unknown operator '" + ops + "'; use 'eq', 'ne', 'maskedEq' or 'anyBitsSet'";
  a->value = 0;
  a->mask = ~0ull;
  if (needs_value) {
    if (value.IsUndefined()) return field + ".value: required for op '" + ops + "'";
    if (std::string e = ParseU64(value, field + ".value", &a->value); !e.empty()) return e;
  } else if (!value.IsUndefined()) {
    return field + ".value: not used by op 'anyBitsSet' (put the bits in mask)";
  }
  if (needs_mask) {
    if (mask.IsUndefined()) return field + ".mask: required for op '" + ops + "'";
    if (std::string e = ParseU64(mask, field + ".mask", &a->mask); !e.empty()) return e;
  } else if (!mask.IsUndefined()) {
    return field + ".mask: only for ops 'maskedEq' and 'anyBitsSet'";
  }
  if (low32.IsUndefined()) a->low32 = false;
  else if (low32.IsBoolean()) a->low32 = low32.As<Napi::Boolean>().Value();
  else return field + ".low32: must be a boolean";
  return "";
}

Napi::Value ThrowInvalid(Napi::Env env, const std::string& msg) {
  // The message starts with the field path; expose it as `field` like InvalidOptionError does.
  std::string field = msg.substr(0, msg.find(':'));
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, "ERR_INVALID_OPTION"));
  e.Set("field", Napi::String::New(env, field));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

// compileSeccomp(policy, { stacked?: boolean })
Napi::Value CompileSeccompJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  SeccompPolicy policy;
  if (std::string err = SeccompPolicyFromJs(info[0], &policy); !err.empty()) return ThrowInvalid(env, err);
  bool stacked = false;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Value v = info[1].As<Napi::Object>().Get("stacked");
    if (env.IsExceptionPending()) return env.Undefined();
    stacked = v.ToBoolean().Value();
  }
  SeccompProgram program;
  if (std::string err = CompileSeccomp(policy, &program, stacked); !err.empty()) {
    // Rules carry their JS path; policy-level fields do not yet.
    return ThrowInvalid(env, err.rfind(kRoot, 0) == 0 ? err : std::string(kRoot) + "." + err);
  }
  Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::Copy(
      env, reinterpret_cast<const uint8_t*>(program.code.data()), program.code.size() * sizeof(sock_filter));
  buf.Set("needsListener", Napi::Boolean::New(env, program.needs_listener));
  return buf;
}

Napi::Value SyscallNameJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) return env.Null();
  const char* name = SyscallName(info[0].As<Napi::Number>().Int32Value());
  return name ? Napi::String::New(env, name) : env.Null();
}

Napi::Value SyscallNumberJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) return env.Null();
  int nr = SyscallNumber(info[0].As<Napi::String>().Utf8Value().c_str());
  return nr < 0 ? env.Null() : Napi::Number::New(env, nr);
}

// restrictSelf(program: Buffer from compileSeccomp(policy, { stacked: true })): adds the filter to
// this process, all threads. Throws an Error with code ERR_SECCOMP_RESTRICT and `errno` on failure.
Napi::Value RestrictSelfJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBuffer()) {
    Napi::TypeError::New(env, "restrictSelf(program: Buffer)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Buffer<uint8_t> buf = info[0].As<Napi::Buffer<uint8_t>>();
  const size_t n = buf.Length() / sizeof(sock_filter);
  std::string problem;
  long r = -EINVAL;
  if (buf.Length() % sizeof(sock_filter) != 0 || n == 0 || n > BPF_MAXINSNS) {
    problem = "the program is not a whole number of BPF instructions (1 to 4096)";
  } else {
    // Copied: the Buffer's memory is not guaranteed to be aligned for sock_filter.
    std::vector<sock_filter> code(n);
    std::memcpy(code.data(), buf.Data(), n * sizeof(sock_filter));
    r = RestrictSelf(code.data(), n);
    if (r > 0) problem = "thread " + std::to_string(r) + " runs under other filters and could not be synchronized";
    else if (r < 0) problem = std::string("seccomp(SECCOMP_SET_MODE_FILTER, TSYNC) failed: ") + std::strerror(static_cast<int>(-r));
  }
  if (problem.empty()) return env.Undefined();
  Napi::Error e = Napi::Error::New(env, "restrictSelf: " + problem);
  e.Set("code", Napi::String::New(env, "ERR_SECCOMP_RESTRICT"));
  e.Set("errno", Napi::Number::New(env, r < 0 ? static_cast<double>(-r) : 0));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

}  // namespace

std::string SeccompPolicyFromJs(Napi::Value value, SeccompPolicy* out) {
  const std::string root = kRoot;
  if (value.IsEmpty() || !value.IsObject() || value.IsArray())
    return root + ": must be an object { defaultAction, rules }";
  Napi::Object obj = value.As<Napi::Object>();
  std::string err;
  Napi::Value dflt, rules;
  if (!GetProp(obj, "defaultAction", root + ".defaultAction", &dflt, &err) ||
      !GetProp(obj, "rules", root + ".rules", &rules, &err))
    return err;
  SeccompPolicy policy;
  if (std::string e = ParseAction(dflt, root + ".defaultAction", &policy.default_action, &policy.default_errno);
      !e.empty())
    return e;
  if (!rules.IsUndefined()) {
    if (!rules.IsArray()) return root + ".rules: must be an array";
    Napi::Array arr = rules.As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); i++) {
      const std::string rf = root + ".rules[" + std::to_string(i) + "]";
      Napi::Value rv;
      if (!GetIndex(arr, i, rf, &rv, &err)) return err;
      if (!rv.IsObject() || rv.IsArray()) return rf + ": must be an object { syscalls, action, args? }";
      Napi::Object ro = rv.As<Napi::Object>();
      Napi::Value syscalls, action, args;
      if (!GetProp(ro, "syscalls", rf + ".syscalls", &syscalls, &err) ||
          !GetProp(ro, "action", rf + ".action", &action, &err) || !GetProp(ro, "args", rf + ".args", &args, &err))
        return err;
      SeccompRule proto;
      if (std::string e = ParseAction(action, rf + ".action", &proto.action, &proto.errno_value); !e.empty()) return e;
      if (!args.IsUndefined()) {
        if (!args.IsArray()) return rf + ".args: must be an array";
        Napi::Array aa = args.As<Napi::Array>();
        for (uint32_t j = 0; j < aa.Length(); j++) {
          const std::string af = rf + ".args[" + std::to_string(j) + "]";
          Napi::Value av;
          if (!GetIndex(aa, j, af, &av, &err)) return err;
          SeccompArgCheck check;
          if (std::string e = ParseArg(av, af, &check); !e.empty()) return e;
          proto.args.push_back(check);
        }
      }
      if (!syscalls.IsArray()) return rf + ".syscalls: must be an array of syscall names";
      Napi::Array sa = syscalls.As<Napi::Array>();
      if (sa.Length() == 0) return rf + ".syscalls: must name at least one syscall";
      for (uint32_t j = 0; j < sa.Length(); j++) {
        const std::string sf = rf + ".syscalls[" + std::to_string(j) + "]";
        Napi::Value sv;
        if (!GetIndex(sa, j, sf, &sv, &err)) return err;
        if (!sv.IsString()) return sf + ": must be a syscall name";
        SeccompRule rule = proto;
        rule.syscall = sv.As<Napi::String>().Utf8Value();
        rule.nr = SyscallNumber(rule.syscall.c_str());
        if (rule.nr < 0) return sf + ": unknown x86_64 syscall '" + rule.syscall + "'";
        rule.field = rf;
        rule.syscall_index = static_cast<int>(j);
        policy.rules.push_back(std::move(rule));
      }
    }
  }
  *out = std::move(policy);
  return "";
}

void InitSeccomp(Napi::Env env, Napi::Object exports) {
  exports.Set("compileSeccomp", Napi::Function::New(env, CompileSeccompJs, "compileSeccomp"));
  exports.Set("restrictSelf", Napi::Function::New(env, RestrictSelfJs, "restrictSelf"));
  exports.Set("syscallName", Napi::Function::New(env, SyscallNameJs, "syscallName"));
  exports.Set("syscallNumber", Napi::Function::New(env, SyscallNumberJs, "syscallNumber"));
}

}  // namespace warden

// flock(2) for files the host shares with other processes (the audit log): Node has no binding for
// it. Non-blocking only: a process that holds a lock forever must not stall the event loop, so the
// caller retries for a bounded time (lib/audit/log.ts).
#include <sys/file.h>

#include <cerrno>
#include <string>

#include "bindings.h"

namespace warden {

namespace {

// flockFile(fd, 'exclusive' | 'unlock') -> 0, or the errno (EWOULDBLOCK while another holds it).
Napi::Value FlockFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsNumber() || !info[1].IsString()) {
    Napi::TypeError::New(env, "flockFile(fd, 'exclusive' | 'unlock')").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  std::string mode = info[1].As<Napi::String>().Utf8Value();
  int op;
  if (mode == "exclusive") {
    op = LOCK_EX | LOCK_NB;
  } else if (mode == "unlock") {
    op = LOCK_UN;
  } else {
    Napi::TypeError::New(env, "flockFile: mode must be 'exclusive' or 'unlock'").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int rc;
  do {
    rc = flock(fd, op);
  } while (rc < 0 && errno == EINTR);
  return Napi::Number::New(env, rc < 0 ? errno : 0);
}

}  // namespace

void InitFileLock(Napi::Env env, Napi::Object exports) {
  exports.Set("flockFile", Napi::Function::New(env, FlockFile, "flockFile"));
}

}  // namespace warden

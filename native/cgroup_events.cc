// cgroup v1 event notification: an eventfd registered through `cgroup.event_control`.
//
// Why native: a v1 memory cgroup announces an OOM only this way. Its files never change under inotify
// (v1 has no `memory.events`), and Node cannot create an eventfd. Everything else about cgroups
// (limits, stats, v2 event files) is plain file I/O and stays in lib/limits.
//
// The eventfd is polled by libuv on the host's loop, so nothing blocks: each wake-up reads the 8-byte
// counter and calls back into JS with it. The kernel also signals the eventfd once when the cgroup is
// removed, so the JS side re-reads the counter file (`memory.oom_control`) to tell an OOM from a rmdir.
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <uv.h>

#include <cstdint>
#include <string>

#include "bindings.h"
#include "js_callback.h"

namespace warden {
namespace {

// RAII for a plain fd, so every early return closes what was opened.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

Napi::Error ErrnoError(Napi::Env env, const std::string& what, const std::string& path, int err) {
  Napi::Error e = Napi::Error::New(env, what + " " + path + ": " + strerror(err));
  e.Set("code", Napi::String::New(env, "ERR_LIMIT_UNAVAILABLE"));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("path", Napi::String::New(env, path));
  return e;
}

// One registration. Owned by the libuv handle once started: freed in the uv_close callback, never
// before, because libuv may still reference the uv_poll_t until then.
struct Watch {
  uv_poll_t poll;
  int efd = -1;
  napi_env env = nullptr;
  Napi::FunctionReference callback;
  bool closing = false;
};

void OnClosed(uv_handle_t* handle) {
  Watch* w = static_cast<Watch*>(handle->data);
  if (w->efd >= 0) ::close(w->efd);
  delete w;
}

void CloseWatch(Watch* w) {
  if (w->closing) return;
  w->closing = true;
  uv_poll_stop(&w->poll);
  // Drop the JS function now: after close() JS must not be called again.
  w->callback.Reset();
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), OnClosed);
}

void OnReadable(uv_poll_t* handle, int status, int events) {
  Watch* w = static_cast<Watch*>(handle->data);
  if (w->closing) return;
  uint64_t count = 0;
  bool ok = status == 0;
  if (ok) {
    ssize_t n = ::read(w->efd, &count, sizeof count);
    if (n != static_cast<ssize_t>(sizeof count)) {
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;  // spurious wake-up
      ok = false;
    }
  }
  Napi::Env env(w->env);
  Napi::HandleScope scope(env);
  Napi::FunctionReference& fn = w->callback;
  if (!fn.IsEmpty()) {
    // As any libuv-driven callback (async hooks, microtasks); a throwing listener is an uncaught
    // exception, not an error left stored in the environment, where it would block every later
    // call into JS (a sandbox's exit among them).
    napi_value arg = ok ? Napi::Number::New(env, static_cast<double>(count)) : env.Null();
    CallFromLoop(env, nullptr, env.Global(), fn.Value(), 1, &arg);
  }
  if (!ok) CloseWatch(w);
}

// What the JS handle owns: the watch until close(). Freed by the handle's finalizer, which also closes a
// forgotten watch so it cannot leak the eventfd (finalizers run on the JS thread; uv_close is safe).
struct Owner {
  Watch* watch = nullptr;
};

Napi::Value CloseFromJs(const Napi::CallbackInfo& info) {
  Owner* owner = static_cast<Owner*>(info.Data());
  if (owner->watch != nullptr) CloseWatch(owner->watch);
  owner->watch = nullptr;
  return info.Env().Undefined();
}

// watchCgroupEvent(dir, file, args, callback) → { close() }
// Registers `<efd> <fd of dir/file> <args>` in dir/cgroup.event_control. The callback receives the
// eventfd counter (number) on each wake-up, or null once on a read error (the watch is then closed).
Napi::Value WatchCgroupEvent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsString() || !info[2].IsString() ||
      !info[3].IsFunction()) {
    Napi::TypeError::New(env, "watchCgroupEvent(dir: string, file: string, args: string, cb: function)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string dir = info[0].As<Napi::String>();
  std::string file = dir + "/" + info[1].As<Napi::String>().Utf8Value();
  std::string args = info[2].As<Napi::String>();
  std::string control = dir + "/cgroup.event_control";

  Fd target(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (target.get() < 0) {
    ErrnoError(env, "open", file, errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Fd efd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (efd.get() < 0) {
    ErrnoError(env, "eventfd for", file, errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Fd ctl(::open(control.c_str(), O_WRONLY | O_CLOEXEC));
  if (ctl.get() < 0) {
    ErrnoError(env, "open", control, errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string line = std::to_string(efd.get()) + " " + std::to_string(target.get());
  if (!args.empty()) line += " " + args;
  if (::write(ctl.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    ErrnoError(env, "register event in", control, errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // The kernel holds its own references to the eventfd and the target file from here on; the target
  // fd and the control fd can be closed (RAII does it).

  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    Napi::Error::New(env, "no libuv loop").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Watch* w = new Watch();
  w->env = env;
  w->efd = efd.release();
  w->callback = Napi::Persistent(info[3].As<Napi::Function>());
  w->poll.data = w;
  int rc = uv_poll_init(loop, &w->poll, w->efd);
  if (rc != 0) {
    ::close(w->efd);
    delete w;
    Napi::Error::New(env, std::string("uv_poll_init: ") + uv_strerror(rc)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  rc = uv_poll_start(&w->poll, UV_READABLE, OnReadable);
  if (rc != 0) {
    CloseWatch(w);
    Napi::Error::New(env, std::string("uv_poll_start: ") + uv_strerror(rc)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // A watch alone must not keep the host alive: the sandbox's exit watch does that while it runs.
  uv_unref(reinterpret_cast<uv_handle_t*>(&w->poll));

  Owner* owner = new Owner{w};
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("fd", Napi::Number::New(env, w->efd));
  handle.Set("close", Napi::Function::New(env, CloseFromJs, "close", owner));
  handle.AddFinalizer(
      [](Napi::Env, Owner* o) {
        if (o->watch != nullptr) CloseWatch(o->watch);
        delete o;
      },
      owner);
  return handle;
}

}  // namespace

void InitCgroupEvents(Napi::Env env, Napi::Object exports) {
  exports.Set("watchCgroupEvent", Napi::Function::New(env, WatchCgroupEvent, "watchCgroupEvent"));
}

}  // namespace warden

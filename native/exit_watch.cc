#include "exit_watch.h"

#include <linux/seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "js_callback.h"
#include "launch_options.h"
#include "launch_thread.h"
#include "launcher.h"
#include "net_intercept.h"
#include "seccomp.h"
#include "spawn_trace.h"

namespace warden {

namespace {
constexpr idtype_t kIdPidfd = static_cast<idtype_t>(3);

// What the host made for a sandbox before its launch (plan.teardown: the host's ends of its pipes,
// its cgroup directories), undone here when its JS environment ends before JS could undo it.
struct HostLeftovers {
  std::vector<int> fds;
  std::vector<std::string> dirs;  // in the order made: removed in reverse
};

// Kills every task left in a sandbox's cgroups: without a PID namespace, what its first process
// started and left running (a daemon in a session of its own) outlives that process. cgroup.kill
// where there is one (cgroup2 from Linux 5.14, the hybrid hosts' controller-less hierarchy too),
// else SIGKILL to each listed process, for a few rounds (racy against a fork loop, which pids.max
// bounds; lib/limits/kill.ts freezes first, which this rare path at a worker's end does without).
void KillTasks(const std::vector<std::string>& dirs) {
  for (const std::string& dir : dirs) {
    const int fd = open((dir + "/cgroup.kill").c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) continue;
    const bool killed = write(fd, "1", 1) == 1;
    close(fd);
    if (killed) return;
  }
  if (dirs.empty()) return;
  const std::string procs = dirs.front() + "/cgroup.procs";
  for (int round = 0; round < 50; round++) {
    const int fd = open(procs.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    std::string text;
    char buf[4096];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
    close(fd);
    int listed = 0;
    for (size_t at = 0; at < text.size();) {
      const size_t end = text.find('\n', at);
      const long pid = strtol(text.c_str() + at, nullptr, 10);
      if (pid > 0) {
        kill(static_cast<pid_t>(pid), SIGKILL);
        listed++;
      }
      at = end == std::string::npos ? text.size() : end + 1;
    }
    if (listed == 0) return;
    usleep(1000);
  }
}

// Empties the sandbox's cgroups and removes them, retrying rmdir briefly while the kernel still
// counts tasks that were just killed.
void RemoveDirs(std::vector<std::string>* dirs) {
  KillTasks(*dirs);
  for (auto it = dirs->rbegin(); it != dirs->rend(); ++it) {
    for (int wait_us = 500; rmdir(it->c_str()) != 0 && errno == EBUSY && wait_us <= 64000; wait_us *= 2) {
      usleep(wait_us);
    }
  }
  dirs->clear();
}

void Release(HostLeftovers* l) {
  for (int fd : l->fds) close(fd);
  l->fds.clear();
  RemoveDirs(&l->dirs);
}

// plan.teardown = { fds: number[], dirs: string[] } (optional). "" or what is wrong with it.
std::string LeftoversFromJs(Napi::Object plan, HostLeftovers* out) {
  Napi::Value t = plan.Get("teardown");
  if (t.IsUndefined() || t.IsNull()) return "";
  if (!t.IsObject()) return "teardown must be { fds, dirs }";
  Napi::Value fv = t.As<Napi::Object>().Get("fds");
  Napi::Value dv = t.As<Napi::Object>().Get("dirs");
  if (!fv.IsArray() || !dv.IsArray()) return "teardown must be { fds: number[], dirs: string[] }";
  Napi::Array fa = fv.As<Napi::Array>();
  Napi::Array da = dv.As<Napi::Array>();
  if (fa.Length() > 16 || da.Length() > 16) return "teardown: at most 16 fds and 16 dirs";
  for (uint32_t i = 0; i < fa.Length(); i++) {
    Napi::Value v = fa.Get(i);
    if (!v.IsNumber()) return "teardown.fds[" + std::to_string(i) + "] must be an fd";
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0 && d <= 1 << 20) || d != static_cast<int>(d)) return "teardown.fds[" + std::to_string(i) + "] must be an fd";
    out->fds.push_back(static_cast<int>(d));
  }
  for (uint32_t i = 0; i < da.Length(); i++) {
    Napi::Value v = da.Get(i);
    if (!v.IsString()) return "teardown.dirs[" + std::to_string(i) + "] must be a path";
    std::string dir = v.As<Napi::String>().Utf8Value();
    if (dir.empty() || dir[0] != '/' || dir.find('\0') != std::string::npos) {
      return "teardown.dirs[" + std::to_string(i) + "] must be an absolute path";
    }
    out->dirs.push_back(std::move(dir));
  }
  return "";
}

}  // namespace

// A uv_poll handle outlives the JS object while libuv closes it, so it is allocated on its own.
struct SandboxProcess::Poll {
  uv_poll_t handle;
  SandboxProcess* owner;

  static Poll* Start(uv_loop_t* loop, int fd, SandboxProcess* owner, uv_poll_cb cb) {
    Poll* p = new Poll();
    p->owner = owner;
    p->handle.data = p;
    if (uv_poll_init(loop, &p->handle, fd) != 0) {
      delete p;
      return nullptr;
    }
    uv_poll_start(&p->handle, UV_READABLE | UV_DISCONNECT, cb);
    return p;
  }

  static void Close(Poll* p) {
    if (p == nullptr) return;
    p->owner = nullptr;
    uv_poll_stop(&p->handle);
    uv_close(reinterpret_cast<uv_handle_t*>(&p->handle),
             [](uv_handle_t* h) { delete static_cast<Poll*>(h->data); });
  }
};

Napi::Function SandboxProcess::Define(Napi::Env env) {
  return DefineClass(env, "SandboxProcess",
                     {InstanceMethod("kill", &SandboxProcess::Kill),
                      InstanceMethod("unref", &SandboxProcess::Unref),
                      InstanceMethod("ref", &SandboxProcess::Ref),
                      InstanceMethod("interceptNetwork", &SandboxProcess::InterceptNetwork),
                      InstanceMethod("replyDns", &SandboxProcess::ReplyDns),
                      InstanceMethod("netQueuePeak", &SandboxProcess::NetQueuePeak),
                      InstanceMethod("forgetTeardown", &SandboxProcess::ForgetTeardown),
                      InstanceAccessor("pid", &SandboxProcess::GetPid, nullptr)});
}

// A launch running on the launch thread (launch_thread.h) for an asynchronous spawn. Made and
// finished on the JS thread; the launch thread only fills `job` and hands it back through `tsfn`.
//
// Teardown of the JS environment (a worker ending) frees the threadsafe function whatever its
// count of threads, so the launch thread may touch it only while holding `mutex` with `env_gone`
// false: the environment's cleanup hook (EnvGone, registered after the function, so it runs
// before the function's own) sets that flag under the same mutex.
struct SandboxProcess::AsyncLaunch {
  LaunchJob job;
  HostLeftovers leftovers;  // released when nobody takes the launch (Abandon)
  SandboxProcess* owner = nullptr;
  Napi::FunctionReference on_launched;
  napi_threadsafe_function tsfn = nullptr;
  std::mutex mutex;
  bool env_gone = false;  // under mutex
};

namespace {

Napi::Error SetupError(Napi::Env env, const LaunchError& error) {
  Napi::Error e = Napi::Error::New(env, std::string("sandbox setup failed at stage ") + StageName(error.stage));
  e.Set("code", Napi::String::New(env, "ERR_SANDBOX_SETUP"));
  e.Set("stage", Napi::String::New(env, StageName(error.stage)));
  e.Set("errno", Napi::Number::New(env, error.error));
  e.Set("index", Napi::Number::New(env, error.index));
  e.Set("detail", Napi::String::New(env, error.detail));
  return e;
}

// Nobody will take this launch's sandbox (its JS environment is being torn down): it must not
// run on, and what the host made for it goes. Any thread, once the launch thread is done with `a`;
// the JS reference is left to the environment's teardown.
void Abandon(SandboxProcess::AsyncLaunch* a) {
  if (a->job.launched) {
    KillAndReap(a->job.result.pidfd);
    close(a->job.result.pidfd);
    if (a->job.result.listener >= 0) close(a->job.result.listener);
  }
  Release(&a->leftovers);
  a->on_launched.SuppressDestruct();
  delete a;
}

void EnvGone(void* arg) {
  SandboxProcess::AsyncLaunch* a = static_cast<SandboxProcess::AsyncLaunch*>(arg);
  a->job.cancelled.store(true, std::memory_order_release);  // not started yet: it never will be
  std::lock_guard<std::mutex> lock(a->mutex);
  a->env_gone = true;  // the launch thread, or the function's queue being emptied, frees `a`
}

}  // namespace

// new SandboxProcess(plan, onExit(code, signal), onViolation({ syscall, nr, pid }) [, onLaunched(error)])
// Without onLaunched: launches before returning (the JS thread waits for the launch thread); a
// setup failure throws an Error carrying stage, errno, index, detail. With it: returns at once,
// and onLaunched(null) or onLaunched(that Error) follows on a later turn of the event loop.
SandboxProcess::SandboxProcess(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<SandboxProcess>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsObject() || !info[1].IsFunction() || !info[2].IsFunction() ||
      (info.Length() > 3 && !info[3].IsFunction() && !info[3].IsUndefined())) {
    Napi::TypeError::New(env, "SandboxProcess(plan, onExit, onViolation, onLaunched?)").ThrowAsJavaScriptException();
    return;
  }
  const bool async = info.Length() > 3 && info[3].IsFunction();
  SPAWN_TRACE(0, "n-start");
  AsyncLaunch* pending = async ? new AsyncLaunch() : nullptr;
  LaunchPlan sync_plan;
  LaunchPlan* plan = async ? &pending->job.plan : &sync_plan;
  std::string problem = LaunchPlanFromJs(info[0].As<Napi::Object>(), plan);
  HostLeftovers sync_leftovers;
  if (problem.empty()) problem = LeftoversFromJs(info[0].As<Napi::Object>(), async ? &pending->leftovers : &sync_leftovers);
  if (!problem.empty()) {
    delete pending;
    Napi::Error e = Napi::TypeError::New(env, problem);
    e.Set("code", Napi::String::New(env, "ERR_INVALID_OPTION"));
    e.ThrowAsJavaScriptException();
    return;
  }
  SPAWN_TRACE(1, "p-plan");
  on_exit_ = Napi::Persistent(info[1].As<Napi::Function>());
  on_violation_ = Napi::Persistent(info[2].As<Napi::Function>());

  if (!async) {
    LaunchResult result;
    LaunchError error;
    if (!LaunchAndWait(plan, &result, &error)) {
      SetupError(env, error).ThrowAsJavaScriptException();
      return;
    }
    Adopt(result);
    leftover_dirs_ = std::move(sync_leftovers.dirs);  // the fds are JS's to close from here
    // Keep the JS object alive while the process runs: the callbacks refer to it.
    Napi::ObjectWrap<SandboxProcess>::Ref();
    return;
  }

  pending->owner = this;
  pending->on_launched = Napi::Persistent(info[3].As<Napi::Function>());
  pending->job.context = pending;
  pending->job.done = [](LaunchJob* job) {
    // Launch thread. FinishLaunch takes the mutex before it frees `a`.
    AsyncLaunch* a = static_cast<AsyncLaunch*>(job->context);
    std::unique_lock<std::mutex> lock(a->mutex);
    if (!a->env_gone && napi_call_threadsafe_function(a->tsfn, a, napi_tsfn_blocking) == napi_ok) {
      napi_release_threadsafe_function(a->tsfn, napi_tsfn_release);
      return;
    }
    lock.unlock();
    Abandon(a);  // nobody will take it (the function, if not yet freed, goes with the environment)
  };
  Napi::String name = Napi::String::New(env, "warden.launch");
  napi_status status = napi_create_threadsafe_function(
      env, nullptr, nullptr, name, 0, 1, nullptr, nullptr, nullptr,
      [](napi_env env, napi_value, void*, void* data) {
        AsyncLaunch* a = static_cast<AsyncLaunch*>(data);
        if (env == nullptr) {
          Abandon(a);  // the environment is going away
          return;
        }
        a->owner->FinishLaunch(a);
      },
      &pending->tsfn);
  if (status == napi_ok) status = napi_add_env_cleanup_hook(env, EnvGone, pending);
  // The launch runs later, on another thread, by when the caller may have closed its fds and the
  // host reused their numbers for other files (a worker that ends closes all of its own): the
  // launch takes copies of its own now, so a sandbox can only ever get the files it was given.
  int err = status == napi_ok ? TakeOwnFds(&pending->job) : 0;
  const char* failed = status != napi_ok ? "napi_create_threadsafe_function"
                       : err != 0        ? "duplicating the fds the sandbox is given"
                                         : nullptr;
  if (failed == nullptr && !SubmitLaunch(&pending->job, &err)) failed = "starting the launch thread";
  if (failed != nullptr) {
    if (pending->tsfn != nullptr) napi_release_threadsafe_function(pending->tsfn, napi_tsfn_abort);
    napi_remove_env_cleanup_hook(env, EnvGone, pending);
    CloseOwnFds(&pending->job);
    delete pending;  // its leftovers are still the caller's: it fails the launch and undoes them
    LaunchError error;
    // napi_status is not an errno: EAGAIN names the case we know (the environment refuses new work).
    ParentFail(&error, Stage::kClone, err != 0 ? err : EAGAIN, failed);
    SetupError(env, error).ThrowAsJavaScriptException();
    return;
  }
  // Alive while launching (the launch thread will come back to it) and then while it runs.
  Napi::ObjectWrap<SandboxProcess>::Ref();
}

// JS thread: the launch thread is done with `a`.
void SandboxProcess::FinishLaunch(AsyncLaunch* a) {
  Napi::Env env = env_;
  napi_remove_env_cleanup_hook(env, EnvGone, a);
  { std::lock_guard<std::mutex> wait_for_launch_thread(a->mutex); }  // it may still hold it
  if (!CanRunJs(env)) {
    Abandon(a);  // the environment is stopping: nobody will take the sandbox
    return;
  }
  Napi::HandleScope scope(env);
  // Held here: a failure drops the object's own reference below, and Deliver calls on it.
  Napi::Object self = Value();
  (void)self;
  Napi::FunctionReference on_launched = std::move(a->on_launched);
  Napi::Value outcome = env.Null();
  if (a->job.launched) {
    Adopt(a->job.result);
    leftover_dirs_ = std::move(a->leftovers.dirs);  // the fds are JS's to close from here
  } else {
    outcome = SetupError(env, a->job.error).Value();  // JS undoes the leftovers
    Napi::ObjectWrap<SandboxProcess>::Unref();
  }
  delete a;
  Deliver(on_launched, {outcome});
}

// The launched process is this object's: its pidfd and listener watched from the event loop.
void SandboxProcess::Adopt(const LaunchResult& result) {
  pid_ = result.pid;
  pidfd_ = result.pidfd;
  listener_ = result.listener;
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env_, &loop);
  exit_poll_ = Poll::Start(loop, pidfd_, this, [](uv_poll_t* h, int, int) {
    Poll* p = static_cast<Poll*>(h->data);
    if (p->owner != nullptr) p->owner->OnExitReadable();
  });
  if (listener_ >= 0) {
    listener_poll_ = Poll::Start(loop, listener_, this, [](uv_poll_t* h, int status, int events) {
      Poll* p = static_cast<Poll*>(h->data);
      if (p->owner != nullptr) p->owner->OnListenerReadable(status < 0 ? status : events);
    });
  }
  SPAWN_TRACE(31, "p-polling");
}

SandboxProcess::~SandboxProcess() {
  // Still running here only when its JS environment is torn down (while it runs, the object holds a
  // reference to itself): a worker thread ending, or the host exiting. The sandbox ends with it; its
  // parent-death signal belongs to the launch thread, which outlives a worker. Reaped here too:
  // nothing else will wait for it (a zombie per sandbox of every ended worker), and its cgroups can
  // only be removed once it is gone.
  if (!exited_ && pidfd_ >= 0) KillAndReap(pidfd_);
  RemoveDirs(&leftover_dirs_);
  delete net_;
  Poll::Close(exit_poll_);
  Poll::Close(listener_poll_);
  if (pidfd_ >= 0) close(pidfd_);
  if (listener_ >= 0) close(listener_);
}

// forgetTeardown(): JS has undone what plan.teardown named (its cgroups are gone, their names may
// be taken again): the environment's end must not remove them any more.
Napi::Value SandboxProcess::ForgetTeardown(const Napi::CallbackInfo& info) {
  leftover_dirs_.clear();
  return info.Env().Undefined();
}

Napi::Value SandboxProcess::GetPid(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), pid_);
}

Napi::Value SandboxProcess::Kill(const Napi::CallbackInfo& info) {
  int sig = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : SIGKILL;
  if (exited_ || pidfd_ < 0) return Napi::Boolean::New(info.Env(), false);
  // Through the pidfd: never a recycled pid.
  if (syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0) != 0) {
    if (errno == ESRCH) return Napi::Boolean::New(info.Env(), false);
    Napi::Error e = Napi::Error::New(info.Env(), std::string("kill: ") + strerror(errno));
    e.Set("errno", Napi::Number::New(info.Env(), errno));
    e.ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  return Napi::Boolean::New(info.Env(), true);
}

Napi::Value SandboxProcess::Unref(const Napi::CallbackInfo& info) {
  if (exit_poll_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(&exit_poll_->handle));
  if (listener_poll_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(&listener_poll_->handle));
  if (net_ != nullptr) net_->SetRef(false);
  return info.Env().Undefined();
}

Napi::Value SandboxProcess::Ref(const Napi::CallbackInfo& info) {
  if (exit_poll_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(&exit_poll_->handle));
  if (listener_poll_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(&listener_poll_->handle));
  if (net_ != nullptr) net_->SetRef(true);
  return info.Env().Undefined();
}

// Never throws (see js_callback.h): the callers are libuv callbacks.
void SandboxProcess::Deliver(Napi::FunctionReference& callback, std::initializer_list<napi_value> args) {
  if (callback.IsEmpty()) return;
  CallFromLoop(env_, nullptr, Value(), callback.Value(), args.size(), args.begin());
}

void SandboxProcess::OnExitReadable() {
  siginfo_t si;
  memset(&si, 0, sizeof si);
  if (waitid(kIdPidfd, pidfd_, &si, WEXITED | WNOHANG | __WALL) != 0 || si.si_pid == 0) return;
  exited_ = true;
  SPAWN_TRACE(40, "reaped");
  SPAWN_TRACE_DUMP();  // keeps the points (printed at exit); the callback may start the next launch
  Poll::Close(exit_poll_);
  exit_poll_ = nullptr;
  // Reaped: the pidfd has nothing more to tell. Closing it now, not when the JS object is collected,
  // keeps a host that spawns thousands of sandboxes from piling up fds.
  close(pidfd_);
  pidfd_ = -1;

  if (!CanRunJs(env_)) {
    // The environment is stopping: nobody to tell. The cgroups stay in leftover_dirs_ for the
    // destructor, which runs with the environment's teardown.
    StopListener();
    return;
  }
  leftover_dirs_.clear();  // told of the exit, JS removes the cgroups (after its last reads)
  // What the network thread queued before the end (the outcomes of connects it made) reaches JS
  // before the exit does.
  if (net_ != nullptr) net_->Drain();
  Napi::HandleScope scope(env_);
  Napi::Value code = env_.Null();
  Napi::Value signal = env_.Null();
  if (si.si_code == CLD_EXITED) {
    code = Napi::Number::New(env_, si.si_status);
  } else {
    signal = Napi::Number::New(env_, si.si_status);
  }
  Deliver(on_exit_, {code, signal});
  // Late notifications can only come from processes that are dying with the PID namespace. After
  // the callback: the exit is reported a little sooner.
  StopListener();
  on_exit_.Reset();
  on_violation_.Reset();
  Napi::ObjectWrap<SandboxProcess>::Unref();
}

void SandboxProcess::OnListenerReadable(int events) {
  if (events < 0 || (events & UV_DISCONNECT)) {
    StopListener();
    return;
  }
  struct seccomp_notif req;
  memset(&req, 0, sizeof req);  // the kernel insists on a zeroed buffer
  if (ioctl(listener_, SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) {
    // ENOENT: the caller died before we read it. Anything else: nothing more will come.
    if (errno != ENOENT && errno != EINTR) StopListener();
    return;
  }
  OnNotification(req);
}

// A notification, received here or by the network thread (net_fast.cc), which then hands over
// all it does not handle itself.
void SandboxProcess::OnNotification(const struct seccomp_notif& req) {
  if (net_ != nullptr && NetIntercept::Handles(req.data.nr)) {
    net_->Handle(req);
    return;
  }
  // The syscall must never run: kill the sandbox first, then fail the (now dead) call.
  syscall(SYS_pidfd_send_signal, pidfd_, SIGKILL, nullptr, 0);
  struct seccomp_notif_resp resp;
  memset(&resp, 0, sizeof resp);
  resp.id = req.id;
  resp.error = -EPERM;
  ioctl(listener_, SECCOMP_IOCTL_NOTIF_SEND, &resp);
  if (!CanRunJs(env_)) return;  // the environment is stopping: nobody to tell

  Napi::HandleScope scope(env_);
  Napi::Object v = Napi::Object::New(env_);
  const char* name = SyscallName(req.data.nr);
  v.Set("syscall", name != nullptr ? Napi::String::New(env_, name)
                                   : Napi::String::New(env_, "syscall_" + std::to_string(req.data.nr)));
  v.Set("nr", Napi::Number::New(env_, req.data.nr));
  v.Set("pid", Napi::Number::New(env_, req.pid));
  Napi::Array args = Napi::Array::New(env_, 6);
  for (uint32_t i = 0; i < 6; i++) {
    args.Set(i, Napi::BigInt::New(env_, static_cast<uint64_t>(req.data.args[i])));
  }
  v.Set("args", args);
  Deliver(on_violation_, {v});
}

void SandboxProcess::StopListener() {
  if (net_ != nullptr) net_->Stop();
  Poll::Close(listener_poll_);
  listener_poll_ = nullptr;
  if (listener_ >= 0) {
    close(listener_);
    listener_ = -1;
  }
}

}  // namespace warden

namespace warden {

// interceptNetwork(decide, report, connected, dns): called right after construction, before the event loop can
// deliver a notification. Opens the DNS stub inside the sandbox; throws ERR_SANDBOX_SETUP (stage
// 'network') when it cannot.
Napi::Value SandboxProcess::InterceptNetwork(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsFunction() || !info[1].IsFunction() || !info[2].IsFunction() || !info[3].IsFunction()) {
    Napi::TypeError::New(env, "interceptNetwork(decide, report, connected, dns)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (listener_ < 0 || pidfd_ < 0 || net_ != nullptr) {
    Napi::Error e = Napi::Error::New(env, std::string("sandbox setup failed at stage ") + StageName(Stage::kNetwork) +
                                              ": no seccomp listener to intercept connect with");
    e.Set("code", Napi::String::New(env, "ERR_SANDBOX_SETUP"));
    e.Set("stage", Napi::String::New(env, StageName(Stage::kNetwork)));
    e.Set("errno", Napi::Number::New(env, 0));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  net_ = new NetIntercept(env, loop, listener_, info[0].As<Napi::Function>(), info[1].As<Napi::Function>(),
                          info[2].As<Napi::Function>(), info[3].As<Napi::Function>());
  std::string problem = net_->OpenStub(pidfd_);
  if (!problem.empty()) {
    problem = "DNS stub: " + problem;
  } else {
    // From now on the network thread receives the notifications, and hands the loop the rest.
    problem = net_->Start([this](const struct seccomp_notif& req) { OnNotification(req); });
    if (problem.empty()) {
      Poll::Close(listener_poll_);
      listener_poll_ = nullptr;
    } else {
      problem = "listener thread: " + problem;
    }
  }
  if (!problem.empty()) {
    Napi::Error e = Napi::Error::New(env, std::string("sandbox setup failed at stage ") + StageName(Stage::kNetwork) +
                                              ": " + problem);
    e.Set("code", Napi::String::New(env, "ERR_SANDBOX_SETUP"));
    e.Set("stage", Napi::String::New(env, StageName(Stage::kNetwork)));
    e.Set("errno", Napi::Number::New(env, 0));
    e.Set("detail", Napi::String::New(env, problem));
    e.ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

// replyDns(port, answer: Buffer) -> errno (0 on success)
Napi::Value SandboxProcess::ReplyDns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (net_ == nullptr || info.Length() < 2 || !info[0].IsNumber() || !info[1].IsBuffer()) return Napi::Number::New(env, EINVAL);
  auto buf = info[1].As<Napi::Buffer<uint8_t>>();
  return Napi::Number::New(env, net_->ReplyDns(static_cast<uint16_t>(info[0].As<Napi::Number>().Uint32Value()), buf.Data(), buf.Length()));
}

// netQueuePeak() -> the most items the network thread's queue to the loop held at once (tests).
Napi::Value SandboxProcess::NetQueuePeak(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), net_ == nullptr ? 0 : static_cast<double>(net_->QueuePeak()));
}

}  // namespace warden

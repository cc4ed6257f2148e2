// Exit and seccomp-violation watching under libuv: a pidfd and a seccomp listener, each polled by a
// uv_poll handle, so the event loop never blocks and SIGCHLD is never involved.
#pragma once

#include <linux/seccomp.h>
#include <napi.h>
#include <uv.h>

#include <string>
#include <vector>

namespace warden {

class NetIntercept;

struct LaunchResult;

class SandboxProcess : public Napi::ObjectWrap<SandboxProcess> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit SandboxProcess(const Napi::CallbackInfo& info);
  ~SandboxProcess() override;

  struct AsyncLaunch;

 private:
  struct Poll;

  void FinishLaunch(AsyncLaunch* a);
  void Adopt(const LaunchResult& result);

  Napi::Value Kill(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value GetPid(const Napi::CallbackInfo& info);
  Napi::Value InterceptNetwork(const Napi::CallbackInfo& info);  // see net_intercept.h
  Napi::Value ReplyDns(const Napi::CallbackInfo& info);
  Napi::Value NetQueuePeak(const Napi::CallbackInfo& info);
  Napi::Value ForgetTeardown(const Napi::CallbackInfo& info);

  void OnExitReadable();
  void OnListenerReadable(int status);
  void OnNotification(const struct seccomp_notif& req);
  void StopListener();
  void Deliver(Napi::FunctionReference& callback, std::initializer_list<napi_value> args);

  Napi::Env env_;
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int listener_ = -1;
  bool exited_ = false;
  Poll* exit_poll_ = nullptr;
  Poll* listener_poll_ = nullptr;
  NetIntercept* net_ = nullptr;  // connect/listen under a network policy; null without one
  Napi::FunctionReference on_exit_;
  Napi::FunctionReference on_violation_;
  // The sandbox's cgroup directories (plan.teardown.dirs), while JS has not been told of its exit:
  // removed here if the JS environment ends first (a worker thread), which never will.
  std::vector<std::string> leftover_dirs_;
};

}  // namespace warden

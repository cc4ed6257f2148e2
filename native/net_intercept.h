// Network egress by policy: the host side of a sandbox's `connect` and `listen`.
//
// The sandbox keeps its own network namespace, which has only a loopback interface: nothing a
// program does there reaches anything outside the sandbox. Under a network policy the launcher's
// seccomp filter sends every connect and listen to the host (SECCOMP_RET_USER_NOTIF, the listener
// that reports violations). For each one the host reads the address from the caller's memory, takes
// a copy of the caller's socket (pidfd_getfd) and asks the policy (JS, lib/net) what to do:
//   - 'host':   the host creates a socket of the same kind in its own network namespace, connects it
//               to the address it read and checked, and installs it in place of the caller's fd
//               (SECCOMP_IOCTL_NOTIF_ADDFD with SETFD|SEND). The caller's memory is never read again,
//               so changing the address after the check has no effect.
//   - 'local':  the host performs the call on its copy of the caller's own socket (which lives in the
//               sandbox's namespace: its own loopback, its own abstract unix names).
//   - 'refuse': the call fails with the policy's errno.
// The syscall is never let through to run in the caller (SECCOMP_USER_NOTIF_FLAG_CONTINUE is not
// used): the kernel would look up the fd and the address again, and another thread could have put a
// host socket under that fd number in between.
//
// The DNS stub: a UDP socket bound to 127.0.0.1:53 inside the sandbox's namespace, created by a short
// helper that joins the sandbox's user and network namespaces; queries go to JS, answers come back.
#pragma once

#include <linux/seccomp.h>
#include <napi.h>
#include <sys/types.h>
#include <uv.h>

#include <cstdint>
#include <map>
#include <string>
#include <unordered_set>

namespace warden {

class NetIntercept {
 public:
  // `decide(request) -> { verdict, errno?, id? }` is called synchronously; `report(id, errno,
  // cookie)` when a 'host' connection is handed in or fails; `dns(query, port)` for each query.
  NetIntercept(Napi::Env env, uv_loop_t* loop, int listener, Napi::Function decide, Napi::Function report,
               Napi::Function dns);
  ~NetIntercept();

  // Opens the DNS stub in the namespaces of `pidfd`'s process. "" or a message with the errno.
  std::string OpenStub(int pidfd);
  // Sends a DNS answer to the sandbox-side port that asked.
  int ReplyDns(uint16_t port, const uint8_t* data, size_t len);

  static bool Handles(int nr);
  void Handle(const struct seccomp_notif& req);
  void Stop();

 private:
  struct Pending;  // a blocking connect the host finishes asynchronously
  struct StubPoll;

  void Reply(uint64_t id, int64_t val, int error);
  void Install(uint64_t id, int host_fd, uint64_t cookie, int target_fd, bool cloexec, int64_t val);
  void Finish(Pending* p, int error);
  void HandleConnect(const struct seccomp_notif& req, int dup);
  void HandleListen(const struct seccomp_notif& req, int dup);
  void OnStubReadable();
  void CallReport(double id, int error, uint64_t cookie);

  Napi::Env env_;
  uv_loop_t* loop_;
  int listener_;
  int stub_ = -1;
  StubPoll* stub_poll_ = nullptr;
  Napi::FunctionReference decide_, report_, dns_;
  std::unordered_set<uint64_t> handed_in_;  // socket cookies of host sockets now in the sandbox
  std::map<Pending*, bool> pending_;
};

}  // namespace warden

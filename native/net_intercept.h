// Network egress by policy: the host side of a sandbox's `connect` and `listen`.
//
// The sandbox keeps its own network namespace, which has only a loopback interface: nothing a
// program does there reaches anything outside the sandbox. Under a network policy the launcher's
// seccomp filter sends every connect and listen to the host (SECCOMP_RET_USER_NOTIF, the listener
// that reports violations). For each one the host reads the address from the caller's memory, takes
// a copy of the caller's socket (pidfd_getfd) and asks the policy (JS, lib/net) what to do:
//   - 'host':   the host creates a socket of the same kind in its own network namespace, connects it
//               to the address it read and checked, and installs it in place of the caller's fd
//               (SECCOMP_IOCTL_NOTIF_ADDFD with SETFD, then the answer: ADDFD's SEND flag would make
//               connect return the fd number). The caller's memory is never read again,
//               so changing the address after the check has no effect.
//   - 'local':  the host performs the call on its copy of the caller's own socket (which lives in the
//               sandbox's namespace: its own loopback, its own abstract unix names).
//   - 'refuse': the call fails with the policy's errno.
// The syscall is never let through to run in the caller (SECCOMP_USER_NOTIF_FLAG_CONTINUE is not
// used): the kernel would look up the fd and the address again, and another thread could have put a
// host socket under that fd number in between.
//
// Who does the work (net_fast.cc): a thread of the host receives the notifications (the event loop
// no longer polls the listener). A connect it can decide without JS, it handles to the end on the
// thread: a non-blocking TCP connect to an (address, port) the policy allowed within the last second
// and leased (`lease` in the verdict: at most that many more connects, counted against the policy's
// limits before they happen). It connects the host socket, hands it in and answers, then queues the
// outcome for JS (`connected`), which emits and counts it as if it had decided; the event loop is
// woken for such outcomes at most every 5 ms (kOutcomesNs), not once per connect. Everything else (a
// first connect, an expired lease, blocking sockets, listen, unix, refusals, violations) is queued
// as it came for the event loop, which handles it as before. One queue, in order, bounded: when it
// is full the thread stops receiving until the loop has caught up, and the sandbox waits in its
// syscalls; the host's memory does not grow with what the sandbox sends.
//
// The DNS stub: a UDP socket bound to 127.0.0.1:53 inside the sandbox's namespace, created by a short
// helper that joins the sandbox's user and network namespaces; queries go to JS, answers come back.
#pragma once

#include <linux/seccomp.h>
#include <napi.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <unordered_set>
#include <vector>

namespace warden {

class NetIntercept {
 public:
  // `decide(request) -> { verdict, errno?, id?, lease? }` is called synchronously; `report(id,
  // errno, cookie)` when a 'host' connection is handed in or fails; `connected(address, port,
  // errno, cookie, at)` for a connect the thread handled under a lease; `dns(query, port)` for each
  // query.
  NetIntercept(Napi::Env env, uv_loop_t* loop, int listener, Napi::Function decide, Napi::Function report,
               Napi::Function connected, Napi::Function dns);
  ~NetIntercept();

  // Starts the listener thread. `dispatch` handles, on the event loop, each notification the thread
  // does not (NetIntercept::Handles tells which are network ones). "" or what failed.
  std::string Start(std::function<void(const struct seccomp_notif&)> dispatch);
  // Stops the thread and delivers what it queued (the sandbox has exited: nothing more comes).
  void Drain();
  void SetRef(bool ref);
  // The most items the queue held at once (tests: it stays bounded).
  size_t QueuePeak();

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

  // net_fast.cc: the listener thread, the lease, the queue to the event loop.
  struct Item {
    bool fast = false;
    struct seccomp_notif req {};  // !fast: a notification for the event loop
    char address[46] = "";        // fast: the outcome of a connect the thread made
    int port = 0;
    int error = 0;
    uint64_t cookie = 0;
    double at = 0;  // ms since the epoch
  };
  struct Leased {
    uint8_t key[19];  // family, port, address (16)
    uint64_t until;   // CLOCK_MONOTONIC ns
  };
  static void ThreadMain(void* self);
  void Run();
  bool TryFast(const struct seccomp_notif& req);
  bool Push(Item&& item);
  void OnAsync();
  void Deliver(Item& item);
  void StopThread();
  // Revokes the lease before JS decides; returns the connects leased and not yet delivered to JS.
  int RevokeLease();
  void Lease(const sockaddr_storage& ss, int tokens);

  Napi::Env env_;
  uv_loop_t* loop_;
  int listener_;
  int stub_ = -1;
  StubPoll* stub_poll_ = nullptr;
  Napi::FunctionReference decide_, report_, connected_, dns_;
  std::map<Pending*, bool> pending_;

  // Shared with the thread, under mu_.
  uv_mutex_t mu_;
  uv_cond_t room_;  // the queue has room again, or stopping
  std::unordered_set<uint64_t> handed_in_;  // socket cookies of host sockets now in the sandbox
  std::vector<Leased> leased_;
  int tokens_ = 0;           // connects the thread may still make under the lease
  uint64_t tokens_until_ = 0;
  int in_flight_ = 0;        // connects made under a lease whose outcome JS has not had yet
  std::deque<Item> queue_;
  size_t queue_peak_ = 0;
  bool stopping_ = false;

  std::function<void(const struct seccomp_notif&)> dispatch_;
  uv_thread_t thread_;
  bool thread_started_ = false;
  int wake_ = -1;  // eventfd: stops the thread's poll
  uint64_t flush_at_ = 0;  // thread only: when to wake the loop for queued outcomes (0: not due)
  uv_async_t* async_ = nullptr;
};

}  // namespace warden

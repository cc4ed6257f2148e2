// tcpCloseWatch: the kernel's sock_diag destroy notifications (SKNLGRP_INET{,6}_TCP_DESTROY) for
// the host's TCP sockets, filtered to the cookies a network policy registered.
//
// Why: a socket's byte counts are only in its full socket. Once the sandbox has closed a connection
// it soon reaches TIME_WAIT (or is gone), where a dump (tcpStates) has no counts, so a connection
// that opened and closed between two dumps had none. The destroy notification carries the
// tcp_info of the socket as the kernel frees it, whatever its lifetime.
//
// The notifications wait in the socket's receive queue until the policies' once-a-second sweep
// drains them (tcpCloseWatchDrain): no wake-up of the host per closed connection, which would
// compete with the connects it is handling. A queue that overflows between two drains (a host
// closing thousands of TCP sockets a second) loses notifications; those connections keep the
// counts the dumps sampled.
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <unordered_set>

#include "net_diag.h"

namespace warden {

namespace {

// The process's one destroy watch (the policies of every sandbox share it).
struct CloseWatch {
  int fd = -1;
  Napi::FunctionReference cb;
  std::unordered_set<uint64_t> wanted;
};
CloseWatch* watch = nullptr;

// Reads every queued notification; calls back for the wanted cookies. Lost notifications (ENOBUFS
// on a busy host) only leave those connections to the dumps.
void DrainWatch(Napi::Env env) {
  alignas(nlmsghdr) char buf[16384];
  for (;;) {
    if (watch == nullptr) return;
    ssize_t n = recv(watch->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == ENOBUFS) continue;
      return;
    }
    int left = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) continue;
      const Found f = ParseDiag(h);
      if (watch->wanted.erase(static_cast<uint64_t>(f.cookie)) == 0) continue;
      Napi::HandleScope scope(env);
      watch->cb.MakeCallback(env.Global(), {Napi::Number::New(env, f.cookie), Napi::Number::New(env, f.state),
                                            Napi::Number::New(env, f.sent), Napi::Number::New(env, f.received)});
      if (env.IsExceptionPending()) {
        Napi::Error e = env.GetAndClearPendingException();
        napi_fatal_exception(env, e.Value());
        return;
      }
      if (watch == nullptr) return;
    }
  }
}

// tcpCloseWatch(cb(cookie, state, bytesSent, bytesReceived)): starts the watch (throws with errno).
Napi::Value StartWatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) {
    Napi::TypeError::New(env, "tcpCloseWatch(callback)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (watch != nullptr) {
    Napi::Error::New(env, "tcpCloseWatch: already started").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  sockaddr_nl sa {};
  sa.nl_family = AF_NETLINK;
  sa.nl_groups = (1u << (SKNLGRP_INET_TCP_DESTROY - 1)) | (1u << (SKNLGRP_INET6_TCP_DESTROY - 1));
  // A second's worth of a busy host's closes: FORCE passes net.core.rmem_max (CAP_NET_ADMIN), the
  // plain option is capped by it.
  int rcvbuf = 4 << 20;
  if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    int e = errno;
    if (fd >= 0) close(fd);
    Napi::Error err = Napi::Error::New(env, std::string("sock_diag destroy notifications: ") + strerror(e));
    err.Set("errno", Napi::Number::New(env, e));
    err.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  watch = new CloseWatch();
  watch->fd = fd;
  watch->cb = Napi::Persistent(info[0].As<Napi::Function>());
  return env.Undefined();
}

// tcpCloseWatchAdd(cookie) / tcpCloseWatchDelete(cookie): which sockets to report.
Napi::Value WatchAdd(const Napi::CallbackInfo& info) {
  if (watch != nullptr) watch->wanted.insert(static_cast<uint64_t>(info[0].ToNumber().DoubleValue()));
  return info.Env().Undefined();
}
Napi::Value WatchDelete(const Napi::CallbackInfo& info) {
  if (watch != nullptr) watch->wanted.erase(static_cast<uint64_t>(info[0].ToNumber().DoubleValue()));
  return info.Env().Undefined();
}
// tcpCloseWatchDrain(): calls back for what is queued now.
Napi::Value WatchDrain(const Napi::CallbackInfo& info) {
  if (watch != nullptr) DrainWatch(info.Env());
  return info.Env().Undefined();
}
Napi::Value WatchStop(const Napi::CallbackInfo& info) {
  if (watch == nullptr) return info.Env().Undefined();
  close(watch->fd);
  delete watch;
  watch = nullptr;
  return info.Env().Undefined();
}

}  // namespace

void InitNetCloses(Napi::Env env, Napi::Object exports) {
  exports.Set("tcpCloseWatch", Napi::Function::New(env, StartWatch, "tcpCloseWatch"));
  exports.Set("tcpCloseWatchAdd", Napi::Function::New(env, WatchAdd, "tcpCloseWatchAdd"));
  exports.Set("tcpCloseWatchDelete", Napi::Function::New(env, WatchDelete, "tcpCloseWatchDelete"));
  exports.Set("tcpCloseWatchDrain", Napi::Function::New(env, WatchDrain, "tcpCloseWatchDrain"));
  exports.Set("tcpCloseWatchStop", Napi::Function::New(env, WatchStop, "tcpCloseWatchStop"));
}

}  // namespace warden

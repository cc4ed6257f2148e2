// tcpStates(cookies: Float64Array) -> Array<[cookie, state, bytesSent, bytesReceived]>: the host's
// TCP sockets with those cookies (SO_COOKIE), from one NETLINK_SOCK_DIAG dump per address family.
// A network policy uses it to see which of the connections it handed to a sandbox are still open,
// and how many bytes each carried, without holding a reference to them (a reference held by the
// host would keep a connection open after the sandbox closed it).

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_set>
#include <vector>

#include "bindings.h"
#include "net_diag.h"

namespace warden {

namespace {

uint64_t CookieOf(const inet_diag_msg* m) {
  return static_cast<uint64_t>(m->id.idiag_cookie[0]) | (static_cast<uint64_t>(m->id.idiag_cookie[1]) << 32);
}

// One dump; appends the sockets whose cookie is wanted. Returns 0 or an errno.
int Dump(int family, const std::unordered_set<uint64_t>& wanted, std::vector<Found>* out) {
  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return errno;
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg {};
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req.sdiag_family = static_cast<uint8_t>(family);
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = ~0u;
  msg.req.idiag_ext = 1 << (INET_DIAG_INFO - 1);
  if (send(fd, &msg, sizeof msg, 0) < 0) {
    int e = errno;
    close(fd);
    return e;
  }
  alignas(nlmsghdr) char buf[32768];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      return e;
    }
    int left = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
        close(fd);
        return 0;
      }
      if (wanted.count(CookieOf(static_cast<inet_diag_msg*>(NLMSG_DATA(h)))) == 0) continue;
      out->push_back(ParseDiag(h));
    }
  }
}

Napi::Value TcpStates(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray()) {
    Napi::TypeError::New(env, "tcpStates(cookies: Float64Array)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto arr = info[0].As<Napi::Float64Array>();
  std::unordered_set<uint64_t> wanted;
  for (size_t i = 0; i < arr.ElementLength(); i++) wanted.insert(static_cast<uint64_t>(arr[i]));
  std::vector<Found> found;
  for (int family : {AF_INET, AF_INET6}) {
    if (int e = Dump(family, wanted, &found); e != 0) {
      Napi::Error err = Napi::Error::New(env, std::string("sock_diag: ") + strerror(e));
      err.Set("errno", Napi::Number::New(env, e));
      err.ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  Napi::Array out = Napi::Array::New(env, found.size());
  for (size_t i = 0; i < found.size(); i++) {
    Napi::Array row = Napi::Array::New(env, 4);
    row.Set(0u, found[i].cookie);
    row.Set(1u, found[i].state);
    row.Set(2u, found[i].sent);
    row.Set(3u, found[i].received);
    out.Set(static_cast<uint32_t>(i), row);
  }
  return out;
}

}  // namespace

// One inet_diag_msg: its cookie, state and, when it carries tcp_info, its byte counts (else -1).
Found ParseDiag(const nlmsghdr* h) {
  auto* m = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
  Found f{static_cast<double>(CookieOf(m)), m->idiag_state, -1, -1};
  int len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
  for (auto* a = reinterpret_cast<const rtattr*>(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if (a->rta_type != INET_DIAG_INFO) continue;
    tcp_info ti {};
    memcpy(&ti, RTA_DATA(a), std::min<size_t>(RTA_PAYLOAD(a), sizeof ti));
    // Data bytes only: the acked count also holds the SYN and the FIN, each counting as one.
    // The received count holds the peer's FIN once it came (the kernel has no data-only count).
    f.sent = static_cast<double>(ti.tcpi_bytes_sent - ti.tcpi_bytes_retrans);
    f.received = static_cast<double>(ti.tcpi_bytes_received);
  }
  return f;
}

void InitNetDiag(Napi::Env env, Napi::Object exports) {
  exports.Set("tcpStates", Napi::Function::New(env, TcpStates, "tcpStates"));
  InitNetCloses(env, exports);
}

}  // namespace warden

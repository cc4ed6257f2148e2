// See net_socket.h.
#include "net_socket.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <uv.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace warden {

int GetInt(int fd, int level, int opt, int* out) {
  socklen_t len = sizeof *out;
  return getsockopt(fd, level, opt, out, &len);
}

uint64_t Cookie(int fd) {
  uint64_t c = 0;
  socklen_t len = sizeof c;
  return getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &len) == 0 ? c : 0;
}

// FD_CLOEXEC of the caller's fd is per-fd, not per-file: read it from /proc/<tid>/fdinfo.
bool TargetCloexec(pid_t tid, int fd) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fdinfo/%d", tid, fd);
  Fd f(open(path, O_RDONLY | O_CLOEXEC));
  if (f.get() < 0) return true;  // cannot tell: closing on exec is the safer side
  char buf[256];
  ssize_t n = read(f.get(), buf, sizeof buf - 1);
  if (n <= 0) return true;
  buf[n] = 0;
  const char* p = strstr(buf, "flags:");
  if (p == nullptr) return true;
  return (strtoul(p + 6, nullptr, 8) & O_CLOEXEC) != 0;
}

namespace {

// Socket options a program may set before connect that change how the connection behaves. The
// host's socket gets the caller's value wherever it differs from a fresh socket's.
struct IntOpt { int level, name; };
constexpr IntOpt kIntOpts[] = {
    {SOL_SOCKET, SO_KEEPALIVE}, {SOL_SOCKET, SO_OOBINLINE},   {SOL_SOCKET, SO_PRIORITY},
    {SOL_SOCKET, SO_RCVLOWAT},  {SOL_SOCKET, SO_REUSEADDR},   {IPPROTO_TCP, TCP_NODELAY},
    {IPPROTO_TCP, TCP_KEEPIDLE}, {IPPROTO_TCP, TCP_KEEPINTVL}, {IPPROTO_TCP, TCP_KEEPCNT},
    {IPPROTO_TCP, TCP_USER_TIMEOUT}, {IPPROTO_TCP, TCP_CORK}, {IPPROTO_TCP, TCP_NOTSENT_LOWAT},
    {IPPROTO_TCP, TCP_MAXSEG},
};
constexpr IntOpt kV4Opts[] = {{IPPROTO_IP, IP_TOS}};
constexpr IntOpt kV6Opts[] = {{IPPROTO_IPV6, IPV6_V6ONLY}, {IPPROTO_IPV6, IPV6_TCLASS}};
constexpr size_t kNumInt = sizeof kIntOpts / sizeof kIntOpts[0];

// A fresh host socket's values, read once per family: each connect then reads only the caller's
// socket (the connect path's syscalls are its cost) and writes only what differs. -1: unreadable.
struct Defaults {
  int common[kNumInt];
  int family[2];
  int sndbuf, rcvbuf;
};
Defaults defaults4, defaults6;

void ReadDefaults(int domain) {
  Defaults& d = domain == AF_INET ? defaults4 : defaults6;
  Fd s(socket(domain, SOCK_STREAM | SOCK_CLOEXEC, 0));
  for (size_t i = 0; i < kNumInt; i++) {
    if (s.get() < 0 || GetInt(s.get(), kIntOpts[i].level, kIntOpts[i].name, &d.common[i]) != 0) d.common[i] = -1;
  }
  const IntOpt* fam = domain == AF_INET ? kV4Opts : kV6Opts;
  const size_t n = domain == AF_INET ? 1 : 2;
  for (size_t i = 0; i < 2; i++) {
    if (i >= n || s.get() < 0 || GetInt(s.get(), fam[i].level, fam[i].name, &d.family[i]) != 0) d.family[i] = -1;
  }
  if (s.get() < 0 || GetInt(s.get(), SOL_SOCKET, SO_SNDBUF, &d.sndbuf) != 0) d.sndbuf = -1;
  if (s.get() < 0 || GetInt(s.get(), SOL_SOCKET, SO_RCVBUF, &d.rcvbuf) != 0) d.rcvbuf = -1;
}

uv_once_t defaults_once = UV_ONCE_INIT;

const Defaults& DefaultsFor(int domain) { return domain == AF_INET ? defaults4 : defaults6; }

void CopyInt(int from, int to, const IntOpt& o, int dflt) {
  int v = 0;
  if (GetInt(from, o.level, o.name, &v) == 0 && v != dflt) setsockopt(to, o.level, o.name, &v, sizeof v);
}

}  // namespace

void InitSocketDefaults() {
  uv_once(&defaults_once, [] {
    ReadDefaults(AF_INET);
    ReadDefaults(AF_INET6);
  });
}

void CopyOptions(int from, int to, int domain) {
  const Defaults& d = DefaultsFor(domain);
  for (size_t i = 0; i < kNumInt; i++) CopyInt(from, to, kIntOpts[i], d.common[i]);
  if (domain == AF_INET) CopyInt(from, to, kV4Opts[0], d.family[0]);
  else for (size_t i = 0; i < 2; i++) CopyInt(from, to, kV6Opts[i], d.family[i]);
  // Buffer sizes only when the program chose them (they differ from a fresh socket's): setting one
  // locks it and switches the kernel's autotuning off. The kernel doubles what is asked and reports
  // the doubled value, so half of it is asked again.
  for (auto [name, dflt] : {std::pair{SO_SNDBUF, d.sndbuf}, std::pair{SO_RCVBUF, d.rcvbuf}}) {
    int v = 0;
    if (GetInt(from, SOL_SOCKET, name, &v) == 0 && v != dflt) {
      v /= 2;
      setsockopt(to, SOL_SOCKET, name, &v, sizeof v);
    }
  }
  for (int name : {SO_RCVTIMEO, SO_SNDTIMEO}) {  // default: none (zero)
    struct timeval tv {};
    socklen_t len = sizeof tv;
    if (getsockopt(from, SOL_SOCKET, name, &tv, &len) == 0 && (tv.tv_sec != 0 || tv.tv_usec != 0)) setsockopt(to, SOL_SOCKET, name, &tv, sizeof tv);
  }
  struct linger lg {};
  socklen_t len = sizeof lg;
  if (getsockopt(from, SOL_SOCKET, SO_LINGER, &lg, &len) == 0 && lg.l_onoff) setsockopt(to, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

}  // namespace warden

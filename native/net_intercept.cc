// See net_intercept.h for the mechanism and why the syscall never continues in the caller.
#include "net_intercept.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>

#include "js_callback.h"
#include "net_socket.h"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif

namespace warden {

namespace {

constexpr int kNrConnect = 42;  // x86_64
constexpr int kNrListen = 50;
// A 'local' call on a blocking socket runs on the host's event loop: bound how long it may wait
// (a full accept queue inside the sandbox would otherwise stall the host).
constexpr int kLocalTimeoutMs = 1000;


// connect() on the caller's own socket (copy), bounded in time when it is blocking.
int LocalConnect(int dup, const sockaddr* addr, socklen_t len) {
  const bool blocking = (fcntl(dup, F_GETFL) & O_NONBLOCK) == 0;
  struct timeval saved {}, bound {kLocalTimeoutMs / 1000, (kLocalTimeoutMs % 1000) * 1000};
  socklen_t sl = sizeof saved;
  if (blocking) {
    getsockopt(dup, SOL_SOCKET, SO_SNDTIMEO, &saved, &sl);
    setsockopt(dup, SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof bound);
  }
  int r = connect(dup, addr, len) == 0 ? 0 : errno;
  if (blocking) setsockopt(dup, SOL_SOCKET, SO_SNDTIMEO, &saved, sizeof saved);
  return r;
}

// A unix socket path is the caller's: resolve it inside the sandbox's root (/proc/<tid>/root, or its
// cwd for a relative path) with RESOLVE_IN_ROOT, so no symlink can lead out, then connect to the
// inode found through /proc/self/fd. Abstract names are looked up in the socket's own network
// namespace, the sandbox's, so they need no translation.
int UnixConnect(pid_t tid, int dup, const sockaddr_un* sun, socklen_t len) {
  const size_t plen = len - offsetof(sockaddr_un, sun_path);
  if (plen == 0 || sun->sun_path[0] == '\0') return LocalConnect(dup, reinterpret_cast<const sockaddr*>(sun), len);
  std::string p(sun->sun_path, strnlen(sun->sun_path, plen));
  char base[64];
  snprintf(base, sizeof base, "/proc/%d/%s", tid, p[0] == '/' ? "root" : "cwd");
  Fd dir(open(base, O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() < 0) return errno == ENOENT ? ESRCH : errno;
  struct open_how how {};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  Fd target(static_cast<int>(syscall(SYS_openat2, dir.get(), p.c_str(), &how, sizeof how)));
  if (target.get() < 0) return errno;
  sockaddr_un via {};
  via.sun_family = AF_UNIX;
  snprintf(via.sun_path, sizeof via.sun_path, "/proc/self/fd/%d", target.get());
  return LocalConnect(dup, reinterpret_cast<const sockaddr*>(&via), sizeof via);
}

const char* TypeName(int type) {
  switch (type) {
    case SOCK_STREAM: return "stream";
    case SOCK_DGRAM: return "dgram";
    case SOCK_RAW: return "raw";
    case SOCK_SEQPACKET: return "seqpacket";
    default: return "other";
  }
}

// The stub helper: joins the sandbox's user and network namespaces (pidfd setns, one step), brings
// its loopback up and binds the DNS socket. It shares the host's memory and fd table (CLONE_VM |
// CLONE_FILES) but not its fs information, which joining a user namespace requires, and it is a
// process of its own, so the host's threads keep their namespaces.
struct StubArgs {
  int pidfd;
  int fd = -1;
  int error = 0;
  const char* step = "";
};

int StubMain(void* p) {
  StubArgs* a = static_cast<StubArgs*>(p);
  if (setns(a->pidfd, CLONE_NEWUSER | CLONE_NEWNET) != 0) {
    // The sandbox shares the host's user namespace (root, namespaces.user off): the net one alone.
    if (errno != EINVAL || setns(a->pidfd, CLONE_NEWNET) != 0) {
      a->error = errno, a->step = "setns";
      return 1;
    }
  }
  int ctl = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (ctl < 0) {
    a->error = errno, a->step = "socket";
    return 1;
  }
  struct ifreq ifr {};
  memcpy(ifr.ifr_name, "lo", 3);
  if (ioctl(ctl, SIOCGIFFLAGS, &ifr) != 0 || (ifr.ifr_flags |= IFF_UP, ioctl(ctl, SIOCSIFFLAGS, &ifr) != 0)) {
    a->error = errno, a->step = "loopback up";
    close(ctl);
    return 1;
  }
  close(ctl);
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in sin {};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(53);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s < 0 || bind(s, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0) {
    a->error = errno, a->step = "bind 127.0.0.1:53";
    if (s >= 0) close(s);
    return 1;
  }
  a->fd = s;
  return 0;
}

}  // namespace

struct NetIntercept::Pending {
  uv_poll_t handle;
  NetIntercept* owner;
  uint64_t notif;
  int fd;
  int target;
  bool cloexec;
  double id;
};

struct NetIntercept::StubPoll {
  uv_poll_t handle;
  NetIntercept* owner;
};

NetIntercept::NetIntercept(Napi::Env env, uv_loop_t* loop, int listener, Napi::Function decide,
                           Napi::Function report, Napi::Function connected, Napi::Function dns)
    : env_(env), loop_(loop), listener_(listener) {
  decide_ = Napi::Persistent(decide);
  report_ = Napi::Persistent(report);
  connected_ = Napi::Persistent(connected);
  dns_ = Napi::Persistent(dns);
  uv_mutex_init(&mu_);
  uv_cond_init(&room_);
  InitSocketDefaults();
}

NetIntercept::~NetIntercept() {
  Stop();
  uv_cond_destroy(&room_);
  uv_mutex_destroy(&mu_);
}

bool NetIntercept::Handles(int nr) { return nr == kNrConnect || nr == kNrListen; }

std::string NetIntercept::OpenStub(int pidfd) {
  constexpr size_t kStack = 64 * 1024;
  std::unique_ptr<char[]> stack(new char[kStack]);
  StubArgs args;
  args.pidfd = pidfd;
  pid_t pid = clone(StubMain, stack.get() + kStack, CLONE_VM | CLONE_FILES | CLONE_VFORK | SIGCHLD, &args);
  if (pid < 0) return std::string("clone: ") + strerror(errno);
  int status = 0;
  while (waitpid(pid, &status, __WALL) < 0 && errno == EINTR) {}
  // The command may already have finished (a short program exits before the host gets here):
  // there is nothing left to serve.
  if (args.fd < 0 && args.error == ESRCH) return "";
  if (args.fd < 0) return std::string(args.step) + ": " + strerror(args.error);
  stub_ = args.fd;
  stub_poll_ = new StubPoll();
  stub_poll_->owner = this;
  stub_poll_->handle.data = stub_poll_;
  if (uv_poll_init(loop_, &stub_poll_->handle, stub_) != 0) {
    delete stub_poll_;
    stub_poll_ = nullptr;
    return "uv_poll_init failed";
  }
  uv_poll_start(&stub_poll_->handle, UV_READABLE, [](uv_poll_t* h, int, int) {
    auto* sp = static_cast<StubPoll*>(h->data);
    if (sp->owner != nullptr) sp->owner->OnStubReadable();
  });
  return "";
}

void NetIntercept::OnStubReadable() {
  for (int i = 0; i < 64; i++) {
    uint8_t buf[1500];
    sockaddr_in from {};
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(stub_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &fl);
    if (n < 0) return;
    Napi::HandleScope scope(env_);
    if (!CanRunJs(env_)) return;
    napi_value args[] = {Napi::Buffer<uint8_t>::Copy(env_, buf, static_cast<size_t>(n)), Napi::Number::New(env_, ntohs(from.sin_port))};
    CallFromLoop(env_, nullptr, env_.Global(), dns_.Value(), 2, args);
  }
}

int NetIntercept::ReplyDns(uint16_t port, const uint8_t* data, size_t len) {
  if (stub_ < 0) return EBADF;
  sockaddr_in to {};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return sendto(stub_, data, len, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0 ? errno : 0;
}

void NetIntercept::Reply(uint64_t id, int64_t val, int error) {
  struct seccomp_notif_resp resp {};
  resp.id = id;
  resp.val = val;
  resp.error = error == 0 ? 0 : -error;
  ioctl(listener_, SECCOMP_IOCTL_NOTIF_SEND, &resp);  // ENOENT: the caller is gone or was interrupted
}

// Puts `host_fd` at the caller's `target_fd` (closing what was there), then answers the connect.
// Two steps, not ADDFD_FLAG_SEND: with SEND the syscall would return the fd number, and connect
// must return 0 or -EINPROGRESS. The caller stays blocked in connect between the two.
void NetIntercept::Install(uint64_t id, int host_fd, uint64_t cookie, int target_fd, bool cloexec, int64_t error) {
  struct seccomp_notif_addfd addfd {};
  addfd.id = id;
  addfd.flags = SECCOMP_ADDFD_FLAG_SETFD;
  addfd.srcfd = static_cast<uint32_t>(host_fd);
  addfd.newfd = static_cast<uint32_t>(target_fd);
  addfd.newfd_flags = cloexec ? O_CLOEXEC : 0;
  if (ioctl(listener_, SECCOMP_IOCTL_NOTIF_ADDFD, &addfd) < 0) {
    Reply(id, 0, errno == ENOENT ? EINTR : errno);
    return;
  }
  uv_mutex_lock(&mu_);
  handed_in_.insert(cookie);
  uv_mutex_unlock(&mu_);
  Reply(id, 0, static_cast<int>(error));
}

void NetIntercept::CallReport(double id, int error, uint64_t cookie) {
  Napi::HandleScope scope(env_);
  napi_value args[] = {Napi::Number::New(env_, id), Napi::Number::New(env_, error), Napi::Number::New(env_, static_cast<double>(cookie))};
  CallFromLoop(env_, nullptr, env_.Global(), report_.Value(), 3, args);
}

void NetIntercept::Handle(const struct seccomp_notif& req) {
  const pid_t tid = static_cast<pid_t>(req.pid);
  int pfd = static_cast<int>(syscall(SYS_pidfd_open, tid, PIDFD_THREAD));
  if (pfd < 0 && errno == EINVAL) pfd = static_cast<int>(syscall(SYS_pidfd_open, tid, 0));
  Fd pidfd(pfd);
  if (pidfd.get() < 0) return Reply(req.id, 0, ESRCH);
  const int target = static_cast<int>(req.data.args[0]);
  Fd dup(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.get(), target, 0)));
  if (dup.get() < 0) return Reply(req.id, 0, errno == EBADF ? EBADF : errno);
  // The pid was read from the notification; make sure it still names the task that made the call
  // (and so that the fd and memory we read are its) before acting on any of it.
  if (ioctl(listener_, SECCOMP_IOCTL_NOTIF_ID_VALID, &req.id) != 0) return;
  struct stat st;
  if (fstat(dup.get(), &st) != 0 || !S_ISSOCK(st.st_mode)) return Reply(req.id, 0, ENOTSOCK);
  if (req.data.nr == kNrListen) return HandleListen(req, dup.get());
  HandleConnect(req, dup.get());
}

void NetIntercept::HandleListen(const struct seccomp_notif& req, int dup) {
  const uint64_t cookie = Cookie(dup);
  uv_mutex_lock(&mu_);
  const bool host_socket = handed_in_.count(cookie) != 0;
  uv_mutex_unlock(&mu_);
  int domain = 0, type = 0;
  GetInt(dup, SOL_SOCKET, SO_DOMAIN, &domain);
  GetInt(dup, SOL_SOCKET, SO_TYPE, &type);
  Napi::HandleScope scope(env_);
  Napi::Object r = Napi::Object::New(env_);
  r.Set("syscall", "listen");
  r.Set("domain", domain == AF_UNIX ? "unix" : domain == AF_INET ? "inet" : domain == AF_INET6 ? "inet6" : "other");
  r.Set("type", TypeName(type));
  r.Set("hostSocket", host_socket);
  r.Set("pid", static_cast<double>(req.pid));
  Napi::Value v = decide_.Call(env_.Global(), {r});
  if (env_.IsExceptionPending() || !v.IsObject()) {
    if (env_.IsExceptionPending()) env_.GetAndClearPendingException();
    return Reply(req.id, 0, EACCES);  // fail closed
  }
  Napi::Object d = v.As<Napi::Object>();
  std::string verdict = d.Get("verdict").ToString().Utf8Value();
  // A host socket can never listen, whatever the policy says: it would accept from the host's network.
  if (verdict != "local" || host_socket) {
    int e = d.Get("errno").IsNumber() ? d.Get("errno").As<Napi::Number>().Int32Value() : EACCES;
    return Reply(req.id, 0, e > 0 ? e : EACCES);
  }
  const int backlog = static_cast<int>(req.data.args[1]);
  Reply(req.id, 0, listen(dup, backlog) == 0 ? 0 : errno);
}

void NetIntercept::HandleConnect(const struct seccomp_notif& req, int dup) {
  const pid_t tid = static_cast<pid_t>(req.pid);
  const int target = static_cast<int>(req.data.args[0]);
  sockaddr_storage ss {};
  socklen_t len = static_cast<socklen_t>(req.data.args[2]);
  if (len > sizeof ss || len < sizeof(sa_family_t)) return Reply(req.id, 0, EINVAL);
  struct iovec local = {&ss, len};
  struct iovec remote = {reinterpret_cast<void*>(req.data.args[1]), len};
  if (process_vm_readv(tid, &local, 1, &remote, 1, 0) != static_cast<ssize_t>(len)) return Reply(req.id, 0, EFAULT);
  if (ioctl(listener_, SECCOMP_IOCTL_NOTIF_ID_VALID, &req.id) != 0) return;

  int domain = 0, type = 0, protocol = 0;
  GetInt(dup, SOL_SOCKET, SO_DOMAIN, &domain);
  GetInt(dup, SOL_SOCKET, SO_TYPE, &type);
  GetInt(dup, SOL_SOCKET, SO_PROTOCOL, &protocol);
  const uint64_t cookie = Cookie(dup);
  uv_mutex_lock(&mu_);
  const bool host_socket = handed_in_.count(cookie) != 0;
  uv_mutex_unlock(&mu_);

  // Unix sockets stay in the sandbox: its files, its abstract names.
  if (domain == AF_UNIX) {
    if (ss.ss_family != AF_UNIX) return Reply(req.id, 0, EINVAL);
    return Reply(req.id, 0, UnixConnect(tid, dup, reinterpret_cast<sockaddr_un*>(&ss), len));
  }
  // Netlink (the only other family the profiles allow) talks to the kernel of the socket's own
  // namespace, the sandbox's.
  if (domain != AF_INET && domain != AF_INET6) return Reply(req.id, 0, LocalConnect(dup, reinterpret_cast<sockaddr*>(&ss), len));

  char text[INET6_ADDRSTRLEN] = "";
  int port = 0;
  const char* family = "other";
  if (ss.ss_family == AF_INET && len >= sizeof(sockaddr_in)) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
    port = ntohs(sin->sin_port);
    family = "inet";
  } else if (ss.ss_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
    port = ntohs(sin6->sin6_port);
    family = "inet6";
  } else if (ss.ss_family == AF_UNSPEC) {
    family = "unspec";
  }

  Napi::HandleScope scope(env_);
  Napi::Object r = Napi::Object::New(env_);
  r.Set("syscall", "connect");
  r.Set("domain", domain == AF_INET ? "inet" : "inet6");
  r.Set("family", family);
  r.Set("address", text);
  r.Set("port", port);
  r.Set("type", TypeName(type));
  r.Set("protocol", protocol);
  r.Set("hostSocket", host_socket);
  r.Set("pid", static_cast<double>(tid));
  // Connects the thread made under the lease and JS has not counted yet; no more until JS leases
  // again, so JS's limits hold for both.
  r.Set("inFlight", RevokeLease());
  // Call, not MakeCallback: the sandbox's thread waits, and the microtask checkpoint MakeCallback
  // runs afterwards belongs after the reply (report's MakeCallback runs it).
  Napi::Value v = decide_.Call(env_.Global(), {r});
  if (env_.IsExceptionPending() || !v.IsObject()) {
    if (env_.IsExceptionPending()) {
      Napi::Error e = env_.GetAndClearPendingException();
      Reply(req.id, 0, EACCES);  // fail closed, then let the host see its bug
      napi_fatal_exception(env_, e.Value());
      return;
    }
    return Reply(req.id, 0, EACCES);
  }
  Napi::Object d = v.As<Napi::Object>();
  const std::string verdict = d.Get("verdict").ToString().Utf8Value();
  const double id = d.Get("id").IsNumber() ? d.Get("id").As<Napi::Number>().DoubleValue() : -1;
  if (verdict == "local") {
    // Only ever on the caller's own socket, which lives in the sandbox's namespace.
    if (host_socket) return Reply(req.id, 0, EACCES);
    return Reply(req.id, 0, LocalConnect(dup, reinterpret_cast<sockaddr*>(&ss), len));
  }
  if (verdict != "host" || (type != SOCK_STREAM) || (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
    int e = d.Get("errno").IsNumber() ? d.Get("errno").As<Napi::Number>().Int32Value() : EACCES;
    return Reply(req.id, 0, e > 0 ? e : EACCES);
  }
  // The exact address and port JS checked, for the thread's next connects there (net_fast.cc).
  if (d.Get("lease").IsNumber()) Lease(ss, d.Get("lease").As<Napi::Number>().Int32Value());

  // 'host': a new socket of the same kind in the host's namespace, connected to exactly `ss`.
  const bool nonblocking = (fcntl(dup, F_GETFL) & O_NONBLOCK) != 0;
  const bool cloexec = TargetCloexec(tid, target);
  Fd s(socket(domain, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol));
  if (s.get() < 0) {
    int e = errno;
    Reply(req.id, 0, e);
    return CallReport(id, e, 0);
  }
  CopyOptions(dup, s.get(), domain);
  int err = connect(s.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0 ? 0 : errno;
  if (err != 0 && err != EINPROGRESS) {
    Reply(req.id, 0, err);
    return CallReport(id, err, 0);
  }
  if (err == 0 || nonblocking) {
    if (!nonblocking) fcntl(s.get(), F_SETFL, fcntl(s.get(), F_GETFL) & ~O_NONBLOCK);
    const uint64_t c = Cookie(s.get());
    Install(req.id, s.get(), c, target, cloexec, err);
    return CallReport(id, 0, c);
  }
  // A blocking caller: it waits in connect while the host's event loop waits for the handshake.
  auto* p = new Pending();
  p->owner = this;
  p->notif = req.id;
  p->fd = s.release();
  p->target = target;
  p->cloexec = cloexec;
  p->id = id;
  p->handle.data = p;
  if (uv_poll_init(loop_, &p->handle, p->fd) != 0) {
    close(p->fd);
    delete p;
    Reply(req.id, 0, ENOMEM);
    return CallReport(id, ENOMEM, 0);
  }
  pending_[p] = true;
  uv_poll_start(&p->handle, UV_WRITABLE, [](uv_poll_t* h, int status, int) {
    auto* pp = static_cast<Pending*>(h->data);
    int e = 0;
    socklen_t el = sizeof e;
    if (status < 0) e = -status;
    else if (getsockopt(pp->fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0) e = errno;
    if (pp->owner != nullptr) pp->owner->Finish(pp, e);
  });
}

void NetIntercept::Finish(Pending* p, int error) {
  pending_.erase(p);
  uv_poll_stop(&p->handle);
  uint64_t c = 0;
  if (error == 0) {
    fcntl(p->fd, F_SETFL, fcntl(p->fd, F_GETFL) & ~O_NONBLOCK);
    c = Cookie(p->fd);
    Install(p->notif, p->fd, c, p->target, p->cloexec, 0);
  } else {
    Reply(p->notif, 0, error);
  }
  close(p->fd);
  p->fd = -1;
  const double id = p->id;
  uv_close(reinterpret_cast<uv_handle_t*>(&p->handle), [](uv_handle_t* h) { delete static_cast<Pending*>(h->data); });
  CallReport(id, error, c);
}

void NetIntercept::Stop() {
  StopThread();
  queue_.clear();
  if (async_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(async_), [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
    async_ = nullptr;
  }
  if (wake_ >= 0) {
    close(wake_);
    wake_ = -1;
  }
  for (auto& [p, _] : pending_) {
    p->owner = nullptr;
    uv_poll_stop(&p->handle);
    close(p->fd);
    uv_close(reinterpret_cast<uv_handle_t*>(&p->handle), [](uv_handle_t* h) { delete static_cast<Pending*>(h->data); });
  }
  pending_.clear();
  if (stub_poll_ != nullptr) {
    stub_poll_->owner = nullptr;
    uv_poll_stop(&stub_poll_->handle);
    uv_close(reinterpret_cast<uv_handle_t*>(&stub_poll_->handle), [](uv_handle_t* h) { delete static_cast<StubPoll*>(h->data); });
    stub_poll_ = nullptr;
  }
  if (stub_ >= 0) {
    close(stub_);
    stub_ = -1;
  }
}

}  // namespace warden

// The listener thread of a network intercept (see net_intercept.h): it receives every notification,
// makes the connects JS leased, and queues the rest, in order, for the event loop.
//
// Why a thread: a connect decided on the event loop waited for the loop to wake up, for JS to
// decide and for the loop again; measured, those were most of what an intercepted connect cost
// over a direct one. The thread sleeps in poll on the listener alone, and with
// SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP the kernel wakes it on the CPU of the sandbox's task that
// called (which then sleeps until answered), and wakes that task back on the thread's CPU.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "js_callback.h"
#include "net_intercept.h"
#include "net_socket.h"

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif
#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif

namespace warden {

namespace {

constexpr int kNrConnect = 42;  // x86_64
// What the queue to the event loop holds at most. Each item is one notification or one outcome;
// past this the thread stops receiving (the sandbox's callers wait in the kernel).
constexpr size_t kQueueMax = 256;
// How long a leased destination and the lease's count stay valid: what JS decided is at most this
// old when the thread acts on it (JS itself refreshes the host's own addresses every 5 s).
constexpr uint64_t kLeaseNs = 1000ull * 1000 * 1000;
// Destinations leased at once; past this the oldest go (they are asked about again).
constexpr size_t kLeasedMax = 64;
constexpr size_t kKeyLen = 19;
// How long the outcome of a connect the thread made may wait in the queue before the event loop is
// woken for it (with whatever else came meanwhile). A notification for the loop wakes it at once.
constexpr uint64_t kOutcomesNs = 5ull * 1000 * 1000;

uint64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

double EpochMs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) * 1000.0 + static_cast<double>(ts.tv_nsec / 1000000);
}

// family, port, address: the exact destination JS checked. false when `ss` cannot be leased (not
// inet, or an IPv6 scope, which picks an interface the check did not see).
bool KeyOf(const sockaddr_storage& ss, socklen_t len, uint8_t key[kKeyLen]) {
  memset(key, 0, kKeyLen);
  if (ss.ss_family == AF_INET && len >= sizeof(sockaddr_in)) {
    auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    key[0] = AF_INET;
    memcpy(key + 1, &sin->sin_port, 2);
    memcpy(key + 3, &sin->sin_addr, 4);
    return true;
  }
  if (ss.ss_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (sin6->sin6_scope_id != 0) return false;
    key[0] = AF_INET6;
    memcpy(key + 1, &sin6->sin6_port, 2);
    memcpy(key + 3, &sin6->sin6_addr, 16);
    return true;
  }
  return false;
}

}  // namespace

std::string NetIntercept::Start(std::function<void(const struct seccomp_notif&)> dispatch) {
  dispatch_ = std::move(dispatch);
  wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_ < 0) return std::string("eventfd: ") + strerror(errno);
  async_ = new uv_async_t();
  async_->data = this;
  if (uv_async_init(loop_, async_, [](uv_async_t* h) { static_cast<NetIntercept*>(h->data)->OnAsync(); }) != 0) {
    delete async_;
    async_ = nullptr;
    return "uv_async_init failed";
  }
  // 6.6 and later; without it the thread works the same, woken wherever the scheduler chooses.
  uint64_t flags = SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP;
  ioctl(listener_, SECCOMP_IOCTL_NOTIF_SET_FLAGS, flags);
  uv_thread_options_t opts;
  opts.flags = UV_THREAD_HAS_STACK_SIZE;
  opts.stack_size = 256 * 1024;
  if (uv_thread_create_ex(&thread_, &opts, ThreadMain, this) != 0) return "uv_thread_create failed";
  thread_started_ = true;
  return "";
}

void NetIntercept::ThreadMain(void* self) { static_cast<NetIntercept*>(self)->Run(); }

void NetIntercept::Run() {
  struct pollfd fds[2] = {{listener_, POLLIN, 0}, {wake_, POLLIN, 0}};
  for (;;) {
    int timeout = -1;
    if (flush_at_ != 0) {
      const uint64_t now = NowNs();
      if (now >= flush_at_) {
        flush_at_ = 0;
        uv_async_send(async_);
      } else {
        timeout = static_cast<int>((flush_at_ - now + 999999) / 1000000);
      }
    }
    const int n = poll(fds, 2, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (n == 0) continue;  // the outcomes' wake-up is due
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) return;  // POLLHUP: the sandbox is gone
    Item item;
    if (ioctl(listener_, SECCOMP_IOCTL_NOTIF_RECV, &item.req) != 0) {
      // ENOENT: the caller died before we read it. Anything else: nothing more will come.
      if (errno == ENOENT || errno == EINTR) continue;
      return;
    }
    if (TryFast(item.req)) continue;
    if (!Push(std::move(item))) return;
  }
}

// A connect the lease covers, made here; false (nothing done that the event loop would not redo)
// for anything else.
bool NetIntercept::TryFast(const struct seccomp_notif& req) {
  if (req.data.nr != kNrConnect) return false;
  const pid_t tid = static_cast<pid_t>(req.pid);
  sockaddr_storage ss {};
  const socklen_t len = static_cast<socklen_t>(req.data.args[2]);
  if (len > sizeof ss || len < sizeof(sockaddr_in)) return false;
  struct iovec local = {&ss, len};
  struct iovec remote = {reinterpret_cast<void*>(req.data.args[1]), len};
  if (process_vm_readv(tid, &local, 1, &remote, 1, 0) != static_cast<ssize_t>(len)) return false;
  uint8_t key[kKeyLen];
  if (!KeyOf(ss, len, key)) return false;
  auto covered = [&](uint64_t now) {
    if (tokens_ <= 0 || now >= tokens_until_) return false;
    for (const Leased& l : leased_) {
      if (now < l.until && memcmp(l.key, key, kKeyLen) == 0) return true;
    }
    return false;
  };
  uv_mutex_lock(&mu_);
  bool ok = covered(NowNs()) && queue_.size() < kQueueMax;
  uv_mutex_unlock(&mu_);
  if (!ok) return false;

  // As on the event loop (NetIntercept::Handle): the caller's socket through a pidfd of its thread,
  // then the notification checked still live, so the fd and the address read are the caller's.
  int pfd = static_cast<int>(syscall(SYS_pidfd_open, tid, PIDFD_THREAD));
  if (pfd < 0 && errno == EINVAL) pfd = static_cast<int>(syscall(SYS_pidfd_open, tid, 0));
  Fd pidfd(pfd);
  if (pidfd.get() < 0) return false;
  const int target = static_cast<int>(req.data.args[0]);
  Fd dup(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.get(), target, 0)));
  if (dup.get() < 0) return false;
  if (ioctl(listener_, SECCOMP_IOCTL_NOTIF_ID_VALID, &req.id) != 0) return false;
  struct stat st;
  int domain = 0, type = 0, protocol = 0;
  if (fstat(dup.get(), &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  if (GetInt(dup.get(), SOL_SOCKET, SO_DOMAIN, &domain) != 0 || GetInt(dup.get(), SOL_SOCKET, SO_TYPE, &type) != 0 ||
      GetInt(dup.get(), SOL_SOCKET, SO_PROTOCOL, &protocol) != 0)
    return false;
  // Only what JS would answer 'host' for and the thread can finish without waiting: a stream
  // socket of the address's family, non-blocking (a blocking caller waits for the handshake, which
  // the event loop does), and not a host socket already handed in (reconnecting one is JS's call).
  if (type != SOCK_STREAM || domain != ss.ss_family || (fcntl(dup.get(), F_GETFL) & O_NONBLOCK) == 0) return false;
  const uint64_t cookie = Cookie(dup.get());
  uv_mutex_lock(&mu_);
  ok = handed_in_.count(cookie) == 0 && covered(NowNs());
  if (ok) {
    tokens_--;
    in_flight_++;
  }
  uv_mutex_unlock(&mu_);
  if (!ok) return false;

  // From here the connect is the thread's: same steps as NetIntercept::HandleConnect's 'host' path.
  Item out;
  out.fast = true;
  out.at = EpochMs();
  if (domain == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sin->sin_addr, out.address, sizeof out.address);
    out.port = ntohs(sin->sin_port);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &sin6->sin6_addr, out.address, sizeof out.address);
    out.port = ntohs(sin6->sin6_port);
  }
  const bool cloexec = TargetCloexec(tid, target);
  Fd s(socket(domain, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol));
  if (s.get() < 0) {
    out.error = errno;
  } else {
    CopyOptions(dup.get(), s.get(), domain);
    out.error = connect(s.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0 ? 0 : errno;
  }
  if (out.error != 0 && out.error != EINPROGRESS) {
    Reply(req.id, 0, out.error);
  } else {
    out.cookie = Cookie(s.get());
    Install(req.id, s.get(), out.cookie, target, cloexec, out.error);
    out.error = 0;
  }
  Push(std::move(out));  // false only when stopping: the sandbox is gone, nobody reads the outcome
  return true;
}

// Waits while the queue is full. false: stopping. Called on the thread only.
bool NetIntercept::Push(Item&& item) {
  const bool item_fast = item.fast;
  uv_mutex_lock(&mu_);
  while (queue_.size() >= kQueueMax && !stopping_) uv_cond_wait(&room_, &mu_);
  const bool ok = !stopping_;
  if (ok) {
    queue_.push_back(std::move(item));
    if (queue_.size() > queue_peak_) queue_peak_ = queue_.size();
  }
  const size_t queued = queue_.size();
  uv_mutex_unlock(&mu_);
  if (!ok) return false;
  // A notification wakes the loop now: the sandbox's caller waits for it (and the outcomes queued
  // before it are delivered first, in order). An outcome of a connect the thread made waits up to
  // kOutcomesNs for others: measured, waking the loop for each one put its work on the CPU the
  // sandbox and the thread need (its timestamp is the connect's, not the delivery's).
  if (!item_fast || queued >= kQueueMax / 2) {
    flush_at_ = 0;
    uv_async_send(async_);
  } else if (flush_at_ == 0) {
    flush_at_ = NowNs() + kOutcomesNs;
  }
  return true;
}

void NetIntercept::OnAsync() {
  std::deque<Item> items;
  uv_mutex_lock(&mu_);
  items.swap(queue_);
  uv_cond_signal(&room_);
  uv_mutex_unlock(&mu_);
  for (Item& item : items) Deliver(item);
}

void NetIntercept::Deliver(Item& item) {
  if (!item.fast) {
    dispatch_(item.req);
    return;
  }
  uv_mutex_lock(&mu_);
  in_flight_--;
  uv_mutex_unlock(&mu_);
  Napi::HandleScope scope(env_);
  napi_value args[] = {Napi::String::New(env_, item.address), Napi::Number::New(env_, item.port),
                       Napi::Number::New(env_, item.error), Napi::Number::New(env_, static_cast<double>(item.cookie)),
                       Napi::Number::New(env_, item.at)};
  CallFromLoop(env_, nullptr, env_.Global(), connected_.Value(), 5, args);
}

int NetIntercept::RevokeLease() {
  uv_mutex_lock(&mu_);
  tokens_ = 0;
  const int n = in_flight_;
  uv_mutex_unlock(&mu_);
  return n;
}

void NetIntercept::Lease(const sockaddr_storage& ss, int tokens) {
  uint8_t key[kKeyLen];
  if (tokens <= 0 || !KeyOf(ss, sizeof ss, key)) return;
  const uint64_t now = NowNs();
  uv_mutex_lock(&mu_);
  size_t kept = 0;
  for (const Leased& l : leased_) {
    if (now < l.until && memcmp(l.key, key, kKeyLen) != 0) leased_[kept++] = l;
  }
  leased_.resize(kept);
  if (leased_.size() >= kLeasedMax) leased_.erase(leased_.begin());
  Leased l;
  memcpy(l.key, key, kKeyLen);
  l.until = now + kLeaseNs;
  leased_.push_back(l);
  tokens_ = tokens;
  tokens_until_ = now + kLeaseNs;
  uv_mutex_unlock(&mu_);
}

void NetIntercept::StopThread() {
  if (!thread_started_) return;
  uv_mutex_lock(&mu_);
  stopping_ = true;
  uv_cond_signal(&room_);
  uv_mutex_unlock(&mu_);
  uint64_t one = 1;
  if (write(wake_, &one, sizeof one) < 0) {}  // an eventfd write fails only on overflow
  uv_thread_join(&thread_);
  thread_started_ = false;
}

void NetIntercept::Drain() {
  StopThread();
  OnAsync();
}

void NetIntercept::SetRef(bool ref) {
  if (async_ == nullptr) return;
  if (ref) uv_ref(reinterpret_cast<uv_handle_t*>(async_));
  else uv_unref(reinterpret_cast<uv_handle_t*>(async_));
}

size_t NetIntercept::QueuePeak() {
  uv_mutex_lock(&mu_);
  const size_t n = queue_peak_;
  uv_mutex_unlock(&mu_);
  return n;
}

}  // namespace warden

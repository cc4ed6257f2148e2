#include "channel.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace warden {
namespace channel {

namespace {

std::string Errno(const char* what, int err) { return std::string(what) + ": " + std::strerror(err); }

uint64_t MappingSize(const Config& c) { return kControlSize + 2 * c.ring_size; }

// Not FUTEX_PRIVATE: the word lives in a mapping shared with another process.
long Futex(std::atomic<uint32_t>* word, int op, uint32_t val, const struct timespec* ts) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op, val, ts, nullptr, 0);
}

}  // namespace

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) reset(o.release());
  return *this;
}

void Fd::reset(int fd) {
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
}

Mapping::~Mapping() {
  if (addr_ != nullptr) munmap(addr_, size_);
}

std::string CheckConfig(const Config& c) {
  if (c.ring_size < kMinRingSize || c.ring_size > kMaxRingSize || (c.ring_size & (c.ring_size - 1)) != 0)
    return "ringSize must be a power of two between 4 KiB and 1 GiB";
  if (c.max_message < 1024 || c.max_message > (uint64_t{1} << 32) - 1)
    return "maxMessage must be between 1 KiB and 4 GiB - 1";
  return "";
}

Endpoint::Endpoint(Side side, const Config& config)
    : side_(side), config_(config), encoder_(config.ring_size), decoder_(config.ring_size, config.max_message) {}

std::unique_ptr<Endpoint> Endpoint::CreateHost(const Config& config, std::string* error) {
  *error = CheckConfig(config);
  if (!error->empty()) return nullptr;
  std::unique_ptr<Endpoint> ep(new Endpoint(kHost, config));
  const uint64_t size = MappingSize(config);

  ep->memfd_.reset(static_cast<int>(syscall(SYS_memfd_create, "warden-channel", MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  if (ep->memfd_.get() < 0) return *error = Errno("memfd_create", errno), nullptr;
  if (ftruncate(ep->memfd_.get(), static_cast<off_t>(size)) != 0) return *error = Errno("ftruncate", errno), nullptr;
  // A sandbox that could shrink the file would make the host's next access fault (SIGBUS).
  if (fcntl(ep->memfd_.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
    return *error = Errno("fcntl(F_ADD_SEALS)", errno), nullptr;
  void* addr = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, ep->memfd_.get(), 0);
  if (addr == MAP_FAILED) return *error = Errno("mmap", errno), nullptr;
  ep->map_.reset(new Mapping(addr, size));

  // Each side polls its own eventfd and writes the other's.
  ep->own_efd_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (ep->own_efd_.get() < 0) return *error = Errno("eventfd", errno), nullptr;
  ep->peer_efd_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (ep->peer_efd_.get() < 0) return *error = Errno("eventfd", errno), nullptr;
  int alive[2];
  if (pipe2(alive, O_CLOEXEC | O_NONBLOCK) != 0) return *error = Errno("pipe2", errno), nullptr;
  ep->alive_read_.reset(alive[0]);
  ep->alive_write_.reset(alive[1]);

  SharedControl* c = ep->ctl();
  c->magic = kMagic;
  c->version = kVersion;
  c->ring_size = config.ring_size;
  return ep;
}

std::unique_ptr<Endpoint> Endpoint::AttachSandbox(const Config& config, int memfd, int own_efd, int peer_efd,
                                                  std::string* error) {
  Fd mem(memfd), own(own_efd), peer(peer_efd);
  *error = CheckConfig(config);
  if (!error->empty()) return nullptr;
  std::unique_ptr<Endpoint> ep(new Endpoint(kSandbox, config));
  const uint64_t size = MappingSize(config);
  struct stat st;
  if (fstat(mem.get(), &st) != 0) return *error = Errno("fstat(channel memfd)", errno), nullptr;
  if (static_cast<uint64_t>(st.st_size) != size) return *error = "channel memfd has the wrong size", nullptr;
  void* addr = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, mem.get(), 0);
  if (addr == MAP_FAILED) return *error = Errno("mmap(channel)", errno), nullptr;
  ep->map_.reset(new Mapping(addr, size));
  if (ep->ctl()->magic != kMagic || ep->ctl()->version != kVersion || ep->ctl()->ring_size != config.ring_size)
    return *error = "channel header does not match (magic, version or ring size)", nullptr;
  // The mapping stays valid without the fd; not keeping it leaves one fd less for the plugin to misuse.
  ep->own_efd_ = std::move(own);
  ep->peer_efd_ = std::move(peer);
  int fl = fcntl(ep->own_efd_.get(), F_GETFL);
  if (fl >= 0) fcntl(ep->own_efd_.get(), F_SETFL, fl | O_NONBLOCK);
  return ep;
}

ChildFds Endpoint::child_fds() const {
  ChildFds f;
  f.memfd = memfd_.get();
  f.host_efd = own_efd_.get();
  f.sandbox_efd = peer_efd_.get();
  f.alive_write = alive_write_.get();
  return f;
}

void Endpoint::ReleaseChildFds() {
  memfd_.reset();
  alive_write_.reset();
}

void Endpoint::NotifyPeer() {
  WakeWord& w = ctl()->wake[1 - side_];
  // Our publish (a seq_cst store) comes before this load; a peer that announces its sleep later
  // re-checks the ring after announcing and sees the publish. So an awake peer costs one load.
  uint32_t state = w.sleep.load(std::memory_order_seq_cst);
  if (state == kAwake) return;
  if (state == kSleepFutex) {
    // The bump makes a FUTEX_WAIT that has not started yet return at once.
    w.seq.fetch_add(1, std::memory_order_seq_cst);
    Futex(&w.seq, FUTEX_WAKE, 1, nullptr);
  } else if (state == kSleepEventfd) {
    // Claim the wake-up so a burst of messages costs one write, not one per message.
    if (w.sleep.compare_exchange_strong(state, kAwake, std::memory_order_seq_cst)) {
      uint64_t one = 1;
      ssize_t r = write(peer_efd_.get(), &one, sizeof one);
      (void)r;  // EAGAIN means the counter is already non-zero: the peer will wake anyway.
    }
  }
}

FrameEncoder::Status Endpoint::Send(const Span* spans, size_t nspans, uint64_t total) {
  SharedControl* c = ctl();
  const int tx = side_;
  for (;;) {
    const uint64_t tail = c->tail[tx].value.load(std::memory_order_acquire);
    const uint64_t before = encoder_.head();
    FrameEncoder::Status st = encoder_.Write(ring(tx), tail, spans, nspans, total);
    if (encoder_.head() != before) {
      // Published chunk by chunk: a consumer that is awake starts copying out the first while we
      // copy in the next.
      c->head[tx].value.store(encoder_.head(), std::memory_order_seq_cst);
      NotifyPeer();
    }
    if (st != FrameEncoder::kMore) return st;
  }
}

bool Endpoint::SendClose() {
  if (encoder_.in_message()) return false;
  SharedControl* c = ctl();
  const int tx = side_;
  if (!encoder_.WriteClose(ring(tx), c->tail[tx].value.load(std::memory_order_acquire))) return false;
  c->head[tx].value.store(encoder_.head(), std::memory_order_seq_cst);
  NotifyPeer();
  return true;
}

bool Endpoint::RequestSpace() {
  SharedControl* c = ctl();
  c->wake[side_].want_space.store(1, std::memory_order_seq_cst);
  // Any progress by the consumer is worth another try; a lying tail is caught by the next Send.
  return c->tail[side_].value.load(std::memory_order_seq_cst) != encoder_.last_tail();
}

FrameDecoder::Status Endpoint::Receive(MessageSink* sink) {
  SharedControl* c = ctl();
  const int rx = 1 - side_;
  const uint64_t head = c->head[rx].value.load(std::memory_order_acquire);
  const uint64_t before = decoder_.tail();
  FrameDecoder::Status st = decoder_.Next(ring(rx), head, sink);
  if (decoder_.tail() != before) {
    c->tail[rx].value.store(decoder_.tail(), std::memory_order_seq_cst);
    WakeWord& pw = c->wake[1 - side_];
    if (pw.want_space.load(std::memory_order_seq_cst) != 0) {
      pw.want_space.store(0, std::memory_order_relaxed);
      NotifyPeer();
    }
  }
  return st;
}

bool Endpoint::RxPending() const {
  const int rx = 1 - side_;
  return ctl()->head[rx].value.load(std::memory_order_acquire) != decoder_.tail();
}

void Endpoint::SleepFutex(int64_t timeout_ns) {
  if (timeout_ns <= 0) return;
  WakeWord& w = ctl()->wake[side_];
  const uint32_t seq = w.seq.load(std::memory_order_seq_cst);
  w.sleep.store(kSleepFutex, std::memory_order_seq_cst);
  // Re-check after announcing the sleep: a publish before the announcement is seen here, one
  // after it changes `seq` or finds kSleepFutex and wakes us.
  const bool space = w.want_space.load(std::memory_order_relaxed) != 0;
  const bool ready = RxPending() || (space && ctl()->tail[side_].value.load(std::memory_order_seq_cst) !=
                                                  encoder_.last_tail());
  if (!ready) {
    struct timespec ts;
    ts.tv_sec = timeout_ns / 1000000000;
    ts.tv_nsec = timeout_ns % 1000000000;
    Futex(&w.seq, FUTEX_WAIT, seq, &ts);
  }
  w.sleep.store(kAwake, std::memory_order_seq_cst);
}

bool Endpoint::ArmEventfd(bool want_space, bool want_rx) {
  WakeWord& w = ctl()->wake[side_];
  if (want_space) w.want_space.store(1, std::memory_order_seq_cst);
  w.sleep.store(kSleepEventfd, std::memory_order_seq_cst);
  if (want_rx && RxPending()) return true;
  if (want_space && ctl()->tail[side_].value.load(std::memory_order_seq_cst) != encoder_.last_tail()) return true;
  return false;
}

void Endpoint::MarkAwake() { ctl()->wake[side_].sleep.store(kAwake, std::memory_order_seq_cst); }

void Endpoint::DrainEventfd() {
  uint64_t v;
  ssize_t r = read(own_efd_.get(), &v, sizeof v);
  (void)r;
}

void Endpoint::SelfWake() {
  uint64_t one = 1;
  ssize_t r = write(own_efd_.get(), &one, sizeof one);
  (void)r;
}

bool Endpoint::PeerAlive() {
  if (peer_gone_) return false;
  if (alive_read_.get() < 0) return true;
  struct pollfd p = {alive_read_.get(), POLLIN, 0};
  int r = poll(&p, 1, 0);
  if (r > 0 && (p.revents & (POLLHUP | POLLERR | POLLIN)) != 0) {
    char b;
    // Nobody writes the pipe; a byte is a peer misbehaving, which also counts as gone.
    ssize_t n = read(alive_read_.get(), &b, 1);
    if (n == 0 || n == 1 || (p.revents & (POLLHUP | POLLERR)) != 0) peer_gone_ = true;
  }
  return !peer_gone_;
}

}  // namespace channel
}  // namespace warden

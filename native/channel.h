// The shared-memory channel: one memfd mapping holding a control block and two single-producer
// single-consumer rings (ring 0: host → sandbox, ring 1: sandbox → host).
//
// Wake-ups: a side that is about to sleep says how in its WakeWord (futex or eventfd) and re-checks
// the ring; the peer publishes, then looks at `sleep` (a Dekker pair, both seq_cst) and wakes it
// (bumping `seq` first for a futex sleeper), so a wake-up is never lost. Blocking waits (callSync)
// sleep on the futex; the event loop sleeps on its eventfd under uv_poll. Nobody is woken while it
// is awake: spinning, or (the host) polling the ring from its event loop, so a busy pair makes no
// syscalls at all. Each side also notes the CPU it waits on, so the other does not spin for a peer
// that cannot be running.
//
// Trust: the host treats every byte of the mapping as hostile. It keeps its own positions privately
// and only writes them out, reads the sandbox's positions once per step and bounds them, and
// never stores a pointer in the mapping. The memfd is sealed against resizing, so the sandbox
// cannot truncate it under the host (SIGBUS).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "channel_frame.h"

namespace warden {
namespace channel {

constexpr uint32_t kMagic = 0x48434457;  // "WDCH"
constexpr uint32_t kVersion = 1;
constexpr uint64_t kControlSize = 4096;

enum Side : int { kHost = 0, kSandbox = 1 };

enum SleepState : uint32_t {
  kAwake = 0,
  kSleepFutex = 1,    // waiting in futex(seq): wake with FUTEX_WAKE
  kSleepEventfd = 2,  // its event loop polls its eventfd: wake by writing it
};

struct alignas(64) SharedPosition {
  std::atomic<uint64_t> value;
};

struct alignas(64) WakeWord {
  std::atomic<uint32_t> sleep;       // SleepState, written by the owner, claimed by the waker
  std::atomic<uint32_t> seq;         // futex word, bumped by the peer to wake a futex sleeper
  std::atomic<uint32_t> want_space;  // the owner's send is blocked on a full ring
  std::atomic<uint32_t> cpu;         // 1 + the CPU the owner last started waiting on (0: unknown)
};

struct SharedControl {
  alignas(64) uint32_t magic;
  uint32_t version;
  uint64_t ring_size;
  SharedPosition head[2];
  SharedPosition tail[2];
  WakeWord wake[2];
};
static_assert(sizeof(SharedControl) <= kControlSize, "control block fits its page");
static_assert(std::atomic<uint64_t>::is_always_lock_free, "positions must be lock-free to be shared");

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// An owned shared mapping.
class Mapping {
 public:
  Mapping() = default;
  Mapping(void* addr, size_t size) : addr_(addr), size_(size) {}
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping();
  uint8_t* data() const { return static_cast<uint8_t*>(addr_); }

 private:
  void* addr_ = nullptr;
  size_t size_ = 0;
};

struct Config {
  uint64_t ring_size = 1 << 20;      // bytes per direction, power of two
  // Largest message either side accepts: 64 MiB of payload plus room for the RPC envelope.
  uint64_t max_message = (64 << 20) + (64 << 10);
};

// Fds the host hands to the sandbox. The host keeps its copies until ReleaseChildFds().
struct ChildFds {
  int memfd = -1;
  int host_efd = -1;     // the sandbox writes it to wake the host
  int sandbox_efd = -1;  // the sandbox polls it
  int alive_write = -1;  // held open by the sandbox; its end-of-file tells the host the peer is gone
};

// One side of a channel. Single-threaded: every method runs on the thread that owns the side.
class Endpoint {
 public:
  static std::unique_ptr<Endpoint> CreateHost(const Config& config, std::string* error);
  // Takes ownership of the three fds (also on failure).
  static std::unique_ptr<Endpoint> AttachSandbox(const Config& config, int memfd, int own_efd, int peer_efd,
                                                 std::string* error);

  Side side() const { return side_; }
  const Config& config() const { return config_; }
  ChildFds child_fds() const;
  void ReleaseChildFds();

  // Send: writes what fits of one message, publishes it and wakes the peer if it sleeps.
  FrameEncoder::Status Send(const Span* spans, size_t nspans, uint64_t total);
  bool SendClose();
  bool mid_message() const { return encoder_.in_message(); }
  // Announces that a send waits for space and says whether space appeared meanwhile.
  bool RequestSpace();
  const std::string& send_error() const { return encoder_.error(); }

  // Receive: decodes up to one message, releases the ring space and wakes a blocked producer.
  FrameDecoder::Status Receive(MessageSink* sink);
  const std::string& receive_error() const { return decoder_.error(); }
  // Cheap check for spinning: has the peer published anything?
  bool RxPending() const;
  // Bytes received so far (private), and whether a chunked message is half assembled.
  uint64_t RxTail() const { return decoder_.tail(); }
  bool assembling() const { return decoder_.assembling(); }
  // The consumer's position of our ring as it is in the mapping now (untrusted: only compared, for
  // progress; Send checks it), and the last one Send accepted.
  uint64_t PeerTail() const { return ctl()->tail[side_].value.load(std::memory_order_acquire); }
  uint64_t LastTail() const { return encoder_.last_tail(); }
  // Where each side waits, for the spin policy only: a peer that last ran on the CPU we run on is
  // not running now, and spinning for it is wasted. The peer's value is untrusted; a wrong one
  // costs only that policy.
  void PublishCpu(int cpu) { ctl()->wake[side_].cpu.store(static_cast<uint32_t>(cpu + 1), std::memory_order_relaxed); }
  int PeerCpu() const { return static_cast<int>(ctl()->wake[1 - side_].cpu.load(std::memory_order_relaxed)) - 1; }

  // Waiting. The owner is kAwake while it runs; these move it to a sleep state and back.
  // Sleeps on the futex until woken or `timeout_ns` passes. Returns after at most that long.
  void SleepFutex(int64_t timeout_ns);
  // Before the event loop sleeps: arms the eventfd wake-up. Returns true if data (when `want_rx`)
  // or space (when `want_space`) is already there (the caller should not sleep).
  bool ArmEventfd(bool want_space, bool want_rx = true);
  void MarkAwake();
  void DrainEventfd();
  // Wakes our own event loop (work remains that the next loop iteration should do).
  void SelfWake();

  int own_efd() const { return own_efd_.get(); }
  int alive_fd() const { return alive_read_.get(); }  // host only; -1 in the sandbox
  // Host: false once every copy of the sandbox's alive pipe is closed (the peer exited).
  bool PeerAlive();

 private:
  Endpoint(Side side, const Config& config);
  void NotifyPeer();
  SharedControl* ctl() const { return reinterpret_cast<SharedControl*>(map_->data()); }
  uint8_t* ring(int index) const { return map_->data() + kControlSize + static_cast<uint64_t>(index) * config_.ring_size; }

  const Side side_;
  const Config config_;
  std::unique_ptr<Mapping> map_;
  Fd memfd_;        // host: kept until the sandbox has it
  Fd own_efd_;      // we poll it
  Fd peer_efd_;     // we write it
  Fd alive_read_;   // host only
  Fd alive_write_;  // host: kept until the sandbox has it
  FrameEncoder encoder_;
  FrameDecoder decoder_;
  bool peer_gone_ = false;
};

// Validates a configuration; "" when usable.
std::string CheckConfig(const Config& config);

}  // namespace channel
}  // namespace warden

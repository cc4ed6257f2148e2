// N-API side of the channel: the ChannelEndpoint class, its outgoing queue and the libuv handles.
// Framing, waking and all checks of shared memory stay native.
//
// Per-call cost is what this file is about. A small message crosses into native code once: JS
// encodes its envelope straight into `txBuffer` (memory this object owns) and passes a length;
// received messages of up to kRxScratch bytes are copied out of the ring into `rxBuffer` and JS
// gets their length, so the common case allocates nothing here. Larger messages arrive in a fresh
// Buffer (the ring → Buffer copy is the only one they pay). The event loop gets messages pushed to
// it (onEvent, one call per message, microtasks run in between), and a blocking call sends, spins
// and receives in one crossing.
#include <malloc.h>
#include <napi.h>
#include <sched.h>
#include <uv.h>
#include <time.h>

#include <cstring>
#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include "bindings.h"
#include "channel.h"

namespace warden {
namespace {

using channel::Endpoint;
using channel::FrameDecoder;
using channel::FrameEncoder;
using channel::Span;

constexpr size_t kTxScratch = 64 * 1024;
constexpr size_t kRxScratch = 16 * 1024;
constexpr size_t kInlineSpans = 8;

// `state`, an Int32Array JS writes and this side reads (lib/channel/addon.ts says the same).
constexpr size_t kStateHold = 0;   // > 0: keep the event loop alive (pending calls; a runner)
constexpr size_t kStateBusy = 1;   // handlers waiting on promises: do not spin, they need the loop
constexpr size_t kStatePause = 2;  // > 0: deliver nothing (JS throttles a flooding peer; resume() ends it)
constexpr size_t kStateSize = 3;

// What onEvent receives besides messages (a number >= 0: bytes in rxBuffer; a Buffer; null: the
// peer closed the channel).
constexpr int kEventPeerExited = -1;
constexpr int kEventProtocol = -2;

int64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// How a waiting thread polls the ring. For the first kBusyNs it spins without a syscall (an answer
// usually takes a few microseconds); after that it gives up the CPU between polls. When the machine
// has more runnable threads than cores, the peer we wait for may be queued behind us on this very
// core, and spinning on would only delay it; sched_yield lets it run (and costs one cheap syscall
// when nothing else wants the core). A peer that last waited on our CPU is certainly not running:
// then we yield from the start (with both sides squeezed onto one core, spinning first cost each
// hop the whole busy phase: ~21 us round trips instead of ~3).
class Spin {
 public:
  static constexpr int64_t kBusyNs = 8 * 1000;
  explicit Spin(Endpoint* ep) { Reset(ep); }
  Spin() : start_(NowNs()) {}

  void Reset(Endpoint* ep) {
    start_ = NowNs();
    cpu_ = sched_getcpu();
    if (ep != nullptr && cpu_ >= 0) ep->PublishCpu(cpu_);
  }

  // One step of waiting; returns early once `ready()` says so. The clock is read once per step,
  // the ring polled between pauses, so an answer is seen within a few tens of nanoseconds.
  template <typename Ready>
  void Once(const Endpoint* ep, Ready ready) {
    const bool peer_here = ep != nullptr && cpu_ >= 0 && ep->PeerCpu() == cpu_;
    if (!peer_here && NowNs() - start_ < kBusyNs) {
      for (int i = 0; i < 16 && !ready(); ++i) CpuRelax();
    } else {
      sched_yield();
    }
  }

 private:
  int64_t start_;
  int cpu_ = -1;
};

// Throws an Error with a stable `code`; lib/channel turns these into ChannelError.
void ThrowCode(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  e.ThrowAsJavaScriptException();
}

// Where the decoder puts a message: the private scratch when it is small, else a fresh JS Buffer.
class RxSink : public channel::ScratchSink {
 public:
  RxSink(napi_env env, uint8_t* scratch, size_t capacity) : ScratchSink(scratch, capacity), env_(env) {}
  ~RxSink() override { ReleaseLarge(); }

  // A chunked message outlives the handle scope it was started in: pin its Buffer.
  void Pin() {
    if (ref_ == nullptr && current_ != nullptr) napi_create_reference(env_, current_, 1, &ref_);
  }

  // The complete message: its length in the scratch, or its Buffer.
  napi_value Take() {
    napi_value v = current_;
    if (in_scratch()) {
      napi_create_uint32(env_, static_cast<uint32_t>(length()), &v);
      Taken();
    } else if (ref_ != nullptr) {
      napi_get_reference_value(env_, ref_, &v);
      napi_delete_reference(env_, ref_);
      ref_ = nullptr;
    }
    current_ = nullptr;
    return v;
  }

 protected:
  uint8_t* AllocateLarge(uint64_t total) override {
    void* data = nullptr;
    if (napi_create_buffer(env_, static_cast<size_t>(total), &data, &current_) != napi_ok) {
      // A failed allocation leaves a RangeError pending; the caller reports a channel error instead.
      napi_value ignored;
      napi_get_and_clear_last_exception(env_, &ignored);
      current_ = nullptr;
      return nullptr;
    }
    return static_cast<uint8_t*>(data);
  }

  void ReleaseLarge() override {
    if (ref_ != nullptr) napi_delete_reference(env_, ref_);
    ref_ = nullptr;
    current_ = nullptr;
  }

 private:
  napi_env env_;
  napi_value current_ = nullptr;  // valid within the current handle scope
  napi_ref ref_ = nullptr;
};

// A message to send: the envelope (in txBuffer, or a part of its own) and the attachments.
struct Message {
  Span inline_spans[kInlineSpans];
  std::vector<Span> more;
  size_t count = 0;
  uint64_t total = 0;

  void Add(const uint8_t* data, size_t size) {
    if (count < kInlineSpans) {
      inline_spans[count] = Span{data, size};
    } else {
      if (more.empty()) more.assign(inline_spans, inline_spans + kInlineSpans);
      more.push_back(Span{data, size});
    }
    ++count;
    total += size;
  }
  const Span* spans() const { return count <= kInlineSpans ? inline_spans : more.data(); }
};

// A message the ring could not take yet. The envelope is copied (txBuffer is reused at once);
// attachments are kept alive by reference and gathered when room appears.
struct Outgoing {
  std::vector<uint8_t> envelope;
  std::vector<Napi::Reference<Napi::Value>> refs;
  std::vector<Span> spans;
  uint64_t total = 0;
};

class ChannelEndpoint : public Napi::ObjectWrap<ChannelEndpoint> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ChannelEndpoint",
                       {
                           InstanceMethod<&ChannelEndpoint::Send>("send"),
                           InstanceMethod<&ChannelEndpoint::Call>("call"),
                           InstanceMethod<&ChannelEndpoint::Recv>("recv"),
                           InstanceMethod<&ChannelEndpoint::RecvWait>("recvWait"),
                           InstanceMethod<&ChannelEndpoint::Start>("start"),
                           InstanceMethod<&ChannelEndpoint::UpdateRef>("updateRef"),
                           InstanceMethod<&ChannelEndpoint::Resume>("resume"),
                           InstanceMethod<&ChannelEndpoint::PeerAlive>("peerAlive"),
                           InstanceMethod<&ChannelEndpoint::ChildFds>("childFds"),
                           InstanceMethod<&ChannelEndpoint::ReleaseChildFds>("releaseChildFds"),
                           InstanceMethod<&ChannelEndpoint::Close>("close"),
                           InstanceAccessor<&ChannelEndpoint::Queued>("queued"),
                           InstanceAccessor<&ChannelEndpoint::QueuedBytes>("queuedBytes"),
                           InstanceAccessor<&ChannelEndpoint::TxBuffer>("txBuffer"),
                           InstanceAccessor<&ChannelEndpoint::RxBuffer>("rxBuffer"),
                           InstanceAccessor<&ChannelEndpoint::State>("state"),
                       });
  }

  ChannelEndpoint(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ChannelEndpoint>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) {
      ThrowCode(env, "ERR_INVALID_ARG_TYPE", "options object expected");
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    channel::Config config;
    if (o.Get("ringSize").IsNumber()) config.ring_size = static_cast<uint64_t>(o.Get("ringSize").As<Napi::Number>().Int64Value());
    if (o.Get("maxMessage").IsNumber())
      config.max_message = static_cast<uint64_t>(o.Get("maxMessage").As<Napi::Number>().Int64Value());
    std::string error;
    const bool attach = o.Get("side").IsString() && o.Get("side").As<Napi::String>().Utf8Value() == "sandbox";
    if (attach) {
      auto fd = [&](const char* k) { return o.Get(k).IsNumber() ? o.Get(k).As<Napi::Number>().Int32Value() : -1; };
      ep_ = Endpoint::AttachSandbox(config, fd("memfd"), fd("ownEfd"), fd("peerEfd"), &error);
    } else {
      ep_ = Endpoint::CreateHost(config, &error);
    }
    if (!ep_) {
      ThrowCode(env, "ERR_CHANNEL_SETUP", error);
      return;
    }
    // The scratch buffers are JS Buffers this object keeps alive; their memory never moves.
    Napi::Buffer<uint8_t> tx = Napi::Buffer<uint8_t>::New(env, kTxScratch);
    Napi::Buffer<uint8_t> rx = Napi::Buffer<uint8_t>::New(env, kRxScratch);
    tx_ = tx.Data();
    tx_ref_ = Napi::Persistent(tx.As<Napi::Value>());
    Napi::Int32Array state = Napi::Int32Array::New(env, kStateSize);
    state_ = state.Data();
    state_ref_ = Napi::Persistent(state.As<Napi::Value>());
    rx_ref_ = Napi::Persistent(rx.As<Napi::Value>());
    sink_.reset(new RxSink(env, rx.Data(), kRxScratch));
  }

  ~ChannelEndpoint() override { StopHandles(); }

 private:
  bool CheckOpen(Napi::Env env) {
    if (ep_ && !failed_) return true;
    ThrowCode(env, failed_ ? "ERR_CHANNEL_PROTOCOL" : "ERR_CHANNEL_CLOSED",
              failed_ ? protocol_error_ : "the channel is closed");
    return false;
  }

  void ProtocolFailure(const std::string& why) {
    failed_ = true;
    protocol_error_ = "peer broke the channel protocol: " + why;
  }

  // (envLen, parts): envLen bytes of txBuffer (none when negative), then each Uint8Array of parts.
  bool ParseMessage(Napi::Env env, const Napi::CallbackInfo& info, Message* m) {
    Napi::Value len = info[0];
    if (!len.IsNumber()) {
      ThrowCode(env, "ERR_INVALID_ARG_TYPE", "send expects an envelope length");
      return false;
    }
    const int64_t env_len = len.As<Napi::Number>().Int64Value();
    if (env_len > static_cast<int64_t>(kTxScratch)) {
      ThrowCode(env, "ERR_INVALID_ARG_TYPE", "envelope longer than txBuffer");
      return false;
    }
    if (env_len >= 0) m->Add(tx_, static_cast<size_t>(env_len));
    Napi::Value parts = info[1];
    if (!parts.IsUndefined() && !parts.IsNull()) {
      if (!parts.IsArray()) {
        ThrowCode(env, "ERR_INVALID_ARG_TYPE", "send expects an array of Uint8Array");
        return false;
      }
      Napi::Array a = parts.As<Napi::Array>();
      const uint32_t n = a.Length();
      for (uint32_t i = 0; i < n; ++i) {
        Napi::Value p = a.Get(i);
        if (!p.IsTypedArray() || p.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
          ThrowCode(env, "ERR_INVALID_ARG_TYPE", "send expects an array of Uint8Array");
          return false;
        }
        Napi::Uint8Array u = p.As<Napi::Uint8Array>();
        m->Add(u.Data(), u.ByteLength());
      }
    }
    if (m->total > ep_->config().max_message) {
      ThrowCode(env, "ERR_CHANNEL_MESSAGE_TOO_LARGE",
                "message of " + std::to_string(m->total) + " bytes exceeds maxMessage (" +
                    std::to_string(ep_->config().max_message) + "); raise maxMessage or send less");
      return false;
    }
    return true;
  }

  // Queues a message the ring did not take, or took only the first chunks of (the encoder knows how
  // many bytes went out and goes on from there with the same bytes).
  void Enqueue(const Napi::CallbackInfo& info, const Message& m) {
    Outgoing o;
    const Span* s = m.spans();
    size_t first = 0;
    if (m.count > 0 && s[0].data == tx_) {
      o.envelope.assign(tx_, tx_ + s[0].size);
      first = 1;
    }
    // Reserve first: spans point into `envelope`, whose buffer a later move keeps where it is.
    o.spans.reserve(m.count);
    if (first == 1) o.spans.push_back(Span{o.envelope.data(), o.envelope.size()});
    for (size_t i = first; i < m.count; ++i) o.spans.push_back(s[i]);
    o.total = m.total;
    if (info[1].IsArray()) {
      Napi::Array a = info[1].As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); ++i) o.refs.push_back(Napi::Persistent(a.Get(i)));
    }
    queued_bytes_ += o.total;
    queue_.push_back(std::move(o));
  }

  // Writes queued messages in order until the ring is full. False on a protocol violation.
  bool Flush() {
    while (!queue_.empty()) {
      Outgoing& m = queue_.front();
      FrameEncoder::Status st = ep_->Send(m.spans.data(), m.spans.size(), m.total);
      if (st == FrameEncoder::kProtocol) {
        ProtocolFailure(ep_->send_error());
        return false;
      }
      if (st == FrameEncoder::kPartial) {
        if (ep_->RequestSpace()) continue;  // the consumer moved meanwhile
        return true;
      }
      queued_bytes_ -= m.total;
      queue_.pop_front();
    }
    return true;
  }

  // Whether delivery is held back: JS throttles the peer (state[kStatePause]), or the peer leaves
  // more than pause_bytes_ of what we sent it unread. Then its ring is not read either, so a peer
  // that sends calls and never reads their answers stops at that bound instead of making us queue
  // answers without end; its own sends back up into its own memory.
  bool Paused() const {
    return (state_ != nullptr && state_[kStatePause] > 0) || (pause_bytes_ > 0 && queued_bytes_ > pause_bytes_);
  }

  // Sends without leaving the thread for long: while the consumer keeps freeing room (it is awake
  // and copying out), waiting for it beats queueing and a wake-up round trip. A consumer that
  // stalls, or a message that takes too long, is left to the queue.
  FrameEncoder::Status SendNow(const Message& m) {
    FrameEncoder::Status st = ep_->Send(m.spans(), m.count, m.total);
    if (st != FrameEncoder::kPartial) return st;
    const int64_t start = NowNs();
    int64_t progress_at = start;
    uint64_t last = ep_->PeerTail();
    Spin spin(ep_.get());
    for (;;) {
      spin.Once(ep_.get(), [this, last] { return ep_->PeerTail() != last; });
      const uint64_t t = ep_->PeerTail();
      const int64_t now = NowNs();
      if (t != last) {
        last = t;
        progress_at = now;
        spin.Reset(ep_.get());
        st = ep_->Send(m.spans(), m.count, m.total);
        if (st != FrameEncoder::kPartial) return st;
      }
      if (now - progress_at > kStallNs || now - start > kSendSpinNs) return st;
    }
  }

  // Back to the event loop: sleep on the eventfd, or come straight back if work is waiting. While
  // the idle handle polls the ring the peer need not wake us.
  void Rearm() {
    if (!started_ || !ep_ || failed_ || idle_active_) return;
    // Paused, pending data is no reason to come back (resume() or freed room is).
    if (ep_->ArmEventfd(!queue_.empty(), !Paused())) ep_->SelfWake();
  }

  // After a send or a message: keep the event loop polling the ring (without blocking it) for a
  // while instead of sleeping on the eventfd, so an answer does not pay for a wake-up.
  void StartIdle() {
    if (!started_ || idle_window_ns_ <= 0 || idle_ == nullptr || !ep_ || failed_) return;
    idle_until_ = NowNs() + idle_window_ns_;
    idle_spin_.Reset(ep_.get());
    if (idle_active_) return;
    idle_active_ = true;
    ++idlers_;
    ep_->MarkAwake();
    uv_idle_start(idle_, OnIdle);
  }

  void StopIdle() {
    if (!idle_active_) return;
    idle_active_ = false;
    --idlers_;
    uv_idle_stop(idle_);
  }

  static void OnIdle(uv_idle_t* handle) {
    auto* self = static_cast<ChannelEndpoint*>(handle->data);
    if (!self->ep_ || self->failed_) {
      self->StopIdle();
      return;
    }
    // Poll a little before handing the turn back: one loop iteration (timers, an epoll_wait
    // syscall, immediates) costs about a microsecond, an answer often arrives within two. Only
    // when this is the one channel of the thread polling (with many, the turns add up), and not
    // when the peer last waited on this CPU: it is not running while we are.
    const int cpu = sched_getcpu();
    const bool peer_here = cpu >= 0 && self->ep_->PeerCpu() == cpu;
    bool space = false;
    const int64_t poll_until = idlers_ == 1 && !peer_here ? NowNs() + kIdlePollNs : 0;
    const bool paused = self->Paused();
    for (;;) {
      space = !self->queue_.empty() && self->ep_->PeerTail() != self->ep_->LastTail();
      if ((!paused && self->ep_->RxPending()) || space || NowNs() >= poll_until) break;
      for (int i = 0; i < 4; ++i) CpuRelax();
    }
    if ((!paused && self->ep_->RxPending()) || space || (self->peer_gone_ && !self->gone_reported_)) {
      self->idle_window_ns_ = self->idle_max_ns_;
      self->idle_until_ = NowNs() + self->idle_window_ns_;
      self->idle_spin_.Reset(self->ep_.get());
      self->Serve();
      return;
    }
    const int64_t now = NowNs();
    if (now < self->idle_until_) {
      // Past the first microseconds, let a peer queued on this core run (see Spin); once per
      // loop turn, however many channels poll.
      if (peer_here || now - last_yield_ > kIdlePollNs) {
        self->idle_spin_.Once(self->ep_.get(), [] { return false; });
        last_yield_ = NowNs();
      }
      return;
    }
    // Nothing came: poll for less next time (down to an eighth), so a slow peer costs little.
    self->idle_window_ns_ = self->idle_window_ns_ / 2 > self->idle_max_ns_ / 8 ? self->idle_window_ns_ / 2
                                                                                : self->idle_max_ns_ / 8;
    self->StopIdle();
    self->SyncRef();
    self->Rearm();
  }

  // Calls onEvent(arg) (microtasks run after it). A throw becomes an uncaught exception, as from
  // any callback.
  void Deliver(Napi::Env env, napi_value arg, napi_value extra = nullptr) {
    if (on_event_.IsEmpty()) return;
    napi_value args[2] = {arg, extra != nullptr ? extra : env.Undefined()};
    napi_value result = nullptr;
    napi_status s = napi_make_callback(env, static_cast<napi_async_context>(*async_context_), Value(),
                                       on_event_.Value(), extra != nullptr ? 2 : 1, args, &result);
    if (s == napi_pending_exception || env.IsExceptionPending()) {
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
    }
  }

  // Delivers what the ring holds, one message per onEvent. Between messages it may spin for the
  // next (the runner: spinUs), never longer than that after the last one, and never more than
  // `budget` messages in one turn, so timers and I/O of this loop still run.
  void Serve() {
    Napi::Env env = Env();
    int handled = 0;
    int64_t spin_until = 0;
    bool delivered = false;
    const int64_t turn_start = turn_ns_ > 0 ? NowNs() : 0;
    Spin wait(ep_.get());
    while (ep_ && !failed_) {
      Napi::HandleScope scope(env);
      if (!queue_.empty() && !Flush()) {
        Deliver(env, Napi::Number::New(env, kEventProtocol), Napi::String::New(env, protocol_error_));
        break;
      }
      // Throttled: the ring is left as it is (an exit of the peer is seen by its owner's exit watch).
      if (Paused()) break;
      FrameDecoder::Status st = ep_->Receive(sink_.get());
      if (st == FrameDecoder::kMessage) {
        Deliver(env, sink_->Take());
        delivered = true;
        if (++handled >= budget_) break;  // Rearm sees the ring is not empty and wakes us again
        // Nor longer than turn_ns_ (each message's decoding is bounded; their sum is bounded here).
        if (turn_ns_ > 0 && NowNs() - turn_start >= turn_ns_) break;
        // Read after the callback's microtasks ran: a handler that returned a promise which has
        // settled meanwhile (an async function that did not wait for I/O) is done; one still
        // waiting needs the event loop, so no spinning then.
        const bool busy = state_ != nullptr && state_[kStateBusy] > 0;
        spin_until = !busy && spin_ns_ > 0 ? NowNs() + spin_ns_ : 0;
        wait.Reset(ep_.get());
        continue;
      }
      if (st == FrameDecoder::kClosed) {
        Deliver(env, env.Null());
        break;
      }
      if (st == FrameDecoder::kProtocol) {
        ProtocolFailure(ep_->receive_error());
        Deliver(env, Napi::Number::New(env, kEventProtocol), Napi::String::New(env, protocol_error_));
        break;
      }
      sink_->Pin();
      if (peer_gone_) {
        // Everything it wrote before dying has been delivered.
        if (!gone_reported_) {
          gone_reported_ = true;
          Deliver(env, Napi::Number::New(env, kEventPeerExited));
        }
        break;
      }
      if (spin_until == 0) {
        // A chunked message streaming in is worth spinning for even before its first delivery.
        if (spin_ns_ > 0 && ep_->assembling()) spin_until = NowNs() + spin_ns_;
        else break;
      }
      // Spin for the next message; the next chunk of one arriving, or room for what we queued,
      // renews the spin; a stall ends it.
      if (ep_->RxPending() || (!queue_.empty() && ep_->PeerTail() != ep_->LastTail())) {
        spin_until = NowNs() + spin_ns_;
        continue;
      }
      if (NowNs() >= spin_until) break;
      wait.Once(ep_.get(), [this] { return ep_->RxPending() || (!queue_.empty() && ep_->PeerTail() != ep_->LastTail()); });
    }
    SyncRef();
    if (delivered) StartIdle();
    Rearm();
  }

  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    Message m;
    if (!ParseMessage(env, info, &m)) return env.Undefined();
    bool sent = false;
    if (queue_.empty()) {
      FrameEncoder::Status st = SendNow(m);
      if (st == FrameEncoder::kProtocol) {
        ProtocolFailure(ep_->send_error());
        CheckOpen(env);
        return env.Undefined();
      }
      sent = st == FrameEncoder::kDone;
      // A message the ring took in part stays at the front of the queue (framing stays intact).
    }
    if (!sent) {
      Enqueue(info, m);
      if (!Flush()) {
        CheckOpen(env);
        return env.Undefined();
      }
      sent = queue_.empty();
      if (!sent) Rearm();  // announce want_space so the consumer wakes us when it frees room
    }
    SyncRef();
    StartIdle();
    return Napi::Boolean::New(env, sent);
  }

  // Blocking wait step: spin until `spin_until`, then sleep on the futex in slices so a dead peer is
  // noticed. Returns false when the peer is gone.
  template <typename Ready>
  bool WaitStep(int64_t deadline, int64_t spin_until, Spin* spin, Ready ready) {
    int64_t now = NowNs();
    if (now < spin_until) {
      spin->Once(ep_.get(), ready);
      return true;
    }
    int64_t slice = deadline - now;
    if (slice > 10000000) slice = 10000000;
    ep_->SleepFutex(slice);
    return ep_->PeerAlive();
  }

  // Finishes the queue, waiting for room (blocking) up to `deadline`. Sets *timed_out or peer_gone_.
  void FlushBlocking(int64_t deadline, bool* timed_out) {
    int64_t spin_until = NowNs() + kStallNs;
    uint64_t last = ep_->PeerTail();
    Spin spin(ep_.get());
    for (;;) {
      if (!Flush() || queue_.empty()) return;
      const int64_t now = NowNs();
      if (now >= deadline) {
        *timed_out = true;
        return;
      }
      const uint64_t t = ep_->PeerTail();
      if (t != last) {
        last = t;
        spin_until = now + kStallNs;
        spin.Reset(ep_.get());
      }
      ep_->RequestSpace();
      if (!WaitStep(deadline, spin_until, &spin, [this, last] { return ep_->PeerTail() != last; })) {
        peer_gone_ = true;
        return;
      }
    }
  }

  // Receives one message, blocking up to `deadline` (spinning until `spin_until` first). Returns the
  // message (a length in rxBuffer, or a Buffer), null when the peer closed, undefined on timeout.
  Napi::Value ReceiveBlocking(Napi::Env env, int64_t deadline, int64_t spin_until) {
    uint64_t rx = ep_->RxTail();
    Spin spin(ep_.get());
    for (;;) {
      if (!queue_.empty() && !Flush()) {
        CheckOpen(env);
        return env.Undefined();
      }
      FrameDecoder::Status st = ep_->Receive(sink_.get());
      switch (st) {
        case FrameDecoder::kMessage:
          return Napi::Value(env, sink_->Take());
        case FrameDecoder::kClosed:
          return env.Null();
        case FrameDecoder::kProtocol:
          ProtocolFailure(ep_->receive_error());
          CheckOpen(env);
          return env.Undefined();
        case FrameDecoder::kEmpty:
          sink_->Pin();
          break;
      }
      if (peer_gone_) {
        ThrowCode(env, "ERR_CHANNEL_CLOSED", "the peer exited");
        return env.Undefined();
      }
      if (NowNs() >= deadline) return env.Undefined();
      // A chunked message on its way: keep spinning while it streams in.
      if (ep_->RxTail() != rx) {
        rx = ep_->RxTail();
        if (ep_->assembling() && spin_until < NowNs() + kStallNs) spin_until = NowNs() + kStallNs;
        spin.Reset(ep_.get());
      }
      if (ep_->RxPending()) continue;
      if (!WaitStep(deadline, spin_until, &spin, [this] { return ep_->RxPending(); })) peer_gone_ = true;  // one more pass drains what it wrote
    }
  }

  // BLOCKING: send one message, then wait for the next incoming one (the answer, usually), in one
  // crossing. (envLen, parts, timeoutMs, spinUs).
  Napi::Value Call(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    Message m;
    if (!ParseMessage(env, info, &m)) return env.Undefined();
    const double timeout_ms = info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : 30000;
    const double spin_us = info[3].IsNumber() ? info[3].As<Napi::Number>().DoubleValue() : 0;
    const int64_t start = NowNs();
    const int64_t deadline = start + static_cast<int64_t>(timeout_ms * 1e6);
    // We poll the ring ourselves from here on: the peer need not write our eventfd.
    ep_->MarkAwake();
    bool sent = false;
    if (queue_.empty()) {
      FrameEncoder::Status st = ep_->Send(m.spans(), m.count, m.total);
      if (st == FrameEncoder::kProtocol) ProtocolFailure(ep_->send_error());
      sent = st == FrameEncoder::kDone;
    }
    Napi::Value result = env.Undefined();
    if (!failed_) {
      bool timed_out = false;
      if (!sent) {
        Enqueue(info, m);
        FlushBlocking(deadline, &timed_out);
      }
      if (failed_) {
        CheckOpen(env);
      } else if (peer_gone_ && !queue_.empty()) {
        ThrowCode(env, "ERR_CHANNEL_CLOSED", "the peer exited");
      } else if (timed_out) {
        // The message stays queued and is finished asynchronously so framing stays intact.
        ThrowCode(env, "ERR_CALL_TIMEOUT", "timed out writing to the channel: the peer is not reading");
      } else {
        result = ReceiveBlocking(env, deadline, NowNs() + static_cast<int64_t>(spin_us * 1e3));
      }
    } else {
      CheckOpen(env);
    }
    Rearm();
    return result;
  }

  Napi::Value Recv(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    return ReceiveBlocking(env, 0, 0);
  }

  // BLOCKING receive: spins `spinUs`, then sleeps on the futex; undefined after `timeoutMs`.
  Napi::Value RecvWait(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    const double timeout_ms = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
    const double spin_us = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 0;
    const int64_t start = NowNs();
    ep_->MarkAwake();
    Napi::Value result = ReceiveBlocking(env, start + static_cast<int64_t>(timeout_ms * 1e6),
                                         start + static_cast<int64_t>(spin_us * 1e3));
    Rearm();
    return result;
  }

  static void OnPoll(uv_poll_t* handle, int status, int events) {
    auto* self = static_cast<ChannelEndpoint*>(handle->data);
    if (!self->ep_) return;
    if (handle == self->alive_poll_) {
      // Stop watching a closed pipe (it stays readable).
      uv_poll_stop(handle);
      if (!self->ep_->PeerAlive()) self->peer_gone_ = true;
    } else {
      self->ep_->DrainEventfd();
      self->ep_->MarkAwake();
    }
    self->Serve();
  }

  // start(onEvent, { spinUs, idleSpinUs, budget }).
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    if (started_ || !info[0].IsFunction()) {
      ThrowCode(env, "ERR_INVALID_ARG_TYPE", "start(onEvent) once, with a function");
      return env.Undefined();
    }
    if (info[1].IsObject()) {
      Napi::Object o = info[1].As<Napi::Object>();
      auto num = [&](const char* k, double d) { return o.Get(k).IsNumber() ? o.Get(k).As<Napi::Number>().DoubleValue() : d; };
      spin_ns_ = static_cast<int64_t>(num("spinUs", 0) * 1e3);
      idle_max_ns_ = static_cast<int64_t>(num("idleSpinUs", 0) * 1e3);
      idle_window_ns_ = idle_max_ns_;
      const double b = num("budget", 256);
      budget_ = b >= 1 ? static_cast<int>(b) : 1;
      turn_ns_ = static_cast<int64_t>(num("turnUs", 0) * 1e3);
      const double pb = num("pauseBytes", 0);
      pause_bytes_ = pb > 0 ? static_cast<uint64_t>(pb) : 0;
    }
    on_event_ = Napi::Persistent(info[0].As<Napi::Function>());
    async_context_ = std::make_unique<Napi::AsyncContext>(env, "WardenChannel");
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = NewPoll(loop, ep_->own_efd(), UV_READABLE);
    if (ep_->alive_fd() >= 0) alive_poll_ = NewPoll(loop, ep_->alive_fd(), UV_READABLE | UV_DISCONNECT);
    if (idle_max_ns_ > 0) {
      idle_ = new uv_idle_t;
      uv_idle_init(loop, idle_);
      idle_->data = this;
      if (!refed_) uv_unref(reinterpret_cast<uv_handle_t*>(idle_));
    }
    started_ = true;
    SyncRef();
    Rearm();
    return env.Undefined();
  }

  uv_poll_t* NewPoll(uv_loop_t* loop, int fd, int events) {
    auto* p = new uv_poll_t;
    if (uv_poll_init(loop, p, fd) != 0) {
      delete p;
      return nullptr;
    }
    p->data = this;
    uv_poll_start(p, events, OnPoll);
    if (!refed_) uv_unref(reinterpret_cast<uv_handle_t*>(p));
    return p;
  }

  void StopHandles() {
    for (uv_poll_t** p : {&poll_, &alive_poll_}) {
      if (*p == nullptr) continue;
      uv_poll_stop(*p);
      uv_close(reinterpret_cast<uv_handle_t*>(*p), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      *p = nullptr;
    }
    if (idle_ != nullptr) {
      StopIdle();
      uv_close(reinterpret_cast<uv_handle_t*>(idle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_idle_t*>(h); });
      idle_ = nullptr;
    }
  }

  // The event loop is kept alive while state[kStateHold] (written by JS: pending calls, or 1 for
  // good) is positive. JS only writes the number; this side applies it whenever it runs anyway (a
  // send, a delivery, the end of a turn), so a call costs no extra crossing to ref and unref.
  void SyncRef() {
    if (state_ != nullptr) SetRef(state_[kStateHold] > 0);
  }

  void SetRef(bool on) {
    if (refed_ == on) return;
    refed_ = on;
    for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(poll_), reinterpret_cast<uv_handle_t*>(alive_poll_),
                           reinterpret_cast<uv_handle_t*>(idle_)}) {
      if (h == nullptr) continue;
      if (on) uv_ref(h);
      else uv_unref(h);
    }
  }

  Napi::Value UpdateRef(const Napi::CallbackInfo& info) {
    SyncRef();
    return info.Env().Undefined();
  }

  Napi::Value PeerAlive(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), ep_ && !peer_gone_ && ep_->PeerAlive());
  }

  Napi::Value ChildFds(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    channel::ChildFds f = ep_->child_fds();
    Napi::Object o = Napi::Object::New(env);
    o.Set("memfd", f.memfd);
    o.Set("hostEfd", f.host_efd);
    o.Set("sandboxEfd", f.sandbox_efd);
    o.Set("aliveWrite", f.alive_write);
    o.Set("ringSize", static_cast<double>(ep_->config().ring_size));
    o.Set("maxMessage", static_cast<double>(ep_->config().max_message));
    return o;
  }

  Napi::Value ReleaseChildFds(const Napi::CallbackInfo& info) {
    if (ep_) ep_->ReleaseChildFds();
    return info.Env().Undefined();
  }

  Napi::Value Queued(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(queue_.size()));
  }

  Napi::Value QueuedBytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(queued_bytes_));
  }

  // After JS cleared state[kStatePause]: deliver what waits, from the next loop turn.
  Napi::Value Resume(const Napi::CallbackInfo& info) {
    if (started_ && ep_ && !failed_) ep_->SelfWake();
    return info.Env().Undefined();
  }

  Napi::Value TxBuffer(const Napi::CallbackInfo& info) {
    return tx_ref_.IsEmpty() ? info.Env().Undefined() : tx_ref_.Value();
  }
  Napi::Value RxBuffer(const Napi::CallbackInfo& info) {
    return rx_ref_.IsEmpty() ? info.Env().Undefined() : rx_ref_.Value();
  }
  Napi::Value State(const Napi::CallbackInfo& info) {
    return state_ref_.IsEmpty() ? info.Env().Undefined() : state_ref_.Value();
  }

  // Tells the peer (best effort, never blocks) and releases the mapping and every fd.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (ep_) {
      if (!failed_ && queue_.empty()) ep_->SendClose();
      StopHandles();
      if (sink_) sink_->Abort();
      queue_.clear();
      queued_bytes_ = 0;
      ep_.reset();
    }
    on_event_.Reset();
    return info.Env().Undefined();
  }

  // Longest one idle callback polls the ring before the loop goes on.
  static constexpr int64_t kIdlePollNs = 3 * 1000;
  // A consumer that frees no room for this long is not worth waiting for (we queue instead).
  static constexpr int64_t kStallNs = 50 * 1000;
  // Longest an event-loop send waits for room while the consumer keeps draining.
  static constexpr int64_t kSendSpinNs = 2 * 1000 * 1000;

  std::unique_ptr<Endpoint> ep_;
  std::unique_ptr<RxSink> sink_;
  uint8_t* tx_ = nullptr;
  Napi::Reference<Napi::Value> tx_ref_;
  int32_t* state_ = nullptr;
  Napi::Reference<Napi::Value> state_ref_;
  Napi::Reference<Napi::Value> rx_ref_;
  std::deque<Outgoing> queue_;
  uint64_t queued_bytes_ = 0;  // sum of the totals in queue_
  uint64_t pause_bytes_ = 0;   // 0: never pause on the queue
  int64_t turn_ns_ = 0;        // 0: only `budget` bounds a turn
  Napi::FunctionReference on_event_;
  std::unique_ptr<Napi::AsyncContext> async_context_;
  uv_poll_t* poll_ = nullptr;
  uv_poll_t* alive_poll_ = nullptr;
  uv_idle_t* idle_ = nullptr;
  bool idle_active_ = false;
  int64_t idle_max_ns_ = 0;
  int64_t idle_window_ns_ = 0;
  int64_t idle_until_ = 0;
  Spin idle_spin_;
  // Channels of this thread's event loop polling through their idle handle, and when one of them
  // last gave the CPU away.
  static thread_local int idlers_;
  static thread_local int64_t last_yield_;
  int64_t spin_ns_ = 0;
  int budget_ = 256;
  bool started_ = false;
  bool refed_ = false;
  bool failed_ = false;
  bool peer_gone_ = false;
  bool gone_reported_ = false;
  std::string protocol_error_;
};

thread_local int ChannelEndpoint::idlers_ = 0;
thread_local int64_t ChannelEndpoint::last_yield_ = 0;

// For the runner, whose process exists to receive messages: glibc serves allocations from 128 KiB
// up with a fresh mmap until it has seen one freed, so each large message (a 1 MiB Buffer) paid a
// page fault per 4 KiB page, 256 of them, three times the copy itself. Served from the heap and
// kept there after free, the next message reuses pages already mapped. These are the values glibc's
// own adaptive threshold reaches after a 32 MiB message; here they hold from the start. Not for the
// host: its allocator belongs to the application.
Napi::Value ReuseLargeAllocations(const Napi::CallbackInfo& info) {
  bool ok = true;
#ifdef M_MMAP_THRESHOLD
  ok = mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 64 << 20) == 1;
#endif
  return Napi::Boolean::New(info.Env(), ok);
}

}  // namespace

void InitChannel(Napi::Env env, Napi::Object exports) {
  exports.Set("ChannelEndpoint", ChannelEndpoint::Define(env));
  exports.Set("reuseLargeAllocations", Napi::Function::New(env, ReuseLargeAllocations, "reuseLargeAllocations"));
}

}  // namespace warden

// The ChannelEndpoint class of the addon (JS: ChannelEndpoint): one side of a channel (channel.h) as
// JS uses it. Its methods live in three files by concern:
//  - channel_binding.cc: the N-API surface (construction, send/call/recv, start, the libuv handles,
//    delivery to JS);
//  - channel_schedule.cc: when to spin, yield, poll from the event loop or sleep (the spin/idle
//    scheduling);
//  - channel_send_queue.cc: the messages the ring could not take yet.
#pragma once

#include <napi.h>
#include <uv.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "channel.h"
#include "channel_rx_sink.h"
#include "channel_spin.h"

namespace warden {
namespace channel {

constexpr size_t kTxScratch = 64 * 1024;
constexpr size_t kRxScratch = 16 * 1024;
constexpr size_t kInlineSpans = 8;

// `state`, an Int32Array JS writes and this side reads (lib/channel/addon.ts says the same).
constexpr size_t kStateHold = 0;   // > 0: keep the event loop alive (pending calls; a runner)
constexpr size_t kStateBusy = 1;   // handlers waiting on promises: do not spin, they need the loop
constexpr size_t kStatePause = 2;  // > 0: deliver nothing (JS throttles a flooding peer; resume() ends it)
constexpr size_t kStateSpinOnce = 3;  // > 0: after the next message, spin this many us for the one after (then 0)
constexpr size_t kStateSize = 4;

// What onEvent receives besides messages (a number >= 0: bytes in rxBuffer; a Buffer; null: the
// peer closed the channel).
constexpr int kEventPeerExited = -1;
constexpr int kEventProtocol = -2;

// Throws an Error with a stable `code`; lib/channel turns these into ChannelError.
inline void ThrowCode(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  e.ThrowAsJavaScriptException();
}

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
  static Napi::Function Define(Napi::Env env);
  ChannelEndpoint(const Napi::CallbackInfo& info);
  ~ChannelEndpoint() override { StopHandles(); }

 private:
  // channel_binding.cc
  bool CheckOpen(Napi::Env env);
  void ProtocolFailure(const std::string& why);
  bool ParseMessage(Napi::Env env, const Napi::CallbackInfo& info, Message* m);
  void Deliver(Napi::Env env, napi_value arg, napi_value extra = nullptr);
  Napi::Value Send(const Napi::CallbackInfo& info);
  Napi::Value Call(const Napi::CallbackInfo& info);
  Napi::Value Recv(const Napi::CallbackInfo& info);
  Napi::Value RecvWait(const Napi::CallbackInfo& info);
  static void OnPoll(uv_poll_t* handle, int status, int events);
  Napi::Value Start(const Napi::CallbackInfo& info);
  uv_poll_t* NewPoll(uv_loop_t* loop, int fd, int events);
  void StopHandles();
  void SetRef(bool on);
  Napi::Value UpdateRef(const Napi::CallbackInfo& info);
  Napi::Value PeerAlive(const Napi::CallbackInfo& info);
  Napi::Value ChildFds(const Napi::CallbackInfo& info);
  Napi::Value ReleaseChildFds(const Napi::CallbackInfo& info);
  Napi::Value Queued(const Napi::CallbackInfo& info);
  Napi::Value QueuedBytes(const Napi::CallbackInfo& info);
  Napi::Value Resume(const Napi::CallbackInfo& info);
  Napi::Value TxBuffer(const Napi::CallbackInfo& info);
  Napi::Value RxBuffer(const Napi::CallbackInfo& info);
  Napi::Value State(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  // channel_send_queue.cc
  void Enqueue(const Napi::CallbackInfo& info, const Message& m);
  bool Flush();
  // Whether delivery is held back: JS throttles the peer (state[kStatePause]), or the peer leaves
  // more than pause_bytes_ of what we sent it unread. Then its ring is not read either, so a peer
  // that sends calls and never reads their answers stops at that bound instead of making us queue
  // answers without end; its own sends back up into its own memory.
  bool Paused() const {
    return (state_ != nullptr && state_[kStatePause] > 0) || (pause_bytes_ > 0 && queued_bytes_ > pause_bytes_);
  }

  // channel_schedule.cc
  int64_t SpinWindow();
  void SpinEnded(bool hit);
  FrameEncoder::Status SendNow(const Message& m);
  void Rearm();
  void StartIdle();
  void StopIdle();
  static void OnIdle(uv_idle_t* handle);
  void Serve();
  template <typename Ready>
  bool WaitStep(int64_t deadline, int64_t spin_until, Spin* spin, Ready ready);
  void FlushBlocking(int64_t deadline, bool* timed_out);
  Napi::Value ReceiveBlocking(Napi::Env env, int64_t deadline, int64_t spin_until);

  // The event loop is kept alive while state[kStateHold] (written by JS: pending calls, or 1 for
  // good) is positive. JS only writes the number; this side applies it whenever it runs anyway (a
  // send, a delivery, the end of a turn), so a call costs no extra crossing to ref and unref.
  void SyncRef() {
    if (state_ != nullptr) SetRef(state_[kStateHold] > 0);
  }

  // Spins that ended empty in a row before spinning stops, and then how often a message still
  // gets a spin (a probe, so a burst that starts is noticed).
  static constexpr int kSpinMaxMisses = 3;
  static constexpr uint32_t kSpinProbeEvery = 64;
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
  // The spin after a message pays off only if it is used (see SpinWindow): consecutive spins that
  // ended empty, and messages since the last probe.
  int spin_misses_ = 0;
  uint32_t spin_probe_ = 0;
  int budget_ = 256;
  bool started_ = false;
  bool refed_ = false;
  bool failed_ = false;
  bool peer_gone_ = false;
  bool gone_reported_ = false;
  std::string protocol_error_;
};

}  // namespace channel
}  // namespace warden

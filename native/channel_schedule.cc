// The channel's scheduling: when a side spins for its peer, yields the CPU, keeps its event loop
// polling the ring (the idle handle) or sleeps (futex, eventfd). Everything here decides only
// *when* to look; what is sent and received is channel.cc's. Methods of ChannelEndpoint
// (channel_endpoint.h).
#include <sched.h>

#include <algorithm>
#include <uv.h>

#include "channel_endpoint.h"

namespace warden {
namespace channel {

// Sends without leaving the thread for long: while the consumer keeps freeing room (it is awake
// and copying out), waiting for it beats queueing and a wake-up round trip. A consumer that
// stalls, or a message that takes too long, is left to the queue.
FrameEncoder::Status ChannelEndpoint::SendNow(const Message& m) {
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
void ChannelEndpoint::Rearm() {
  if (!started_ || !ep_ || failed_ || idle_active_) return;
  // Paused, pending data is no reason to come back (resume() or freed room is).
  if (ep_->ArmEventfd(!queue_.empty(), !Paused())) ep_->SelfWake();
}

// After a send or a message: keep the event loop polling the ring (without blocking it) for a
// while instead of sleeping on the eventfd, so an answer does not pay for a wake-up. Only while
// answers are awaited (state[kStateHold]: pending calls): a peer that sends a message every few
// tens of microseconds would otherwise keep this thread polling for good (~1 core for a trickle
// every 40 us), at no cost of its own.
void ChannelEndpoint::StartIdle() {
  if (!started_ || idle_window_ns_ <= 0 || idle_ == nullptr || !ep_ || failed_) return;
  if (state_ == nullptr || state_[kStateHold] <= 0) return;
  idle_until_ = NowNs() + idle_window_ns_;
  idle_spin_.Reset(ep_.get());
  if (idle_active_) return;
  idle_active_ = true;
  ++idlers_;
  ep_->MarkAwake();
  uv_idle_start(idle_, OnIdle);
}

void ChannelEndpoint::StopIdle() {
  if (!idle_active_) return;
  idle_active_ = false;
  --idlers_;
  uv_idle_stop(idle_);
}

void ChannelEndpoint::OnIdle(uv_idle_t* handle) {
  auto* self = static_cast<ChannelEndpoint*>(handle->data);
  if (!self->ep_ || self->failed_) {
    self->StopIdle();
    return;
  }
  // No answer awaited any more (see StartIdle): sleep on the eventfd, which a waiting message
  // wakes at once.
  if (self->state_ == nullptr || self->state_[kStateHold] <= 0) {
    self->StopIdle();
    self->SyncRef();
    self->Rearm();
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

// How long to spin for the next message after one was handled (0: do not). The spin wins when the
// next message comes within it (a burst of calls: no wake-up per message); when the peer's next
// message is further away (a request and answer cadence slower than the window, the callee of a
// service call, a subscriber), each spin burns its whole window for nothing, on a core the peer and
// the host may need. So after kSpinMaxMisses spins in a row that got nothing we stop spinning,
// except on every kSpinProbeEvery-th message, whose spin tells whether a burst started.
int64_t ChannelEndpoint::SpinWindow() {
  if (spin_ns_ <= 0) return 0;
  if (spin_misses_ >= kSpinMaxMisses && ++spin_probe_ % kSpinProbeEvery != 0) return 0;
  return spin_ns_;
}

// A spin ended: `hit` when a message came during it.
void ChannelEndpoint::SpinEnded(bool hit) {
  if (hit) spin_misses_ = 0;
  else if (spin_misses_ < kSpinMaxMisses) ++spin_misses_;
}

// Delivers what the ring holds, one message per onEvent. Between messages it may spin for the
// next (the runner: spinUs), never longer than that after the last one, and never more than
// `budget` messages in one turn, so timers and I/O of this loop still run.
void ChannelEndpoint::Serve() {
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
      if (spin_until != 0) SpinEnded(true);
      Deliver(env, sink_->Take());
      delivered = true;
      if (++handled >= budget_) break;  // Rearm sees the ring is not empty and wakes us again
      // Nor longer than turn_ns_ (each message's decoding is bounded; their sum is bounded here).
      if (turn_ns_ > 0 && NowNs() - turn_start >= turn_ns_) break;
      // Read after the callback's microtasks ran: a handler that returned a promise which has
      // settled meanwhile (an async function that did not wait for I/O) is done; one still
      // waiting needs the event loop, so no spinning then.
      const bool busy = state_ != nullptr && state_[kStateBusy] > 0;
      int64_t window = busy ? 0 : SpinWindow();
      // A longer spin asked for once (a pooled runner told its plugin is on the way): bounded by
      // the int32 of microseconds JS wrote, on this process's own core time.
      if (state_ != nullptr && state_[kStateSpinOnce] > 0) {
        if (!busy) window = std::max<int64_t>(window, static_cast<int64_t>(state_[kStateSpinOnce]) * 1000);
        state_[kStateSpinOnce] = 0;
      }
      spin_until = window > 0 ? NowNs() + window : 0;
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
    if (NowNs() >= spin_until) {
      SpinEnded(false);
      break;
    }
    wait.Once(ep_.get(), [this] { return ep_->RxPending() || (!queue_.empty() && ep_->PeerTail() != ep_->LastTail()); });
  }
  SyncRef();
  if (delivered) StartIdle();
  Rearm();
}

// Blocking wait step: spin until `spin_until`, then sleep on the futex in slices so a dead peer is
// noticed. Returns false when the peer is gone.
template <typename Ready>
bool ChannelEndpoint::WaitStep(int64_t deadline, int64_t spin_until, Spin* spin, Ready ready) {
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
void ChannelEndpoint::FlushBlocking(int64_t deadline, bool* timed_out) {
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
Napi::Value ChannelEndpoint::ReceiveBlocking(Napi::Env env, int64_t deadline, int64_t spin_until) {
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

// Channels of this thread's event loop polling through their idle handle, and when one of them
// last gave the CPU away (see OnIdle).
thread_local int ChannelEndpoint::idlers_ = 0;
thread_local int64_t ChannelEndpoint::last_yield_ = 0;

}  // namespace channel
}  // namespace warden

// N-API side of the channel: the ChannelEndpoint class as JS sees it, and its libuv handles (its
// scheduling is channel_schedule.cc, its send queue channel_send_queue.cc).
// Framing, waking and all checks of shared memory stay native.
//
// Per-call cost is what this file is about. A small message crosses into native code once: JS
// encodes its envelope straight into `txBuffer` (memory this object owns) and passes a length;
// received messages of up to kRxScratch bytes are copied out of the ring into `rxBuffer` and JS
// gets their length, so the common case allocates nothing here. Larger messages arrive in a fresh
// Buffer (the ring → Buffer copy is the only one they pay). The event loop gets messages pushed to
// it (onEvent, one call per message, microtasks run in between), and a blocking call sends, spins
// and receives in one crossing.
#include <napi.h>
#include <uv.h>

#include <cstring>
#include <memory>
#include <utility>

#include "bindings.h"
#include "channel_endpoint.h"
#include "js_callback.h"

namespace warden {
namespace channel {

Napi::Function ChannelEndpoint::Define(Napi::Env env) {
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

ChannelEndpoint::ChannelEndpoint(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ChannelEndpoint>(info) {
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

bool ChannelEndpoint::CheckOpen(Napi::Env env) {
  if (ep_ && !failed_) return true;
  ThrowCode(env, failed_ ? "ERR_CHANNEL_PROTOCOL" : "ERR_CHANNEL_CLOSED",
            failed_ ? protocol_error_ : "the channel is closed");
  return false;
}

void ChannelEndpoint::ProtocolFailure(const std::string& why) {
  failed_ = true;
  protocol_error_ = "peer broke the channel protocol: " + why;
}

// (envLen, parts): envLen bytes of txBuffer (none when negative), then each Uint8Array of parts.
bool ChannelEndpoint::ParseMessage(Napi::Env env, const Napi::CallbackInfo& info, Message* m) {
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

// Calls onEvent(arg) (microtasks run after it). A throw becomes an uncaught exception, as from
// any callback.
void ChannelEndpoint::Deliver(Napi::Env env, napi_value arg, napi_value extra) {
  if (on_event_.IsEmpty()) return;
  napi_value args[2] = {arg, extra != nullptr ? extra : env.Undefined()};
  CallFromLoop(env, static_cast<napi_async_context>(*async_context_), Value(), on_event_.Value(),
               extra != nullptr ? 2 : 1, args);
}

Napi::Value ChannelEndpoint::Send(const Napi::CallbackInfo& info) {
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

// BLOCKING: send one message, then wait for the next incoming one (the answer, usually), in one
// crossing. (envLen, parts, timeoutMs, spinUs).
Napi::Value ChannelEndpoint::Call(const Napi::CallbackInfo& info) {
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

Napi::Value ChannelEndpoint::Recv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckOpen(env)) return env.Undefined();
  return ReceiveBlocking(env, 0, 0);
}

// BLOCKING receive: spins `spinUs`, then sleeps on the futex; undefined after `timeoutMs`.
Napi::Value ChannelEndpoint::RecvWait(const Napi::CallbackInfo& info) {
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

void ChannelEndpoint::OnPoll(uv_poll_t* handle, int status, int events) {
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
Napi::Value ChannelEndpoint::Start(const Napi::CallbackInfo& info) {
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

uv_poll_t* ChannelEndpoint::NewPoll(uv_loop_t* loop, int fd, int events) {
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

void ChannelEndpoint::StopHandles() {
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

void ChannelEndpoint::SetRef(bool on) {
  if (refed_ == on) return;
  refed_ = on;
  for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(poll_), reinterpret_cast<uv_handle_t*>(alive_poll_),
                         reinterpret_cast<uv_handle_t*>(idle_)}) {
    if (h == nullptr) continue;
    if (on) uv_ref(h);
    else uv_unref(h);
  }
}

Napi::Value ChannelEndpoint::UpdateRef(const Napi::CallbackInfo& info) {
  SyncRef();
  return info.Env().Undefined();
}

Napi::Value ChannelEndpoint::PeerAlive(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), ep_ && !peer_gone_ && ep_->PeerAlive());
}

Napi::Value ChannelEndpoint::ChildFds(const Napi::CallbackInfo& info) {
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

Napi::Value ChannelEndpoint::ReleaseChildFds(const Napi::CallbackInfo& info) {
  if (ep_) ep_->ReleaseChildFds();
  return info.Env().Undefined();
}

Napi::Value ChannelEndpoint::Queued(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(queue_.size()));
}

Napi::Value ChannelEndpoint::QueuedBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(queued_bytes_));
}

// After JS cleared state[kStatePause]: deliver what waits, from the next loop turn.
Napi::Value ChannelEndpoint::Resume(const Napi::CallbackInfo& info) {
  if (started_ && ep_ && !failed_) ep_->SelfWake();
  return info.Env().Undefined();
}

Napi::Value ChannelEndpoint::TxBuffer(const Napi::CallbackInfo& info) {
  return tx_ref_.IsEmpty() ? info.Env().Undefined() : tx_ref_.Value();
}

Napi::Value ChannelEndpoint::RxBuffer(const Napi::CallbackInfo& info) {
  return rx_ref_.IsEmpty() ? info.Env().Undefined() : rx_ref_.Value();
}

Napi::Value ChannelEndpoint::State(const Napi::CallbackInfo& info) {
  return state_ref_.IsEmpty() ? info.Env().Undefined() : state_ref_.Value();
}

// Tells the peer (best effort, never blocks) and releases the mapping and every fd.
Napi::Value ChannelEndpoint::Close(const Napi::CallbackInfo& info) {
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

}  // namespace channel
}  // namespace warden

namespace warden {

void InitChannel(Napi::Env env, Napi::Object exports) {
  exports.Set("ChannelEndpoint", channel::ChannelEndpoint::Define(env));
}

}  // namespace warden

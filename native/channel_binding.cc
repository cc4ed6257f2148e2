// N-API side of the channel: the ChannelEndpoint class, its outgoing queue and the libuv polls.
// JS sees Buffers in and Buffers out; framing, waking and all checks of shared memory stay native.
#include <napi.h>
#include <uv.h>
#include <time.h>

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

// Throws an Error with a stable `code`; lib/channel turns these into ChannelError.
void ThrowCode(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  e.ThrowAsJavaScriptException();
}

// Receives straight into a JS Buffer: the ring → Buffer copy is the only one a message pays.
class BufferSink : public channel::MessageSink {
 public:
  explicit BufferSink(napi_env env) : env_(env) {}
  ~BufferSink() override { Abort(); }

  uint8_t* Begin(uint64_t total) override {
    Abort();
    void* data = nullptr;
    if (napi_create_buffer(env_, static_cast<size_t>(total), &data, &current_) != napi_ok) {
      // A failed allocation leaves a RangeError pending; the caller reports a channel error instead.
      napi_value ignored;
      napi_get_and_clear_last_exception(env_, &ignored);
      current_ = nullptr;
      return nullptr;
    }
    static uint8_t empty;
    return data != nullptr ? static_cast<uint8_t*>(data) : &empty;
  }

  void Abort() override {
    if (ref_ != nullptr) napi_delete_reference(env_, ref_);
    ref_ = nullptr;
    current_ = nullptr;
  }

  // A chunked message outlives the handle scope it was started in: pin its Buffer.
  void Pin() {
    if (ref_ == nullptr && current_ != nullptr) napi_create_reference(env_, current_, 1, &ref_);
  }

  napi_value Take() {
    napi_value v = current_;
    if (ref_ != nullptr) {
      napi_get_reference_value(env_, ref_, &v);
      napi_delete_reference(env_, ref_);
      ref_ = nullptr;
    }
    current_ = nullptr;
    return v;
  }

 private:
  napi_env env_;
  napi_value current_ = nullptr;  // valid within the current handle scope
  napi_ref ref_ = nullptr;
};

struct Outgoing {
  std::vector<Napi::Reference<Napi::Value>> refs;  // keep the Buffers alive while queued
  std::vector<Span> spans;
  uint64_t total = 0;
};

class ChannelEndpoint : public Napi::ObjectWrap<ChannelEndpoint> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ChannelEndpoint",
                       {
                           InstanceMethod<&ChannelEndpoint::Send>("send"),
                           InstanceMethod<&ChannelEndpoint::SendBlocking>("sendBlocking"),
                           InstanceMethod<&ChannelEndpoint::Recv>("recv"),
                           InstanceMethod<&ChannelEndpoint::RecvWait>("recvWait"),
                           InstanceMethod<&ChannelEndpoint::Start>("start"),
                           InstanceMethod<&ChannelEndpoint::Ref>("ref"),
                           InstanceMethod<&ChannelEndpoint::Unref>("unref"),
                           InstanceMethod<&ChannelEndpoint::PeerAlive>("peerAlive"),
                           InstanceMethod<&ChannelEndpoint::ChildFds>("childFds"),
                           InstanceMethod<&ChannelEndpoint::ReleaseChildFds>("releaseChildFds"),
                           InstanceMethod<&ChannelEndpoint::Close>("close"),
                           InstanceAccessor<&ChannelEndpoint::Queued>("queued"),
                       });
  }

  ChannelEndpoint(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ChannelEndpoint>(info), sink_(info.Env()) {
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
    if (!ep_) ThrowCode(env, "ERR_CHANNEL_SETUP", error);
  }

  ~ChannelEndpoint() override { StopPolls(); }

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

  bool ParseParts(Napi::Env env, Napi::Value v, Outgoing* out) {
    if (!v.IsArray()) {
      ThrowCode(env, "ERR_INVALID_ARG_TYPE", "send expects an array of Uint8Array");
      return false;
    }
    Napi::Array a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Value p = a.Get(i);
      if (!p.IsTypedArray() || p.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
        ThrowCode(env, "ERR_INVALID_ARG_TYPE", "send expects an array of Uint8Array");
        return false;
      }
      Napi::Uint8Array u = p.As<Napi::Uint8Array>();
      out->spans.push_back(Span{u.Data(), u.ByteLength()});
      out->total += u.ByteLength();
    }
    if (out->total > ep_->config().max_message) {
      ThrowCode(env, "ERR_CHANNEL_MESSAGE_TOO_LARGE",
                "message of " + std::to_string(out->total) + " bytes exceeds maxMessage (" +
                    std::to_string(ep_->config().max_message) + "); raise maxMessage or send less");
      return false;
    }
    return true;
  }

  void Pin(Napi::Value parts, Outgoing* out) {
    Napi::Array a = parts.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) out->refs.push_back(Napi::Persistent(a.Get(i)));
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
      queue_.pop_front();
    }
    return true;
  }

  // Back to the event loop: sleep on the eventfd, or come straight back if work is waiting.
  void Rearm() {
    if (!started_ || !ep_ || failed_) return;
    if (ep_->ArmEventfd(!queue_.empty())) ep_->SelfWake();
  }

  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    Outgoing m;
    if (!ParseParts(env, info[0], &m)) return env.Undefined();
    if (queue_.empty()) {
      FrameEncoder::Status st = ep_->Send(m.spans.data(), m.spans.size(), m.total);
      while (st == FrameEncoder::kPartial && ep_->RequestSpace())
        st = ep_->Send(m.spans.data(), m.spans.size(), m.total);
      if (st == FrameEncoder::kProtocol) {
        ProtocolFailure(ep_->send_error());
        CheckOpen(env);
        return env.Undefined();
      }
      if (st == FrameEncoder::kDone) return Napi::Boolean::New(env, true);
    }
    // Queued: the peer wakes us (want_space) when it frees room and the poll callback continues.
    Pin(info[0], &m);
    queue_.push_back(std::move(m));
    if (!Flush()) {
      CheckOpen(env);
      return env.Undefined();
    }
    return Napi::Boolean::New(env, queue_.empty());
  }

  // Blocking wait step shared by sendBlocking/recvWait: spin, then sleep on the futex in slices so
  // a dead peer is noticed. Returns false when the peer is gone.
  bool WaitStep(int64_t deadline, int64_t spin_until) {
    int64_t now = NowNs();
    if (now < spin_until) {
      for (int i = 0; i < 256; ++i) {
        if (ep_->RxPending()) return true;
        CpuRelax();
      }
      return true;
    }
    int64_t slice = deadline - now;
    if (slice > 10000000) slice = 10000000;
    ep_->SleepFutex(slice);
    return ep_->PeerAlive();
  }

  Napi::Value SendBlocking(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    Outgoing m;
    if (!ParseParts(env, info[0], &m)) return env.Undefined();
    const double timeout_ms = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 30000;
    const int64_t deadline = NowNs() + static_cast<int64_t>(timeout_ms * 1e6);
    Pin(info[0], &m);
    queue_.push_back(std::move(m));
    bool ok = true;
    for (;;) {
      if (!Flush()) break;
      if (queue_.empty()) break;
      if (NowNs() >= deadline) {
        ok = false;
        break;
      }
      ep_->RequestSpace();
      if (!WaitStep(deadline, 0)) {
        peer_gone_ = true;
        break;
      }
    }
    Rearm();
    if (!CheckOpen(env)) return env.Undefined();
    if (peer_gone_ && !queue_.empty()) {
      ThrowCode(env, "ERR_CHANNEL_CLOSED", "the peer exited");
      return env.Undefined();
    }
    // The message stays queued and is finished asynchronously so framing stays intact.
    if (!ok) ThrowCode(env, "ERR_CALL_TIMEOUT", "timed out writing to the channel: the peer is not reading");
    return env.Undefined();
  }

  // One decode step. Returns a Buffer, undefined (nothing yet) or null (the peer closed).
  Napi::Value ReceiveOne(Napi::Env env, bool* done) {
    *done = true;
    FrameDecoder::Status st = ep_->Receive(&sink_);
    switch (st) {
      case FrameDecoder::kMessage:
        return Napi::Value(env, sink_.Take());
      case FrameDecoder::kClosed:
        return env.Null();
      case FrameDecoder::kProtocol:
        ProtocolFailure(ep_->receive_error());
        CheckOpen(env);
        return env.Undefined();
      case FrameDecoder::kEmpty:
        sink_.Pin();
        break;
    }
    *done = false;
    return env.Undefined();
  }

  Napi::Value Recv(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    bool done;
    return ReceiveOne(env, &done);
  }

  // Blocking receive (callSync, and the runner's short spin between calls). Spins `spinUs`, then
  // sleeps on the futex; returns undefined after `timeoutMs`.
  Napi::Value RecvWait(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    const double timeout_ms = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
    const double spin_us = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 0;
    const int64_t start = NowNs();
    const int64_t deadline = start + static_cast<int64_t>(timeout_ms * 1e6);
    const int64_t spin_until = start + static_cast<int64_t>(spin_us * 1e3);
    // We are polling the ring ourselves: the peer need not write our eventfd while we do.
    ep_->MarkAwake();
    Napi::Value result = env.Undefined();
    for (;;) {
      bool done;
      result = ReceiveOne(env, &done);
      if (done || env.IsExceptionPending()) break;
      if (!queue_.empty() && !Flush()) {
        CheckOpen(env);
        break;
      }
      if (NowNs() >= deadline) break;
      if (!WaitStep(deadline, spin_until)) {
        // Drain what the peer wrote before it died, then report it gone.
        result = ReceiveOne(env, &done);
        if (!done && !env.IsExceptionPending()) {
          peer_gone_ = true;
          ThrowCode(env, "ERR_CHANNEL_CLOSED", "the peer exited");
        }
        break;
      }
    }
    Rearm();
    return result;
  }

  static void OnPoll(uv_poll_t* handle, int status, int events) {
    auto* self = static_cast<ChannelEndpoint*>(handle->data);
    if (!self->ep_) return;
    if (handle == self->alive_poll_) {
      // Stop watching a closed pipe (it stays readable); JS asks peerAlive() and drains the ring.
      uv_poll_stop(handle);
    } else {
      self->ep_->DrainEventfd();
      self->ep_->MarkAwake();
    }
    if (!self->failed_) self->Flush();
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    if (!self->on_wake_.IsEmpty()) {
      self->on_wake_.MakeCallback(self->Value(), {}, static_cast<napi_async_context>(*self->async_context_));
      if (env.IsExceptionPending()) {
        napi_value err;
        napi_get_and_clear_last_exception(env, &err);
        napi_fatal_exception(env, err);
      }
    }
    self->Rearm();
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    if (started_ || !info[0].IsFunction()) {
      ThrowCode(env, "ERR_INVALID_ARG_TYPE", "start(onWake) once, with a function");
      return env.Undefined();
    }
    on_wake_ = Napi::Persistent(info[0].As<Napi::Function>());
    async_context_ = std::make_unique<Napi::AsyncContext>(env, "WardenChannel");
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = NewPoll(loop, ep_->own_efd(), UV_READABLE);
    if (ep_->alive_fd() >= 0) alive_poll_ = NewPoll(loop, ep_->alive_fd(), UV_READABLE | UV_DISCONNECT);
    started_ = true;
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

  void StopPolls() {
    for (uv_poll_t** p : {&poll_, &alive_poll_}) {
      if (*p == nullptr) continue;
      uv_poll_stop(*p);
      uv_close(reinterpret_cast<uv_handle_t*>(*p), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      *p = nullptr;
    }
  }

  void SetRef(bool on) {
    refed_ = on;
    for (uv_poll_t* p : {poll_, alive_poll_}) {
      if (p == nullptr) continue;
      if (on) uv_ref(reinterpret_cast<uv_handle_t*>(p));
      else uv_unref(reinterpret_cast<uv_handle_t*>(p));
    }
  }

  Napi::Value Ref(const Napi::CallbackInfo& info) {
    SetRef(true);
    return info.Env().Undefined();
  }
  Napi::Value Unref(const Napi::CallbackInfo& info) {
    SetRef(false);
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

  // Tells the peer (best effort, never blocks) and releases the mapping and every fd.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (ep_) {
      if (!failed_ && queue_.empty()) ep_->SendClose();
      StopPolls();
      sink_.Abort();
      queue_.clear();
      ep_.reset();
    }
    on_wake_.Reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<Endpoint> ep_;
  BufferSink sink_;
  std::deque<Outgoing> queue_;
  Napi::FunctionReference on_wake_;
  std::unique_ptr<Napi::AsyncContext> async_context_;
  uv_poll_t* poll_ = nullptr;
  uv_poll_t* alive_poll_ = nullptr;
  bool started_ = false;
  bool refed_ = false;
  bool failed_ = false;
  bool peer_gone_ = false;
  std::string protocol_error_;
};

}  // namespace

void InitChannel(Napi::Env env, Napi::Object exports) {
  exports.Set("ChannelEndpoint", ChannelEndpoint::Define(env));
}

}  // namespace warden

// Where the channel's decoder puts a received message, for JS (channel_endpoint.h).
#pragma once

#include <napi.h>

#include "channel_frame.h"

namespace warden {
namespace channel {

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

}  // namespace channel
}  // namespace warden

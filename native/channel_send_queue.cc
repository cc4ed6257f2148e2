// The channel's send queue: messages the ring could not take yet, kept in order (with their
// attachments alive) and written out as room appears. Methods of ChannelEndpoint
// (channel_endpoint.h).
#include "channel_endpoint.h"

namespace warden {
namespace channel {

// Queues a message the ring did not take, or took only the first chunks of (the encoder knows how
// many bytes went out and goes on from there with the same bytes).
void ChannelEndpoint::Enqueue(const Napi::CallbackInfo& info, const Message& m) {
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
bool ChannelEndpoint::Flush() {
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

}  // namespace channel
}  // namespace warden

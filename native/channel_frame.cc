#include "channel_frame.h"

#include <cstring>
#include <utility>

namespace warden {
namespace channel {

namespace {

// The peer may rewrite the ring while we copy. A compiler barrier after each copy makes sure every
// later decision uses the private copy and never re-reads shared memory.
inline void CompilerBarrier() { asm volatile("" ::: "memory"); }

}  // namespace

void RingCopyOut(const uint8_t* ring, uint64_t capacity, uint64_t pos, void* dst, size_t n) {
  const uint64_t off = pos & (capacity - 1);
  const size_t first = static_cast<size_t>(capacity - off) < n ? static_cast<size_t>(capacity - off) : n;
  std::memcpy(dst, ring + off, first);
  if (n > first) std::memcpy(static_cast<uint8_t*>(dst) + first, ring, n - first);
  CompilerBarrier();
}

void RingCopyIn(uint8_t* ring, uint64_t capacity, uint64_t pos, const void* src, size_t n) {
  const uint64_t off = pos & (capacity - 1);
  const size_t first = static_cast<size_t>(capacity - off) < n ? static_cast<size_t>(capacity - off) : n;
  std::memcpy(ring + off, src, first);
  if (n > first) std::memcpy(ring, static_cast<const uint8_t*>(src) + first, n - first);
}

FrameDecoder::Status FrameDecoder::Fail(MessageSink* sink, std::string why) {
  if (assembling_ && sink != nullptr) sink->Abort();
  assembling_ = false;
  dst_ = nullptr;
  failed_ = true;
  error_ = std::move(why);
  return kProtocol;
}

FrameDecoder::Status FrameDecoder::Next(const uint8_t* ring, uint64_t head, MessageSink* sink) {
  if (failed_) return kProtocol;
  if (closed_) return kClosed;
  for (;;) {
    // Unsigned difference: a head behind the tail becomes a huge value and fails the same check.
    const uint64_t avail = head - tail_;
    if (avail == 0) return kEmpty;
    if (avail > capacity_) return Fail(sink, "producer position is outside the ring");
    if (avail < kFrameHeaderSize) return Fail(sink, "partial frame header published");

    FrameHeader h;
    RingCopyOut(ring, capacity_, tail_, &h, sizeof h);
    if (h.reserved0 != 0 || h.reserved1 != 0) return Fail(sink, "reserved header bits set");
    if (h.kind == kFrameSkip) {
      // Only to the end of the lap, from inside it: at most one per lap, so skips cost the consumer
      // no more work than the ring's worth of messages they replace.
      const uint64_t off = tail_ & (capacity_ - 1);
      if (h.length != 0) return Fail(sink, "skip frame with a payload");
      if (assembling_) return Fail(sink, "skip inside a chunked message");
      // 8 bytes before the end the header itself would cross into the next lap (and the sum below
      // would wrap): no skip there.
      if (off == 0 || capacity_ - off < kFrameHeaderSize || h.total != capacity_ - off - kFrameHeaderSize) {
        return Fail(sink, "skip frame not ending at the end of the lap");
      }
      if (kFrameHeaderSize + h.total > avail) return Fail(sink, "skip extends past the published data");
      tail_ += kFrameHeaderSize + h.total;
      continue;
    }
    if (h.length > MaxChunk(capacity_)) return Fail(sink, "frame longer than the largest chunk");
    const uint64_t span = FrameSpan(h.length);
    if (span > avail) return Fail(sink, "frame extends past the published data");

    switch (h.kind) {
      case kFrameWhole: {
        if (assembling_) return Fail(sink, "whole message inside a chunked one");
        if (h.total != h.length) return Fail(sink, "whole frame total differs from its length");
        if (h.length > max_message_) return Fail(sink, "message larger than the maximum");
        uint8_t* dst = sink->Begin(h.length);
        if (dst == nullptr) return Fail(sink, "cannot allocate the message");
        RingCopyOut(ring, capacity_, tail_ + kFrameHeaderSize, dst, h.length);
        tail_ += span;
        return kMessage;
      }
      case kFrameFirst: {
        if (assembling_) return Fail(sink, "first chunk inside a chunked message");
        if (h.total > max_message_) return Fail(sink, "message larger than the maximum");
        if (h.length == 0 || h.total <= h.length) return Fail(sink, "first chunk length inconsistent with total");
        dst_ = sink->Begin(h.total);
        if (dst_ == nullptr) return Fail(sink, "cannot allocate the message");
        assembling_ = true;
        total_ = h.total;
        RingCopyOut(ring, capacity_, tail_ + kFrameHeaderSize, dst_, h.length);
        received_ = h.length;
        tail_ += span;
        continue;
      }
      case kFrameCont: {
        if (!assembling_) return Fail(sink, "continuation without a first chunk");
        if (h.total != 0 || h.length == 0) return Fail(sink, "continuation header inconsistent");
        if (h.length > total_ - received_) return Fail(sink, "continuation past the announced total");
        RingCopyOut(ring, capacity_, tail_ + kFrameHeaderSize, dst_ + received_, h.length);
        received_ += h.length;
        tail_ += span;
        if (received_ == total_) {
          assembling_ = false;
          dst_ = nullptr;
          return kMessage;
        }
        continue;
      }
      case kFrameClose: {
        if (h.length != 0 || h.total != 0) return Fail(sink, "close frame with a payload");
        if (assembling_) return Fail(sink, "close inside a chunked message");
        tail_ += span;
        closed_ = true;
        return kClosed;
      }
      default:
        return Fail(sink, "unknown frame kind " + std::to_string(h.kind));
    }
  }
}

bool FrameEncoder::CheckTail(uint64_t tail) {
  // The consumer's tail can only move forward and never past what we published.
  if (tail - last_tail_ > head_ - last_tail_) {
    error_ = "consumer position is outside the ring";
    return false;
  }
  last_tail_ = tail;
  return true;
}

void FrameEncoder::WriteFrame(uint8_t* ring, uint8_t kind, uint64_t total, const Span* spans, size_t nspans,
                              uint64_t offset, uint64_t length) {
  FrameHeader h{};
  h.length = static_cast<uint32_t>(length);
  h.kind = kind;
  h.total = total;
  RingCopyIn(ring, capacity_, head_, &h, sizeof h);
  uint64_t pos = head_ + kFrameHeaderSize;
  // Gather [offset, offset + length) of the concatenated spans.
  for (size_t i = 0; i < nspans && length > 0; ++i) {
    if (offset >= spans[i].size) {
      offset -= spans[i].size;
      continue;
    }
    const uint64_t n = spans[i].size - offset < length ? spans[i].size - offset : length;
    RingCopyIn(ring, capacity_, pos, spans[i].data + offset, n);
    pos += n;
    length -= n;
    offset = 0;
  }
  head_ += FrameSpan(h.length);
}

FrameEncoder::Status FrameEncoder::Write(uint8_t* ring, uint64_t tail, const Span* spans, size_t nspans,
                                         uint64_t total) {
  if (!CheckTail(tail)) return kProtocol;
  const uint64_t off = head_ & (capacity_ - 1);
  if (sent_ == 0 && head_ == last_tail_ && off >= HotWindow(capacity_) && capacity_ - off >= kFrameHeaderSize &&
      total <= chunk_ && FrameSpan(total) <= off) {
    // The consumer has everything: start this (small) message at the beginning of the next lap
    // (kFrameSkip). The skip leaves `off` bytes free, which the message fits in. Positions are
    // multiples of 8, so the head can stop 8 bytes before the end, too close for a skip header.
    FrameHeader h{};
    h.kind = kFrameSkip;
    h.total = capacity_ - off - kFrameHeaderSize;
    RingCopyIn(ring, capacity_, head_, &h, sizeof h);
    head_ += capacity_ - off;
  }
  if (sent_ == 0 && total <= chunk_) {
    // Small messages go whole or not at all, so the consumer never has to assemble them.
    if (capacity_ - (head_ - last_tail_) < FrameSpan(total)) return kPartial;
    WriteFrame(ring, kFrameWhole, total, spans, nspans, 0, total);
    return kDone;
  }
  const uint64_t free = capacity_ - (head_ - last_tail_);
  if (free < FrameSpan(1)) return kPartial;
  const uint64_t room = (free - kFrameHeaderSize) & ~uint64_t{7};
  uint64_t n = total - sent_;
  if (n > chunk_) n = chunk_;
  if (n > room) n = room;
  // Tiny chunks cost a header each; wait for the consumer instead unless this finishes the message.
  // An empty ring always has room for a full chunk, so this never stalls forever.
  const uint64_t min_chunk = chunk_ / 8 < 4096 ? chunk_ / 8 : 4096;
  if (n < min_chunk && n < total - sent_) return kPartial;
  WriteFrame(ring, sent_ == 0 ? kFrameFirst : kFrameCont, sent_ == 0 ? total : 0, spans, nspans, sent_, n);
  sent_ += n;
  if (sent_ == total) {
    sent_ = 0;
    return kDone;
  }
  return kMore;
}

bool FrameEncoder::WriteClose(uint8_t* ring, uint64_t tail) {
  if (!CheckTail(tail)) return false;
  if (capacity_ - (head_ - last_tail_) < kFrameHeaderSize) return false;
  WriteFrame(ring, kFrameClose, 0, nullptr, 0, 0, 0);
  return true;
}

}  // namespace channel
}  // namespace warden

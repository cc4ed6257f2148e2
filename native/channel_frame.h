// Framing of the shared-memory rings. Pure code: no syscalls, no N-API, so the libFuzzer target
// (fuzz/channel_decoder_fuzz.cc) can drive the decoder with arbitrary ring contents.
//
// A ring is `capacity` bytes (a power of two) plus two 64-bit positions that only grow: `head`
// (bytes the producer has published) and `tail` (bytes the consumer has released). A frame is a
// 16-byte header and a payload padded to 8 bytes; it may wrap around the end of the ring. The
// producer publishes whole frames only, so a consumer that sees 0 < head - tail < one frame knows
// the producer is lying.
//
// Messages up to `max_chunk` bytes travel in one kWhole frame; larger ones (up to the configured
// maximum) as kFirst (carrying the total) followed by kCont frames, so a message may be many times
// the ring size.
//
// A kSkip frame jumps to the start of the next lap. The producer writes one before a message when
// the consumer has released everything and the head is past the first kHotWindow bytes of the lap:
// request-and-answer traffic then stays in the same few pages of the ring instead of walking through
// all of it. Walking costs a first-touch page fault in each process per page (tens of microseconds
// on a virtual machine: most of a sync call's p99 before this), keeps the whole ring resident, and
// touches cold cache lines on every call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace warden {
namespace channel {

constexpr uint32_t kFrameHeaderSize = 16;
constexpr uint64_t kMinRingSize = 4096;
constexpr uint64_t kMaxRingSize = 1ull << 30;

enum FrameKind : uint8_t {
  kFrameWhole = 1,  // a complete message; total == length
  kFrameFirst = 2,  // first chunk of a message of `total` bytes; total > length
  kFrameCont = 3,   // next chunk of the message being assembled; total == 0
  kFrameClose = 4,  // the producer will send nothing more; length == total == 0
  kFrameSkip = 5,   // length == 0; the `total` bytes after the header are unused and end the lap
};

// How much of each lap small messages reuse before the producer skips to the next (see kFrameSkip).
inline uint64_t HotWindow(uint64_t capacity) { return capacity / 4 < 16384 ? capacity / 4 : 16384; }

struct FrameHeader {
  uint32_t length;  // payload bytes in this frame
  uint8_t kind;
  uint8_t reserved0;   // must be 0
  uint16_t reserved1;  // must be 0
  uint64_t total;      // see FrameKind
};
static_assert(sizeof(FrameHeader) == kFrameHeaderSize, "frame header is 16 bytes on the wire");

// Bytes a frame with `length` payload bytes occupies in the ring.
inline uint64_t FrameSpan(uint64_t length) { return kFrameHeaderSize + ((length + 7) & ~uint64_t{7}); }

// Largest payload of one frame: half the ring, so the consumer can drain one chunk while the
// producer writes the next.
inline uint64_t MaxChunk(uint64_t capacity) { return capacity / 2 - kFrameHeaderSize; }

// Copies between the ring and private memory, handling the wrap. `pos` is a ring position (any
// 64-bit value); only its low bits select the byte. The caller bounds `n` to `capacity`.
void RingCopyOut(const uint8_t* ring, uint64_t capacity, uint64_t pos, void* dst, size_t n);
void RingCopyIn(uint8_t* ring, uint64_t capacity, uint64_t pos, const void* src, size_t n);

// Where the decoder puts a message. Begin() returns memory for `total` bytes that stays valid until
// the message is complete or Abort() is called, or nullptr when it cannot be had (the decoder
// reports that as an error, never crashes).
class MessageSink {
 public:
  virtual ~MessageSink() = default;
  virtual uint8_t* Begin(uint64_t total) = 0;
  virtual void Abort() = 0;
};

// The sink both ends use: a message of up to `capacity` bytes lands in a fixed scratch buffer owned
// by the caller (no allocation per message; the caller reads it before the next Begin), a larger
// one in memory from AllocateLarge().
class ScratchSink : public MessageSink {
 public:
  ScratchSink(uint8_t* scratch, size_t capacity) : scratch_(scratch), capacity_(capacity) {}

  uint8_t* Begin(uint64_t total) final {
    Abort();
    if (total <= capacity_) {
      in_scratch_ = true;
      length_ = static_cast<size_t>(total);
      return scratch_;
    }
    return AllocateLarge(total);
  }
  void Abort() final {
    if (in_scratch_) in_scratch_ = false;
    else ReleaseLarge();
  }

  // Whether the last message begun went to the scratch, and its length there.
  bool in_scratch() const { return in_scratch_; }
  size_t length() const { return length_; }
  // The complete message has been taken: forget it (the scratch may be reused).
  void Taken() { in_scratch_ = false; }

 protected:
  // Memory for `total` bytes, valid until ReleaseLarge() or the message is taken; nullptr if none.
  virtual uint8_t* AllocateLarge(uint64_t total) = 0;
  virtual void ReleaseLarge() = 0;

 private:
  uint8_t* const scratch_;
  const size_t capacity_;
  bool in_scratch_ = false;
  size_t length_ = 0;
};

// Consumer side. All state that matters (tail, assembly progress) is private: nothing is read back
// from the mapping except the producer's `head` and the frame bytes, which are copied out before
// they are looked at.
class FrameDecoder {
 public:
  enum Status {
    kEmpty,     // no complete message yet (tail may have moved: publish it)
    kMessage,   // a message is complete in the sink's memory
    kClosed,    // the producer sent kFrameClose; nothing after it is read
    kProtocol,  // the producer broke the protocol; error() says how. Sticky.
  };

  FrameDecoder(uint64_t capacity, uint64_t max_message) : capacity_(capacity), max_message_(max_message) {}

  // Decodes from the private tail up to `head` (read from the mapping, untrusted) until a message
  // is complete or the frames run out. Work per call is bounded by the ring size.
  Status Next(const uint8_t* ring, uint64_t head, MessageSink* sink);

  uint64_t tail() const { return tail_; }
  bool assembling() const { return assembling_; }
  const std::string& error() const { return error_; }

 private:
  Status Fail(MessageSink* sink, std::string why);

  const uint64_t capacity_;
  const uint64_t max_message_;
  uint64_t tail_ = 0;
  bool assembling_ = false;
  uint8_t* dst_ = nullptr;
  uint64_t total_ = 0;
  uint64_t received_ = 0;
  bool closed_ = false;
  bool failed_ = false;
  std::string error_;
};

// A message to send, as a list of byte ranges sent back to back (an envelope and attachments).
struct Span {
  const uint8_t* data;
  size_t size;
};

// Largest frame the producer writes of a chunked message: small enough that a consumer spinning on
// the ring copies one chunk out while the producer copies the next in (the pair runs at the speed of
// one copy, not two in a row), large enough that headers and publishes cost nothing.
inline uint64_t ProducerChunk(uint64_t capacity) {
  const uint64_t c = capacity / 16 < 4096 ? 4096 : capacity / 16;
  return c < MaxChunk(capacity) ? c : MaxChunk(capacity);
}

// Producer side. Writes as much of one message as fits; call again when space frees up.
class FrameEncoder {
 public:
  enum Status {
    kDone,      // the whole message is in the ring (publish head)
    kPartial,   // the ring is full; some or none of it was written (publish head, wait for space)
    kMore,      // one chunk was written and more may fit: publish head, then call again
    kProtocol,  // the consumer's tail is impossible; error() says how
  };

  explicit FrameEncoder(uint64_t capacity) : capacity_(capacity), chunk_(ProducerChunk(capacity)) {}

  // `tail` is the consumer's position read from the mapping (untrusted). `total` is the sum of the
  // span sizes; the caller has checked it against the maximum message size. A message of up to one
  // producer chunk goes whole; a larger one one chunk per call (kMore), so the caller can publish
  // each chunk as soon as it is written.
  Status Write(uint8_t* ring, uint64_t tail, const Span* spans, size_t nspans, uint64_t total);
  // Writes a kFrameClose if it fits. Returns false when the ring is full or the tail lies.
  bool WriteClose(uint8_t* ring, uint64_t tail);

  uint64_t head() const { return head_; }
  uint64_t last_tail() const { return last_tail_; }
  bool in_message() const { return sent_ > 0; }
  const std::string& error() const { return error_; }

 private:
  bool CheckTail(uint64_t tail);
  void WriteFrame(uint8_t* ring, uint8_t kind, uint64_t total, const Span* spans, size_t nspans,
                  uint64_t offset, uint64_t length);

  const uint64_t capacity_;
  const uint64_t chunk_;
  uint64_t head_ = 0;
  uint64_t last_tail_ = 0;
  uint64_t sent_ = 0;  // payload bytes of the current (chunked) message already in the ring
  std::string error_;
};

}  // namespace channel
}  // namespace warden

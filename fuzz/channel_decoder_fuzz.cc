// libFuzzer target for the host-side frame decoder and the sink it decodes into: the fuzzer plays a
// hostile sandbox that controls every byte of the ring and every value of the producer position.
//
// Input: [u8 log2 ring size - 12 (mod 5)] [u8 rounds] then per round [u32 head advance] and the
// rest is ring content. Each round rewrites the ring with the next slice of input and publishes
// head += advance, so frames straddle rounds, wrap, and lie about lengths.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../native/channel_frame.h"

namespace {

// The sink the host uses (ScratchSink: small messages into a fixed scratch, large ones into memory
// of their own), with malloc standing in for the JS Buffer. The scratch is small so that both paths,
// and chunked messages assembled into either, are reached.
constexpr size_t kScratch = 256;

class FuzzSink : public warden::channel::ScratchSink {
 public:
  FuzzSink() : ScratchSink(scratch_, kScratch) {}
  ~FuzzSink() override { ReleaseLarge(); }

  // Touch every byte of the message so ASan/MSan see any uninitialised or out-of-bounds result.
  void Consume() {
    volatile uint8_t x = 0;
    if (in_scratch()) {
      if (length() > kScratch) __builtin_trap();
      for (size_t i = 0; i < length(); ++i) x ^= scratch_[i];
      Taken();
    } else {
      for (uint64_t i = 0; i < size_; ++i) x ^= buf_[i];
      ReleaseLarge();
    }
    (void)x;
  }

 protected:
  uint8_t* AllocateLarge(uint64_t total) override {
    ReleaseLarge();
    size_ = total;
    buf_ = static_cast<uint8_t*>(std::malloc(total == 0 ? 1 : total));
    return buf_;
  }
  void ReleaseLarge() override {
    std::free(buf_);
    buf_ = nullptr;
    size_ = 0;
  }

 private:
  uint8_t scratch_[kScratch];
  uint8_t* buf_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using warden::channel::FrameDecoder;
  if (size < 2) return 0;
  const uint64_t capacity = uint64_t{4096} << (data[0] % 5);
  const unsigned rounds = 1 + data[1] % 16;
  data += 2;
  size -= 2;
  std::vector<uint8_t> ring(capacity, 0);
  // Small maximum so the fuzzer reaches the "too large" paths as well as chunk assembly.
  FrameDecoder dec(capacity, 3 * capacity);
  FuzzSink sink;
  uint64_t head = 0;
  for (unsigned r = 0; r < rounds && size >= 4; ++r) {
    uint32_t advance;
    std::memcpy(&advance, data, 4);
    data += 4;
    size -= 4;
    // Write the next slice of input where the producer would have written it.
    const size_t n = size < capacity ? size : capacity;
    warden::channel::RingCopyIn(ring.data(), capacity, head, data, n);
    data += n;
    size -= n;
    // Mostly plausible advances, sometimes wild ones (beyond the ring, backwards).
    head += (advance & 0x80000000u) ? static_cast<uint64_t>(static_cast<int32_t>(advance)) : (advance % (capacity + 1));
    for (int steps = 0; steps < 1024; ++steps) {
      FrameDecoder::Status st = dec.Next(ring.data(), head, &sink);
      if (st == FrameDecoder::kMessage) {
        sink.Consume();
        continue;
      }
      if (st == FrameDecoder::kProtocol || st == FrameDecoder::kClosed) return 0;
      break;
    }
  }
  return 0;
}

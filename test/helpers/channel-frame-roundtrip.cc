// The ring framing (native/channel_frame.{h,cc}) driven directly, for test/channel-frame.test.ts:
//   det      the producer's head stops 8 bytes before the end of a lap (positions are multiples of
//            8), the ring drains, a small message follows: it must arrive (a skip header written
//            there crossed into the next lap, was overwritten by the message, and the consumer
//            refused the channel);
//   hostile  a consumer given a skip frame 8 bytes before the end of the lap must refuse it (the
//            sum of header and skip wrapped and passed the bounds check);
//   random N N seeds x 3 ring sizes: random messages (small, chunk-sized, several rings long, in up
//            to three spans) through encoder and decoder, the consumer draining and publishing its
//            tail at random moments; every message must arrive intact, in order.
// Exit 0 when all hold; prints what failed otherwise.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "../../native/channel_frame.h"

using namespace warden::channel;

namespace {

struct Sink : ScratchSink {
  uint8_t scratch[1 << 16];
  std::vector<uint8_t> large;
  explicit Sink(size_t cap) : ScratchSink(scratch, cap) {}
  uint8_t* AllocateLarge(uint64_t t) override {
    large.assign(t, 0);
    return large.data();
  }
  void ReleaseLarge() override { large.clear(); }
  const uint8_t* data() const { return in_scratch() ? scratch : large.data(); }
  size_t size() const { return in_scratch() ? length() : large.size(); }
};

int Det(uint64_t cap) {
  std::vector<uint8_t> ring(cap, 0);
  FrameEncoder enc(cap);
  FrameDecoder dec(cap, 1 << 20);
  Sink sink(cap);
  std::vector<uint8_t> buf(cap, 0xab);
  // Fill to cap - 8 without draining.
  while (enc.head() < cap - 8) {
    const uint64_t left = cap - 8 - enc.head();
    uint64_t pay = left - kFrameHeaderSize;
    if (pay > ProducerChunk(cap)) pay = ProducerChunk(cap);
    if (left - FrameSpan(pay) != 0 && left - FrameSpan(pay) < kFrameHeaderSize) pay -= kFrameHeaderSize;
    Span s{buf.data(), static_cast<size_t>(pay)};
    if (enc.Write(ring.data(), 0, &s, 1, pay) != FrameEncoder::kDone) return printf("det %llu: fill failed\n", (unsigned long long)cap), 1;
  }
  for (;;) {
    FrameDecoder::Status st = dec.Next(ring.data(), enc.head(), &sink);
    if (st == FrameDecoder::kMessage) {
      sink.Taken();
      continue;
    }
    if (st != FrameDecoder::kEmpty) return printf("det %llu: drain: %s\n", (unsigned long long)cap, dec.error().c_str()), 1;
    break;
  }
  uint8_t msg[100];
  memset(msg, 0x5a, sizeof msg);
  Span s{msg, sizeof msg};
  if (enc.Write(ring.data(), dec.tail(), &s, 1, sizeof msg) != FrameEncoder::kDone) return printf("det %llu: write failed\n", (unsigned long long)cap), 1;
  FrameDecoder::Status st = dec.Next(ring.data(), enc.head(), &sink);
  if (st != FrameDecoder::kMessage || sink.size() != sizeof msg || memcmp(sink.data(), msg, sizeof msg) != 0) {
    return printf("det %llu: the message after the head stopped 8 bytes short of the lap end did not arrive: %s\n", (unsigned long long)cap, dec.error().c_str()), 1;
  }
  return 0;
}

int Hostile() {
  const uint64_t cap = 4096;
  std::vector<uint8_t> ring(cap, 0);
  FrameDecoder dec(cap, 1 << 20);
  Sink sink(cap);
  // Two whole frames end at 4088; then a skip header there.
  FrameHeader h{};
  h.kind = kFrameWhole;
  h.length = h.total = 2032;
  RingCopyIn(ring.data(), cap, 0, &h, sizeof h);
  h.length = h.total = 2024;
  RingCopyIn(ring.data(), cap, 2048, &h, sizeof h);
  if (dec.Next(ring.data(), 4088, &sink) != FrameDecoder::kMessage || dec.Next(ring.data(), 4088, &sink) != FrameDecoder::kMessage) {
    return printf("hostile: the two frames before it were refused: %s\n", dec.error().c_str()), 1;
  }
  FrameHeader skip{};
  skip.kind = kFrameSkip;
  skip.total = cap - 4088 - kFrameHeaderSize;  // wraps
  RingCopyIn(ring.data(), cap, 4088, &skip, sizeof skip);
  // Refused as a bad skip, not accepted as an 8-byte step and refused later for what follows it.
  if (dec.Next(ring.data(), 4088 + kFrameHeaderSize, &sink) != FrameDecoder::kProtocol || dec.error().find("skip") == std::string::npos) {
    return printf("hostile: a skip 8 bytes before the lap end was not refused as one (%s)\n", dec.error().c_str()), 1;
  }
  return 0;
}

int Random(uint64_t seed, uint64_t cap, int nmsgs) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> ring(cap, 0);
  FrameEncoder enc(cap);
  const uint64_t maxmsg = 3 * cap;
  FrameDecoder dec(cap, maxmsg);
  Sink sink(cap);
  uint64_t head = 0, tail = 0;
  std::deque<std::vector<uint8_t>> expected;
  auto consume = [&](int steps) -> bool {
    for (int i = 0; i < steps; ++i) {
      FrameDecoder::Status st = dec.Next(ring.data(), head, &sink);
      if (rng() % 3 == 0) tail = dec.tail();
      if (st == FrameDecoder::kMessage) {
        if (expected.empty() || expected.front().size() != sink.size() ||
            (sink.size() != 0 && memcmp(expected.front().data(), sink.data(), sink.size()) != 0)) {
          printf("seed %llu ring %llu: a message arrived changed or out of order\n", (unsigned long long)seed, (unsigned long long)cap);
          return false;
        }
        expected.pop_front();
        sink.Taken();
        sink.ReleaseLarge();
        continue;
      }
      if (st == FrameDecoder::kProtocol) {
        printf("seed %llu ring %llu: refused: %s (offset %llu)\n", (unsigned long long)seed, (unsigned long long)cap, dec.error().c_str(),
               (unsigned long long)(dec.tail() & (cap - 1)));
        return false;
      }
      tail = dec.tail();
      break;
    }
    return true;
  };
  for (int m = 0; m < nmsgs; ++m) {
    const int r = static_cast<int>(rng() % 10);
    const uint64_t n = r < 6 ? rng() % 200 : r < 9 ? rng() % (ProducerChunk(cap) + 1) : rng() % maxmsg;
    std::vector<uint8_t> msg(n);
    for (auto& b : msg) b = static_cast<uint8_t>(rng());
    const size_t a = n != 0 ? rng() % (n + 1) : 0;
    const size_t b = a + (n - a != 0 ? rng() % (n - a + 1) : 0);
    Span spans[3] = {{msg.data(), a}, {msg.data() + a, b - a}, {msg.data() + b, n - b}};
    expected.push_back(msg);
    for (;;) {
      FrameEncoder::Status st = enc.Write(ring.data(), tail, spans, 3, n);
      head = enc.head();
      if (st == FrameEncoder::kProtocol) return printf("seed %llu: encoder: %s\n", (unsigned long long)seed, enc.error().c_str()), 1;
      if (st == FrameEncoder::kDone) break;
      if (st == FrameEncoder::kMore && rng() % 4 != 0) continue;
      if (!consume(1 + static_cast<int>(rng() % 8))) return 1;
    }
    if (rng() % 2 == 0 && !consume(rng() % 4 == 0 ? 1000 : 1 + static_cast<int>(rng() % 3))) return 1;
  }
  while (!expected.empty()) {
    const uint64_t before = dec.tail();
    if (!consume(1000)) return 1;
    if (dec.tail() == before && !expected.empty()) return printf("seed %llu: stuck\n", (unsigned long long)seed), 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "random";
  int fails = 0;
  if (!strcmp(mode, "det")) {
    for (uint64_t cap : {4096ull, 65536ull, 1ull << 20}) fails += Det(cap);
  } else if (!strcmp(mode, "hostile")) {
    fails = Hostile();
  } else {
    const int seeds = argc > 2 ? atoi(argv[2]) : 100;
    for (int s = 0; s < seeds; ++s) {
      for (uint64_t cap : {4096ull, 8192ull, 65536ull}) fails += Random(static_cast<uint64_t>(s), cap, 2000);
    }
  }
  printf("%s: %d failed\n", mode, fails);
  return fails != 0 ? 1 : 0;
}

// A hostile sandbox side of the channel, for test/channel-hostile.test.ts. It gets the channel fds
// at 3 (memfd), 4 (its eventfd), 5 (the host's eventfd), 6 (alive pipe) and attacks per argv[1].
// Layout (native/channel.h): head[i] at 64 + 64*i, tail[i] at 192 + 64*i, ring i at 4096 + i*ring.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static uint8_t* map;
static uint64_t ring;

static void wake_host(void) {
  uint64_t one = 1;
  if (write(5, &one, 8) < 0) perror("write eventfd");
}
static void set_head(uint64_t v) { __atomic_store_n((uint64_t*)(map + 64 + 64), v, __ATOMIC_SEQ_CST); }
static uint8_t* ring1(void) { return map + 4096 + ring; }

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "garbage";
  struct stat st;
  if (fstat(3, &st) != 0) return 90;
  ring = ((uint64_t)st.st_size - 4096) / 2;
  map = mmap(NULL, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, 3, 0);
  if (map == MAP_FAILED) return 91;
  if (!strcmp(mode, "exit")) return 3;
  if (!strcmp(mode, "silent")) {
    for (;;) pause();
  }
  if (!strcmp(mode, "shrink")) {
    // Sealed: both must fail, or the host would fault on its next access.
    int a = ftruncate(3, 4096), b = ftruncate(3, 0);
    if (a == 0 || b == 0) return 92;
  }
  if (!strcmp(mode, "garbage") || !strcmp(mode, "shrink")) {
    srand(42);
    for (uint64_t i = 0; i < ring; i++) ring1()[i] = (uint8_t)rand();
    set_head(4096);
  } else if (!strcmp(mode, "lying-length")) {
    // A well-formed header whose payload runs past what was published.
    uint32_t hdr[4] = {1000, 1, 1000, 0};
    memcpy(ring1(), hdr, 16);
    set_head(64);
  } else if (!strcmp(mode, "lying-head")) {
    set_head(ring * 4);  // more than the ring holds
  } else if (!strcmp(mode, "lying-total")) {
    // A first chunk announcing far more than the maximum message.
    uint32_t hdr[4] = {8, 2, 0xffffffffu, 0xffffu};
    memcpy(ring1(), hdr, 16);
    set_head(32);
  } else if (!strcmp(mode, "lying-tail")) {
    // Claims to have consumed more than the host ever wrote into ring 0.
    __atomic_store_n((uint64_t*)(map + 192), (uint64_t)1 << 40, __ATOMIC_SEQ_CST);
    wake_host();
    for (;;) pause();
  } else if (!strcmp(mode, "skip-payload")) {
    // A skip frame (kind 5) must carry no payload.
    uint32_t hdr[4] = {8, 5, 0, 0};
    memcpy(ring1(), hdr, 16);
    set_head(32);
  } else if (!strcmp(mode, "skip-from-start")) {
    // A skip must start inside a lap and end exactly at its end; this one spans a whole lap.
    uint32_t hdr[4] = {0, 5, (uint32_t)(ring - 16), (uint32_t)((ring - 16) >> 32)};
    memcpy(ring1(), hdr, 16);
    set_head(ring);
  } else if (!strcmp(mode, "skip-in-message")) {
    // A first chunk of a larger message, then a skip before its continuation.
    uint32_t first[4] = {8, 2, 4096, 0};
    memcpy(ring1(), first, 16);
    memset(ring1() + 16, 1, 8);
    uint32_t skip[4] = {0, 5, (uint32_t)(ring - 40), (uint32_t)((ring - 40) >> 32)};
    memcpy(ring1() + 24, skip, 16);
    set_head(ring);
  } else if (!strcmp(mode, "bad-envelope")) {
    // A frame that is fine, carrying a message the RPC codec rejects.
    uint32_t hdr[4] = {8, 1, 8, 0};
    memcpy(ring1(), hdr, 16);
    memset(ring1() + 16, 0xee, 8);
    set_head(24);
  }
  wake_host();
  for (;;) pause();  // stay alive: the host must act on the violation, not on our exit
}

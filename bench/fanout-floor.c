// The floor of a fan-out on this machine: what waking N sleepers and collecting their answers costs
// when the sleepers are N processes, and when they are N threads of one process, with nothing else
// in the way (no JavaScript, no runtime, no encoding). bench:fanout prints it beside warden and the
// Node peers, so that its ratios can be read against what the two kinds of task cost here at all.
//
// The mechanics are warden's: each sleeper waits in epoll on its own eventfd after announcing that
// it sleeps; the coordinator writes a request counter into shared memory and writes the eventfd only
// of a sleeper that announced it; a sleeper answers every request it finds (one wake-up may serve
// several) and wakes the coordinator the same way. K invokes are kept in flight, each one request
// to every sleeper, and an invoke is done when all N answered it. With --touch KiB, each wake-up
// first touches that much of the sleeper's own memory (one byte per cache line), as a stand-in for
// a runtime's working set.
//
// Usage: fanout-floor processes|threads N K ROUNDS [TOUCH_KIB]
// Prints one line of JSON: calls per second and cpu per call (coordinator + sleepers, each thread's own
// RUSAGE_THREAD over the measured rounds), in µs.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  _Alignas(64) atomic_uint_fast64_t req;
  atomic_int sleeping;
  int efd;
  _Alignas(64) atomic_uint_fast64_t resp;
  double cpu0, cpu1;  // the sleeper's own cpu (RUSAGE_THREAD) when measuring started, and at its end
} Slot;

typedef struct {
  _Alignas(64) atomic_int host_sleeping;
  int host_efd;
  atomic_int stop;
  atomic_int measuring;
} Shared;

static Slot* slots;
static Shared* shared;
static int touch_bytes;

static double Cpu(int who) {
  struct rusage u;
  getrusage(who, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

static void Wake(int efd) {
  uint64_t one = 1;
  if (write(efd, &one, sizeof one) < 0) perror("write eventfd");
}

static void Sleeper(int i) {
  Slot* s = &slots[i];
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN};
  epoll_ctl(ep, EPOLL_CTL_ADD, s->efd, &ev);
  volatile char* mem = touch_bytes > 0 ? malloc(touch_bytes) : NULL;
  if (mem != NULL) memset((char*)mem, 1, touch_bytes);
  uint64_t done = 0;
  int measured = 0;
  for (;;) {
    uint64_t r = atomic_load(&s->req);
    if (!measured && atomic_load(&shared->measuring)) {
      measured = 1;
      s->cpu0 = Cpu(RUSAGE_THREAD);
    }
    if (r != done) {
      for (int o = 0; o < touch_bytes; o += 64) mem[o]++;
      done = r;
      atomic_store(&s->resp, done);
      if (atomic_exchange(&shared->host_sleeping, 0)) Wake(shared->host_efd);
      continue;
    }
    if (atomic_load(&shared->stop)) {
      s->cpu1 = measured ? Cpu(RUSAGE_THREAD) : 0;
      return;
    }
    atomic_store(&s->sleeping, 1);
    if (atomic_load(&s->req) != done) {  // a request published before the announcement
      atomic_store(&s->sleeping, 0);
      continue;
    }
    struct epoll_event out;
    epoll_wait(ep, &out, 1, -1);
    uint64_t v;
    if (read(s->efd, &v, sizeof v) < 0) perror("read eventfd");
    atomic_store(&s->sleeping, 0);
  }
}

static void* ThreadMain(void* arg) {
  Sleeper((int)(intptr_t)arg);
  return NULL;
}

static double Now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static uint64_t MinAnswered(int n) {
  uint64_t m = UINT64_MAX;
  for (int i = 0; i < n; i++) {
    uint64_t r = atomic_load(&slots[i].resp);
    if (r < m) m = r;
  }
  return m;
}

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s processes|threads N K ROUNDS [TOUCH_KIB]\n", argv[0]);
    return 2;
  }
  const int threads = strcmp(argv[1], "threads") == 0;
  const int n = atoi(argv[2]), k = atoi(argv[3]), rounds = atoi(argv[4]);
  touch_bytes = argc > 5 ? atoi(argv[5]) * 1024 : 0;
  const int warmup = 20;
  slots = mmap(NULL, sizeof(Slot) * n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  shared = mmap(NULL, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (slots == MAP_FAILED || shared == MAP_FAILED) return perror("mmap"), 1;
  shared->host_efd = eventfd(0, EFD_CLOEXEC);
  for (int i = 0; i < n; i++) slots[i].efd = eventfd(0, EFD_CLOEXEC);
  pid_t* pids = calloc(n, sizeof(pid_t));
  pthread_t* tids = calloc(n, sizeof(pthread_t));
  for (int i = 0; i < n; i++) {
    if (threads) {
      if (pthread_create(&tids[i], NULL, ThreadMain, (void*)(intptr_t)i) != 0) return perror("pthread_create"), 1;
    } else if ((pids[i] = fork()) == 0) {
      Sleeper(i);
      _exit(0);
    } else if (pids[i] < 0) {
      return perror("fork"), 1;
    }
  }
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN};
  epoll_ctl(ep, EPOLL_CTL_ADD, shared->host_efd, &ev);
  const uint64_t total = (uint64_t)rounds + warmup;
  uint64_t issued = 0, completed = 0;
  double t0 = 0, self0 = 0;
  while (completed < total) {
    while (issued < completed + k && issued < total) {
      issued++;
      for (int i = 0; i < n; i++) {
        atomic_store(&slots[i].req, issued);
        if (atomic_exchange(&slots[i].sleeping, 0)) Wake(slots[i].efd);
      }
    }
    uint64_t m = MinAnswered(n);
    if (m == completed) {
      atomic_store(&shared->host_sleeping, 1);
      m = MinAnswered(n);
      if (m == completed) {
        struct epoll_event out;
        epoll_wait(ep, &out, 1, -1);
        uint64_t v;
        if (read(shared->host_efd, &v, sizeof v) < 0) perror("read eventfd");
      }
      atomic_store(&shared->host_sleeping, 0);
      continue;
    }
    completed = m;
    if (completed >= (uint64_t)warmup && t0 == 0) {
      t0 = Now();
      self0 = Cpu(RUSAGE_THREAD);
      atomic_store(&shared->measuring, 1);
    }
  }
  const double wall = Now() - t0;
  const double host = Cpu(RUSAGE_THREAD) - self0;
  atomic_store(&shared->stop, 1);
  for (int i = 0; i < n; i++) Wake(slots[i].efd);
  for (int i = 0; i < n; i++) {
    if (threads) pthread_join(tids[i], NULL);
    else waitpid(pids[i], NULL, 0);
  }
  // Each sleeper's cpu from its first look after measuring began to its end (the shared memory
  // outlives the processes).
  double sleepers = 0;
  for (int i = 0; i < n; i++) sleepers += slots[i].cpu1 - slots[i].cpu0;
  const double calls = (double)rounds * n;
  printf("{\"callsPerSecond\":%.0f,\"cpuUsPerCall\":%.2f,\"hostCpuUsPerCall\":%.2f}\n", calls / wall,
         (host + sleepers) * 1e6 / calls, host * 1e6 / calls);
  return 0;
}

// The raw floor of a sandboxed spawn: clone with the same namespaces as warden's full sandbox, then
// exec, with no other setup. Prints the median spawn-to-exit time in microseconds over N runs.
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static char stack[64 * 1024];

static int child(void* arg) {
  char* argv[] = {(char*)arg, NULL};
  char* envp[] = {NULL};
  execve((char*)arg, argv, envp);
  _exit(127);
}

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 200;
  const char* prog = argc > 2 ? argv[2] : "/bin/true";
  int flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
              CLONE_NEWCGROUP;
  double* t = calloc(n, sizeof *t);
  for (int i = 0; i < n; i++) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid_t pid = clone(child, stack + sizeof stack, flags | SIGCHLD, (void*)prog);
    if (pid < 0) {
      perror("clone");
      return 1;
    }
    int st;
    waitpid(pid, &st, 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      fprintf(stderr, "child failed: %d\n", st);
      return 1;
    }
    t[i] = (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3;
  }
  // "all": every sample (µs), for a caller that pools rounds interleaved with its own measurements.
  if (argc > 3 && strcmp(argv[3], "all") == 0) {
    for (int i = 0; i < n; i++) printf("%.1f%c", t[i], i + 1 < n ? ' ' : '\n');
    return 0;
  }
  qsort(t, n, sizeof *t, cmp);
  printf("%.1f %.1f\n", t[n / 2], t[(int)(n * 0.9)]);
  return 0;
}

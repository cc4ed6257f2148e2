// The raw floor of a sandboxed spawn: clone with the same namespaces as warden's full sandbox, then
// exec, with no other setup, timed spawn to exit (clone .. waitpid) in microseconds.
//
// It serves one spawn per line read on stdin and prints each time on its own line, so that the
// benchmark can alternate it with warden's spawns one for one: every spawn of either follows one of
// the other, with the same kernel work still in flight (a net namespace is torn down
// asynchronously, after its last process exits) and the same shared machine around it.
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char stack[64 * 1024];

static int child(void* arg) {
  char* argv[] = {(char*)arg, NULL};
  char* envp[] = {NULL};
  execve((char*)arg, argv, envp);
  _exit(127);
}

int main(int argc, char** argv) {
  const char* prog = argc > 1 ? argv[1] : "/bin/true";
  int flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
              CLONE_NEWCGROUP;
  char line[64];
  while (fgets(line, sizeof line, stdin) != NULL) {
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
    printf("%.1f\n", (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3);
    fflush(stdout);
  }
  return 0;
}

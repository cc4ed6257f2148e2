#include <sys/syscall.h>
static long sys3(long n, long a, long b, long c) { long r; __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory"); return r; }
void _start(void) {
  static const char m[] = "abandoned sandbox wrote through fd 5\n";
  sys3(SYS_write, 5, (long)m, sizeof m - 1);
  for (;;) sys3(SYS_exit_group, 0, 0, 0);
}

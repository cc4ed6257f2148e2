// Raw system calls for the child between clone and execve.
//
// The child runs with CLONE_VM in the parent's address space and with the parent thread's TLS, so it
// must not touch `errno` (a TLS variable the parent thread is using at the same moment) nor call libc
// functions that may take locks or allocate. These wrappers return -errno instead.
#pragma once

#include <sys/syscall.h>

#if !defined(__x86_64__)
#error "warden's launcher is written for x86_64; port raw_syscall.h and the seccomp arch check first"
#endif

namespace warden {

inline long RawSyscall(long nr, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0, long a5 = 0,
                       long a6 = 0) {
  long ret;
  register long r10 asm("r10") = a4;
  register long r8 asm("r8") = a5;
  register long r9 asm("r9") = a6;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  return ret;
}

template <typename... Args>
inline long Sys(long nr, Args... args) {
  return RawSyscall(nr, (long)args...);
}

// The clone system call and what the new task does after it, shared by RawClone and RawClone3: the
// parent jumps to 1 with the id (or -errno) in rax; the new task, on a stack whose top holds fn then
// arg, pops them, calls fn(arg) and exits with its result. Needs [exit_nr] "i"(SYS_exit).
#define WARDEN_CLONE_ASM \
  "syscall\n\t"                  \
  "test %%rax, %%rax\n\t"        \
  "jnz 1f\n\t"                   \
  "xor %%ebp, %%ebp\n\t"         \
  "pop %%rax\n\t"                \
  "pop %%rdi\n\t"                \
  "call *%%rax\n\t"              \
  "mov %%eax, %%edi\n\t"         \
  "mov %[exit_nr], %%eax\n\t"    \
  "syscall\n\t"                  \
  "hlt\n\t"                      \
  "1:\n\t"

// clone(2) without libc: the new task runs fn(arg) on `stack_top` (16-byte aligned) and ends with
// SYS_exit when fn returns. With CLONE_PIDFD its pidfd goes to *ptid; with CLONE_CHILD_CLEARTID,
// *ctid. Returns the new task's id or -errno. For code that runs on a TLS another thread is using
// (glibc's clone would set errno on failure).
inline long RawClone(unsigned long flags, void* stack_top, int* ptid, int* ctid, int (*fn)(void*), void* arg) {
  void** sp = static_cast<void**>(stack_top);
  *--sp = arg;
  *--sp = reinterpret_cast<void*>(fn);
  long ret;
  register long r10 asm("r10") = reinterpret_cast<long>(ctid);
  register long r8 asm("r8") = 0;
  asm volatile(
      WARDEN_CLONE_ASM
      : "=a"(ret)
      : "a"(SYS_clone), "D"(flags), "S"(sp), "d"(ptid), "r"(r10), "r"(r8), [exit_nr] "i"(SYS_exit)
      : "rcx", "r11", "memory");
  return ret;
}

// clone3(2) without libc, creating the new task in the cgroup2 directory `cgroup_fd`
// (CLONE_INTO_CGROUP): it is in that cgroup from its first instruction, with no cgroup.procs write,
// which takes the global cgroup threadgroup lock for writing and, after an idle spell, waits for an
// RCU grace period (several ms). Otherwise as RawClone: fn(arg) runs on the stack
// [stack_low, stack_top), then SYS_exit; with CLONE_PIDFD the pidfd goes to *pidfd; no exit signal.
struct CloneArgs {
  unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
      set_tid_size, cgroup;
};

inline long RawClone3(unsigned long flags, int cgroup_fd, int* pidfd, void* stack_low, void* stack_top,
                      int (*fn)(void*), void* arg) {
  void** sp = static_cast<void**>(stack_top);
  *--sp = arg;
  *--sp = reinterpret_cast<void*>(fn);
  CloneArgs args;
  __builtin_memset(&args, 0, sizeof args);
  args.flags = flags | 0x200000000ULL;  // CLONE_INTO_CGROUP (5.7)
  args.pidfd = reinterpret_cast<unsigned long long>(pidfd);
  // The kernel starts the task at stack + stack_size: where fn and arg wait to be popped.
  args.stack = reinterpret_cast<unsigned long long>(stack_low);
  args.stack_size = reinterpret_cast<unsigned long long>(sp) - args.stack;
  args.cgroup = static_cast<unsigned long long>(cgroup_fd);
  long ret;
  asm volatile(
      WARDEN_CLONE_ASM
      : "=a"(ret)
      : "a"(SYS_clone3), "D"(&args), "S"(sizeof args), [exit_nr] "i"(SYS_exit)
      : "rcx", "r11", "memory");
  return ret;
}

}  // namespace warden

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

}  // namespace warden

// Keeps the shipped binary loadable on glibc 2.28 (the oldest glibc an official Node build runs on:
// RHEL 8, Ubuntu 20.04, Debian 11) when it is built on a newer one.
//
// A program built against glibc binds each libc call to the newest version of that symbol the build
// machine has, and the loader refuses the binary where that version is missing. The static
// libstdc++ and libgcc (no GLIBCXX requirement: see binding.gyp) were themselves compiled against the
// build machine's glibc and bring their own such references. binding.gyp links with
// --wrap=SYMBOL for each of them, which sends every reference to SYMBOL, ours and the archives',
// to __wrap_SYMBOL below, and each of those calls the version glibc 2.28 already had (pinned with
// .symver) or stands in for a symbol 2.28 lacks. tools/check-glibc.sh fails the build when a new
// call brings in a newer version: add it here (and to binding.gyp's --wrap list) then.
//
// Only x86_64 glibc builds get this (the versions below are that ABI's); binding.gyp leaves the
// file and the --wrap flags out elsewhere, and such a source build runs on the machine that built it.
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

extern "C" {

// The versions 2.28 exports. _STAT_VER is 1 on x86_64, where struct stat and stat64 are one layout.
int warden_xstat64(int ver, const char* path, struct stat* st);
int warden_fxstat64(int ver, int fd, struct stat* st);
int warden_lxstat64(int ver, const char* path, struct stat* st);
int warden_fxstatat64(int ver, int dirfd, const char* path, struct stat* st, int flags);
int warden_pthread_sigmask(int how, const sigset_t* set, sigset_t* old);
int warden_pthread_once(pthread_once_t* once, void (*init)(void));
int warden_pthread_key_create(pthread_key_t* key, void (*destructor)(void*));
__asm__(".symver warden_xstat64,__xstat64@GLIBC_2.2.5");
__asm__(".symver warden_fxstat64,__fxstat64@GLIBC_2.2.5");
__asm__(".symver warden_lxstat64,__lxstat64@GLIBC_2.2.5");
__asm__(".symver warden_fxstatat64,__fxstatat64@GLIBC_2.4");
__asm__(".symver warden_pthread_sigmask,pthread_sigmask@GLIBC_2.2.5");
__asm__(".symver warden_pthread_once,pthread_once@GLIBC_2.2.5");
__asm__(".symver warden_pthread_key_create,__pthread_key_create@GLIBC_2.2.5");
constexpr int kStatVer = 1;

// glibc 2.33 made stat and friends real functions (before, inline wrappers of __xstat64 and friends).
int __wrap_stat64(const char* path, struct stat* st) { return warden_xstat64(kStatVer, path, st); }
int __wrap_stat(const char* path, struct stat* st) { return warden_xstat64(kStatVer, path, st); }
int __wrap_fstat64(int fd, struct stat* st) { return warden_fxstat64(kStatVer, fd, st); }
int __wrap_fstat(int fd, struct stat* st) { return warden_fxstat64(kStatVer, fd, st); }
int __wrap_lstat64(const char* path, struct stat* st) { return warden_lxstat64(kStatVer, path, st); }
int __wrap_lstat(const char* path, struct stat* st) { return warden_lxstat64(kStatVer, path, st); }
int __wrap_fstatat64(int dirfd, const char* path, struct stat* st, int flags) {
  return warden_fxstatat64(kStatVer, dirfd, path, st, flags);
}
int __wrap_fstatat(int dirfd, const char* path, struct stat* st, int flags) {
  return warden_fxstatat64(kStatVer, dirfd, path, st, flags);
}

// 2.32 and 2.34 moved these from libpthread into libc under a new version; the old one is the same
// function. libgcc's unwinder references the last two weakly (to see whether threads exist).
int __wrap_pthread_sigmask(int how, const sigset_t* set, sigset_t* old) { return warden_pthread_sigmask(how, set, old); }
int __wrap_pthread_once(pthread_once_t* once, void (*init)(void)) { return warden_pthread_once(once, init); }
int __wrap___pthread_key_create(pthread_key_t* key, void (*destructor)(void*)) {
  return warden_pthread_key_create(key, destructor);
}

// libstdc++ (2.32+) reads this to skip atomic reference counts in a single-threaded process. 0 means
// "threads may exist": always the atomic path, correct in every process (Node always has threads).
char __wrap___libc_single_threaded = 0;

// libgcc's unwinder (2.35+) asks _dl_find_object for the unwind tables of a code address. Answering
// "not found" makes a C++ exception end in std::terminate, which is what any exception in this
// addon does anyway: it is built with -fno-exceptions and catches nothing.
struct dl_find_object;
int __wrap__dl_find_object(void* pc, struct dl_find_object* result) { return -1; }

// std::random_device (2.36+: arc4random), should the linker keep it: the kernel's generator.
uint32_t __wrap_arc4random(void) {
  uint32_t value;
  for (;;) {
    long n = syscall(SYS_getrandom, &value, sizeof value, 0);
    if (n == static_cast<long>(sizeof value)) return value;
    if (n < 0 && errno != EINTR) abort();
  }
}

}  // extern "C"

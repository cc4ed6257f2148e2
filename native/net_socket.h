// Socket helpers of the network intercept (net_intercept.cc, net_fast.cc): reading a caller's
// socket and giving a host socket the options the caller set before connect. Safe to call from
// the listener thread and the event loop at once once InitSocketDefaults() ran.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <cstdint>

namespace warden {

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { if (fd_ >= 0) close(fd_); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { int f = fd_; fd_ = -1; return f; }
 private:
  int fd_;
};

int GetInt(int fd, int level, int opt, int* out);
// SO_COOKIE, 0 when unreadable.
uint64_t Cookie(int fd);
// FD_CLOEXEC of the caller's fd `fd` (per fd, not per file: read from /proc/<tid>/fdinfo).
bool TargetCloexec(pid_t tid, int fd);
// Reads a fresh socket's option values once per family; before any thread copies options.
void InitSocketDefaults();
// Copies to `to` each option of `from` that differs from a fresh socket's.
void CopyOptions(int from, int to, int domain);

}  // namespace warden

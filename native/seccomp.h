// Seccomp policy → classic BPF program. The policy is data (lib/policy); this file only compiles it.
// The launcher installs the program last, after PR_SET_NO_NEW_PRIVS (see child.cc).
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <string>
#include <vector>

namespace warden {

// What a matching rule (or the default) does.
enum class SeccompAction : uint8_t {
  kAllow,
  kErrno,      // the syscall fails with `errno_value`; the program goes on
  kViolation,  // SECCOMP_RET_USER_NOTIF: the host kills the sandbox and reports the syscall by name
  kKill,       // SECCOMP_RET_KILL_PROCESS: no report beyond SIGSYS (arch mismatch, x32)
};

// One comparison on a syscall argument. All checks of a rule must hold for the rule to match.
struct SeccompArgCheck {
  enum class Op : uint8_t {
    kEq,          // arg == value
    kNe,          // arg != value
    kMaskedEq,    // (arg & mask) == value
    kAnyBitsSet,  // (arg & mask) != 0
  };
  uint8_t index = 0;  // 0..5
  Op op = Op::kEq;
  uint64_t value = 0;
  uint64_t mask = ~0ull;
  bool low32 = false;  // compare only the low 32 bits (ioctl request, socket family, ...)
};

struct SeccompRule {
  std::string syscall;  // name, for errors
  std::string field;    // where the rule came from ("seccomp.rules[3]"), for errors; may be empty
  int syscall_index = -1;  // position of `syscall` in that rule's list, for errors; -1 when none
  int nr = -1;          // x86_64 number
  SeccompAction action = SeccompAction::kViolation;
  uint16_t errno_value = 0;
  std::vector<SeccompArgCheck> args;
};

struct SeccompPolicy {
  SeccompAction default_action = SeccompAction::kViolation;
  uint16_t default_errno = 0;
  std::vector<SeccompRule> rules;  // first match wins, in order
};

struct SeccompProgram {
  std::vector<sock_filter> code;
  bool needs_listener = false;  // some path returns SECCOMP_RET_USER_NOTIF
};

// Compiles `policy`. Returns "" on success, otherwise a message naming the offending field.
//
// The program checks, in this order: arch == AUDIT_ARCH_X86_64 (else KILL_PROCESS), the x32 bit
// (0x40000000) in the syscall number (KILL_PROCESS), then the rules of the syscall (first match
// wins), then the default action.
//
// Refused: a policy under which `execve` or `sendmsg` could be anything but allowed. The launcher
// installs the filter, then calls sendmsg (to hand the USER_NOTIF listener to the host) and execve;
// a policy that denies either would make every spawn fail. Also refused: errno outside 1..4095, an
// argument index above 5, a check that can never match (value bits outside the mask, empty mask,
// low32 with a value above 32 bits), a program longer than BPF_MAXINSNS.
//
// With `stacked`, the program is for a process to add on top of the filter it already runs under
// (RestrictSelf below): there is no launcher after it, so execve and sendmsg may be denied, but
// 'violation' is refused: the kernel lets only one filter in a process's stack have a listener,
// and the launcher's filter has it. A stacked filter reports with 'kill' or an errno.
std::string CompileSeccomp(const SeccompPolicy& policy, SeccompProgram* out, bool stacked = false);

// Installs `code` on top of the calling process's filters, on every thread (SECCOMP_FILTER_FLAG_TSYNC),
// setting PR_SET_NO_NEW_PRIVS first if it is not set yet. Filters only ever add restrictions: the
// kernel runs all of them and the strictest answer wins. Returns 0, or a negative errno; a positive
// value is the id of a thread that could not be synchronized (it runs under other filters).
long RestrictSelf(const sock_filter* code, size_t count);

// x86_64 syscall table. -1 / nullptr when unknown.
int SyscallNumber(const char* name);
const char* SyscallName(int nr);

// Errno table (Linux names, "EPERM" ↔ 1). -1 / nullptr when unknown.
int ErrnoNumber(const char* name);
const char* ErrnoName(int value);

// A KILL_PROCESS from the arch or x32 checks leaves only SIGSYS to the parent: the syscall number is
// not reported. This is the reason the launcher should print when a sandbox dies of SIGSYS.
extern const char kSeccompKillReason[];

}  // namespace warden

// Seccomp policy → classic BPF. See seccomp.h for the program's shape and what is refused.
//
// The program is built backwards, from its last instruction to its first (as Chromium's
// sandbox/linux/bpf_dsl/codegen does). Classic BPF only jumps forward, so when an instruction is
// emitted every target it can jump to is already placed and its distance is known exactly. A
// conditional jump has 8-bit offsets; when a target is further than 255 instructions away, a
// `BPF_JA` (32-bit offset) trampoline is emitted just before and the conditional jumps to it. No
// offset is ever patched afterwards, so no layout can overflow.
#include "seccomp.h"

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <map>

#include "syscall_table.h"

namespace warden {

const char kSeccompKillReason[] =
    "killed by seccomp (SIGSYS): a syscall through a foreign ABI (i386 int 0x80 or x32), "
    "or a rule whose action is 'kill'";

namespace {

constexpr uint32_t kX32SyscallBit = 0x40000000u;  // __X32_SYSCALL_BIT
constexpr int kMaxErrno = 4095;                   // SECCOMP_RET_DATA allows more; the kernel's MAX_ERRNO

constexpr uint32_t kOffsetNr = offsetof(struct seccomp_data, nr);
constexpr uint32_t kOffsetArch = offsetof(struct seccomp_data, arch);
// x86_64 is little-endian: the low word of args[i] comes first.
uint32_t ArgLo(int i) { return offsetof(struct seccomp_data, args) + 8 * i; }
uint32_t ArgHi(int i) { return ArgLo(i) + 4; }

// A position in the program, counted from its END (0 = last instruction), so that labels stay
// valid while instructions are prepended.
using Label = size_t;

class Builder {
 public:
  // Returns the label of a `ret value` instruction, shared by every path that returns the same value.
  Label Ret(uint32_t value) {
    auto it = rets_.find(value);
    if (it != rets_.end()) return it->second;
    Label l = Emit(BPF_STMT(BPF_RET | BPF_K, value));
    rets_[value] = l;
    return l;
  }

  // `A = [offset]`, then continue at `next`.
  Label Load(uint32_t offset, Label next) {
    FallTo(next);
    return Emit(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offset));
  }

  // `A &= k`, then continue at `next`.
  Label And(uint32_t k, Label next) {
    FallTo(next);
    return Emit(BPF_STMT(BPF_ALU | BPF_AND | BPF_K, k));
  }

  // `if (A <op> k) goto jt else goto jf`, op among BPF_JEQ, BPF_JGE, BPF_JSET.
  Label Jump(uint16_t op, uint32_t k, Label jt, Label jf) {
    if (jt == jf) return jt;
    // Trampolines for targets out of 8-bit reach. After the first one is emitted the other target
    // is one instruction further, hence the re-check.
    if (Distance(jt) > 255) jt = Emit(BPF_JUMP(BPF_JMP | BPF_JA, Distance(jt), 0, 0));
    if (Distance(jf) > 255) jf = Emit(BPF_JUMP(BPF_JMP | BPF_JA, Distance(jf), 0, 0));
    if (Distance(jt) > 255) jt = Emit(BPF_JUMP(BPF_JMP | BPF_JA, Distance(jt), 0, 0));
    return Emit(BPF_JUMP(BPF_JMP | op | BPF_K, k, static_cast<uint8_t>(Distance(jt)),
                         static_cast<uint8_t>(Distance(jf))));
  }

  size_t size() const { return rev_.size(); }

  std::vector<sock_filter> Finish(Label entry) {
    FallTo(entry);
    return std::vector<sock_filter>(rev_.rbegin(), rev_.rend());
  }

 private:
  // Instructions between the next emitted one and `target`.
  uint32_t Distance(Label target) const { return static_cast<uint32_t>(rev_.size() - target - 1); }

  // A non-jump instruction continues with the one after it; make that `next`.
  void FallTo(Label next) {
    if (rev_.empty() || next != rev_.size() - 1) Emit(BPF_JUMP(BPF_JMP | BPF_JA, Distance(next), 0, 0));
  }

  Label Emit(sock_filter insn) {
    rev_.push_back(insn);
    return rev_.size() - 1;
  }

  std::vector<sock_filter> rev_;  // reversed program
  std::map<uint32_t, Label> rets_;
};

uint32_t ActionValue(SeccompAction action, uint16_t errno_value) {
  switch (action) {
    case SeccompAction::kAllow: return SECCOMP_RET_ALLOW;
    case SeccompAction::kErrno: return SECCOMP_RET_ERRNO | (errno_value & SECCOMP_RET_DATA);
    case SeccompAction::kViolation: return SECCOMP_RET_USER_NOTIF;
    case SeccompAction::kKill: return SECCOMP_RET_KILL_PROCESS;
  }
  return SECCOMP_RET_KILL_PROCESS;  // unreachable: fail closed
}

std::string RuleField(const SeccompRule& rule, size_t i) {
  return rule.field.empty() ? "rules[" + std::to_string(i) + "]" : rule.field;
}

// For errors about the syscall itself: the rule's path, plus the position in its syscall list.
std::string SyscallField(const SeccompRule& rule, size_t i) {
  std::string f = RuleField(rule, i);
  return rule.syscall_index < 0 ? f : f + ".syscalls[" + std::to_string(rule.syscall_index) + "]";
}

std::string CheckAction(SeccompAction action, uint16_t errno_value, const std::string& field) {
  switch (action) {
    case SeccompAction::kAllow:
    case SeccompAction::kViolation:
    case SeccompAction::kKill:
      return "";
    case SeccompAction::kErrno:
      if (errno_value < 1 || errno_value > kMaxErrno)
        return field + ": errno must be between 1 and 4095, got " + std::to_string(errno_value);
      return "";
  }
  return field + ": unknown action";
}

std::string CheckArg(const SeccompArgCheck& a, const std::string& field) {
  if (a.index > 5) return field + ".index: must be 0..5 (syscalls have six arguments), got " + std::to_string(a.index);
  const uint64_t width = a.low32 ? 0xffffffffull : ~0ull;
  switch (a.op) {
    case SeccompArgCheck::Op::kEq:
    case SeccompArgCheck::Op::kNe:
      if (a.value & ~width) return field + ".value: above 32 bits with low32 set; the check could never hold";
      return "";
    case SeccompArgCheck::Op::kMaskedEq:
      if ((a.mask & width) == 0) return field + ".mask: empty mask (with low32, only its low 32 bits count)";
      if (a.value & ~(a.mask & width)) return field + ".value: has bits outside the mask; the check could never hold";
      return "";
    case SeccompArgCheck::Op::kAnyBitsSet:
      if ((a.mask & width) == 0) return field + ".mask: empty mask; the check could never hold";
      return "";
  }
  return field + ".op: unknown operator";
}

// The launcher's sendmsg passes exactly MSG_NOSIGNAL as flags (argument 2). A rule that demands a
// flag bit outside it (anyBitsSet on argument 2, e.g. MSG_FASTOPEN) can never match that call.
constexpr uint64_t kLauncherSendmsgFlags = 0x4000;  // MSG_NOSIGNAL
bool CannotMatchLauncher(const SeccompRule& r, int nr) {
  if (nr != 46 /* sendmsg */) return false;
  for (const SeccompArgCheck& a : r.args)
    if (a.index == 2 && a.op == SeccompArgCheck::Op::kAnyBitsSet && (a.mask & kLauncherSendmsgFlags) == 0) return true;
  return false;
}

// The launcher calls sendmsg and execve after installing the filter: both must be allowed whatever
// their arguments. Walks the rules as the program would: rules with argument checks may or may not
// match, so each must allow; the first unconditional rule decides; otherwise the default does.
std::string CheckLauncherSyscall(const SeccompPolicy& policy, int nr, const char* name) {
  for (size_t i = 0; i < policy.rules.size(); i++) {
    const SeccompRule& r = policy.rules[i];
    if (r.nr != nr) continue;
    if (r.action != SeccompAction::kAllow && CannotMatchLauncher(r, nr)) continue;
    if (r.action != SeccompAction::kAllow)
      return SyscallField(r, i) + ": " + name +
             " must stay allowed: the launcher calls sendmsg and execve after installing the filter";
    if (r.args.empty()) return "";
  }
  if (policy.default_action != SeccompAction::kAllow)
    return std::string("rules: ") + name + " must be allowed explicitly (the default action denies it): " +
           "the launcher calls sendmsg and execve after installing the filter";
  return "";
}

// Emits the checks of one argument: continue at `pass` if it holds, at `fail` if not. A is clobbered.
Label EmitArgCheck(Builder& b, const SeccompArgCheck& a, Label pass, Label fail) {
  const uint32_t lo = static_cast<uint32_t>(a.value), hi = static_cast<uint32_t>(a.value >> 32);
  const uint32_t mlo = static_cast<uint32_t>(a.mask), mhi = a.low32 ? 0 : static_cast<uint32_t>(a.mask >> 32);
  switch (a.op) {
    case SeccompArgCheck::Op::kEq:
    case SeccompArgCheck::Op::kNe: {
      const bool eq = a.op == SeccompArgCheck::Op::kEq;
      const Label match = eq ? pass : fail, differ = eq ? fail : pass;
      Label l = b.Load(ArgLo(a.index), b.Jump(BPF_JEQ, lo, match, differ));
      if (a.low32) return l;
      return b.Load(ArgHi(a.index), b.Jump(BPF_JEQ, hi, l, differ));
    }
    case SeccompArgCheck::Op::kMaskedEq: {
      Label l = pass;
      if (mlo != 0) l = b.Load(ArgLo(a.index), b.And(mlo, b.Jump(BPF_JEQ, lo & mlo, l, fail)));
      if (mhi != 0) l = b.Load(ArgHi(a.index), b.And(mhi, b.Jump(BPF_JEQ, hi & mhi, l, fail)));
      return l;
    }
    case SeccompArgCheck::Op::kAnyBitsSet: {
      Label l = fail;
      if (mlo != 0) l = b.Load(ArgLo(a.index), b.Jump(BPF_JSET, mlo, pass, l));
      if (mhi != 0) l = b.Load(ArgHi(a.index), b.Jump(BPF_JSET, mhi, pass, l));
      return l;
    }
  }
  return fail;  // unreachable: validated
}

// Binary search over intervals of syscall numbers; A holds the number. `starts[i]` begins interval
// i, which ends where the next begins (the last one: at 2^32), and every number in it goes to
// `labels[i]`. Policies list neighbouring syscalls together (the mount family, the module calls,
// the admin calls), so intervals are far fewer than syscalls: one comparison per interval boundary
// instead of one per syscall plus the search, which makes the program shorter, and so cheaper for
// the kernel to check, translate and JIT at every spawn.
Label EmitRanges(Builder& b, const std::vector<uint32_t>& starts, const std::vector<Label>& labels, size_t lo,
                 size_t hi) {
  if (hi - lo == 1) return labels[lo];
  const size_t mid = lo + (hi - lo) / 2;
  Label upper = EmitRanges(b, starts, labels, mid, hi);
  Label lower = EmitRanges(b, starts, labels, lo, mid);
  return b.Jump(BPF_JGE, starts[mid], upper, lower);
}

}  // namespace

std::string CompileSeccomp(const SeccompPolicy& policy, SeccompProgram* out, bool stacked) {
  if (std::string e = CheckAction(policy.default_action, policy.default_errno, "defaultAction"); !e.empty()) return e;
  constexpr char kNoListener[] =
      ": 'violation' is not available in a filter a process adds to itself (only the launcher's filter "
      "has the listener that reports it); use 'kill' or an errno";
  if (stacked && policy.default_action == SeccompAction::kViolation) return std::string("defaultAction") + kNoListener;
  for (size_t i = 0; i < policy.rules.size(); i++) {
    const SeccompRule& r = policy.rules[i];
    const std::string field = RuleField(r, i);
    if (r.nr < 0 || static_cast<uint32_t>(r.nr) >= kX32SyscallBit || SyscallName(r.nr) == nullptr)
      return SyscallField(r, i) + ": unknown x86_64 syscall '" + r.syscall + "' (number " + std::to_string(r.nr) + ")";
    if (std::string e = CheckAction(r.action, r.errno_value, field + ".action"); !e.empty()) return e;
    if (stacked && r.action == SeccompAction::kViolation) return field + ".action" + kNoListener;
    for (size_t j = 0; j < r.args.size(); j++)
      if (std::string e = CheckArg(r.args[j], field + ".args[" + std::to_string(j) + "]"); !e.empty()) return e;
  }
  if (!stacked) {
    if (std::string e = CheckLauncherSyscall(policy, SyscallNumber("sendmsg"), "sendmsg"); !e.empty()) return e;
    if (std::string e = CheckLauncherSyscall(policy, SyscallNumber("execve"), "execve"); !e.empty()) return e;
  }

  // Rules of different syscalls never interact, so grouping by number (keeping the order within a
  // syscall) preserves "first match wins".
  std::map<int, std::vector<const SeccompRule*>> by_nr;
  for (const SeccompRule& r : policy.rules) by_nr[r.nr].push_back(&r);

  Builder b;
  const uint32_t dflt_value = ActionValue(policy.default_action, policy.default_errno);
  const Label kill = b.Ret(SECCOMP_RET_KILL_PROCESS);
  const Label dflt = b.Ret(dflt_value);

  std::vector<std::pair<int, Label>> entries;
  for (const auto& [nr, rules] : by_nr) {
    Label next = dflt;  // no rule of this syscall matched
    for (auto it = rules.rbegin(); it != rules.rend(); ++it) {
      const SeccompRule& r = **it;
      Label pass = b.Ret(ActionValue(r.action, r.errno_value));
      for (auto a = r.args.rbegin(); a != r.args.rend(); ++a) pass = EmitArgCheck(b, *a, pass, next);
      next = pass;
    }
    if (next != dflt) entries.emplace_back(nr, next);
  }

  // The x32 ABI shares AUDIT_ARCH_X86_64 with x86_64 and differs only by bit 30 of the number:
  // without this check, `0x40000000 | __NR_mount` would skip the rule for mount. KILL rather than
  // violation: these numbers have no name to report, and nothing we run is an x32 program.
  // Intervals over all numbers below the x32 bit: runs of consecutive syscalls that go to the same
  // place merge, and so do the gaps between them, which go to the default.
  std::vector<uint32_t> starts;
  std::vector<Label> labels;
  auto extend = [&](uint32_t start, Label label) {
    if (labels.empty() || labels.back() != label) {
      starts.push_back(start);
      labels.push_back(label);
    }
  };
  uint32_t next_nr = 0;
  for (const auto& [nr, label] : entries) {
    if (static_cast<uint32_t>(nr) > next_nr) extend(next_nr, dflt);
    extend(static_cast<uint32_t>(nr), label);
    next_nr = static_cast<uint32_t>(nr) + 1;
  }
  extend(next_nr, dflt);
  Label rules = EmitRanges(b, starts, labels, 0, starts.size());
  Label x32 = b.Jump(BPF_JSET, kX32SyscallBit, kill, rules);
  Label nr = b.Load(kOffsetNr, x32);
  // Syscall numbers mean different things on other ABIs (i386 via int 0x80): check the arch first.
  Label arch = b.Jump(BPF_JEQ, AUDIT_ARCH_X86_64, nr, kill);
  Label entry = b.Load(kOffsetArch, arch);

  std::vector<sock_filter> code = b.Finish(entry);
  if (code.size() > BPF_MAXINSNS)
    return "rules: the policy compiles to " + std::to_string(code.size()) + " instructions, more than the kernel's " +
           std::to_string(BPF_MAXINSNS) + "; merge rules or use fewer argument checks";
  out->needs_listener = false;
  for (const sock_filter& insn : code)
    if (insn.code == (BPF_RET | BPF_K) && insn.k == SECCOMP_RET_USER_NOTIF) out->needs_listener = true;
  out->code = std::move(code);
  return "";
}

long RestrictSelf(const sock_filter* code, size_t count) {
  if (count == 0 || count > BPF_MAXINSNS) return -EINVAL;
  // Without no_new_privs an unprivileged process may not add a filter; the launcher sets it, but a
  // process started some other way gets it here rather than a confusing EACCES.
  if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -errno;
  struct sock_fprog prog = {static_cast<unsigned short>(count), const_cast<sock_filter*>(code)};
  // TSYNC: libuv's and V8's threads already run; a filter on this thread alone would leave them free.
  long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
  return r < 0 ? -errno : r;
}

int SyscallNumber(const char* name) {
  if (name == nullptr) return -1;
  for (const auto& e : kWardenSyscalls)
    if (std::strcmp(e.name, name) == 0) return e.nr;
  return -1;
}

const char* SyscallName(int nr) {
  const auto* end = std::end(kWardenSyscalls);
  const auto* it = std::lower_bound(std::begin(kWardenSyscalls), end, nr,
                                    [](const warden_syscall_entry& e, int n) { return e.nr < n; });
  return it != end && it->nr == nr ? it->name : nullptr;
}

int ErrnoNumber(const char* name) {
  if (name == nullptr) return -1;
  for (const auto& e : kWardenErrnos)
    if (std::strcmp(e.name, name) == 0) return e.value;
  return -1;
}

const char* ErrnoName(int value) {
  for (const auto& e : kWardenErrnos)
    if (e.value == value) return e.name;
  return nullptr;
}

}  // namespace warden

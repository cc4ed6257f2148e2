#include "launch_modes.h"

#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "launch_clone.h"
#include "mounts.h"
#include "raw_syscall.h"
#include "signal_hold.h"
#include "spawn_trace.h"

namespace warden {

namespace {

// The trampoline of namespace mode: cloned vfork-style (CLONE_VM | CLONE_VFORK | CLONE_FILES) with
// its own fs_struct, it enters the template namespace and clones the child from there, so that the
// child's mount namespace is a copy of the template's; then it releases the child. CLONE_PARENT
// makes the child ours (we reap it, its parent-death signal follows this thread) and gives it our
// exit signal, 0; CLONE_FILES puts the pidfd and the proc mount in our table. It runs on our TLS:
// raw syscalls only.
//
// It starts on this thread's CPU, which this thread leaves to it (vfork), rather than on another,
// possibly idle one, which on a virtual machine can take tens of microseconds to wake; it gives
// the child our usual affinity back, so the child starts wherever the scheduler finds room.
struct Trampoline {
  Release* release;
  void* child_stack_low;
  void* child_stack_top;
  const cpu_set_t* affinity = nullptr;  // the launching thread's usual one, for the child
  int pid = -1;
  int pidfd = -1;
  Stage stage = Stage::kNone;  // of a failure before the child exists
  int error = 0;
  SavedIds ids;  // the host thread's, switched to the owner's for the clone (a copy of its state)
};
int TrampolineMain(void* arg) {
  Trampoline& t = *static_cast<Trampoline*>(arg);
  LaunchPlan* plan = t.release->plan;
  if (t.affinity != nullptr) Sys(SYS_sched_setaffinity, 0, sizeof(cpu_set_t), t.affinity);
  SavedIds ids = t.ids;  // ours to restore: t.ids is the host thread's, in the memory we share
  long r = Sys(SYS_setns, plan->root_namespace, CLONE_NEWNS);
  if (r < 0) {
    RestoreIds(&ids);
    t.stage = Stage::kMountRoot;
    t.error = static_cast<int>(-r);
    return 0;
  }
  r = CloneChild(*t.release, CLONE_PARENT, t.child_stack_low, t.child_stack_top, &t.pidfd);
  RestoreIds(&ids);
  if (r < 0) {
    t.stage = Stage::kClone;
    t.error = static_cast<int>(-r);
    return 0;
  }
  __atomic_store_n(&t.pid, static_cast<int>(r), __ATOMIC_RELEASE);
  SPAWN_TRACE(3, "p-cloned");
  RunRelease(*t.release, static_cast<pid_t>(r), t.pidfd);
  return 0;
}

}  // namespace

LaunchMode LaunchModeOf(const LaunchPlan& plan) {
  if (!plan.mount_ns) return LaunchMode::kNoMounts;
  if (plan.root_namespace >= 0) return LaunchMode::kNamespace;
  if (plan.root_template >= 0) return LaunchMode::kTemplate;
  return LaunchMode::kPerSpawn;
}

bool PrepareParentMounts(LaunchMode mode, LaunchPlan* plan, Release* release, LaunchError* error) {
  const bool prepared = mode == LaunchMode::kTemplate || mode == LaunchMode::kNamespace;
  if (prepared) {
    for (const MountOp& op : plan->mounts) {
      if (op.kind != MountOpKind::kBind && op.kind != MountOpKind::kProc && op.kind != MountOpKind::kTmpfs) continue;
      if (op.kind == MountOpKind::kProc) {
        release->proc_slot = release->nmounts;
        release->proc_index = op.logical_index;
      }
      release->mounts[release->nmounts++] = -1;
    }
  }
  plan->parent_mounts = release->nmounts;

  // Per-spawn mode on a root host: the bind sources are cloned here, as the sandbox's host identity,
  // and inherited by the child (see LaunchPlan::source_trees); the caller closes our copies.
  if (mode == LaunchMode::kPerSpawn && geteuid() == 0) {
    for (int& fd : plan->source_trees) fd = -1;
    plan->parent_sources = true;
    ChildFailure f{};
    if (!ParentCloneSources(*plan, plan->source_trees, &f)) {
      error->index = f.index;
      return ParentFail(error, static_cast<Stage>(f.stage), f.error);
    }
  }

  // Namespace mode: the binds and tmpfs first, for the trampoline to hand over (it cannot reach
  // host paths from inside the template namespace).
  if (mode == LaunchMode::kNamespace) {
    if (!ParentMakeHostMounts(*plan, release->mounts, &release->host_failure)) {
      const ChildFailure& f = release->host_failure;
      error->index = f.index;
      return ParentFail(error, static_cast<Stage>(f.stage), f.error);
    }
    release->host_mounts = 1;
    SPAWN_TRACE(0, "p-host-mounts");
  }

  return true;
}

bool StartChild(LaunchMode mode, LaunchPlan* plan, Release* release_ptr, void* stack_top, StartedChild* out,
                LaunchError* error) {
  Release& release = *release_ptr;
  const bool via_namespace = mode == LaunchMode::kNamespace;
  const bool prepared = mode == LaunchMode::kTemplate || mode == LaunchMode::kNamespace;
  // Signals stay blocked in the child until it has reset every handler: a Node handler running on
  // the child's stack, in the parent's memory, would be a disaster. And on this thread while its
  // ids are switched, glibc's set*id signal included (signal_hold.h).
  HoldSignals hold;
  int pidfd = -1;
  pid_t pid = -1;
  int clone_errno = 0;
  pid_t trampoline = -1;
  void* stack_low = ChildStack::ForThisThread().trampoline_top();  // the trampoline's stack is below
  Trampoline t{&release, stack_low, stack_top, nullptr, -1, -1, Stage::kNone, 0, SavedIds{}};
  long owner = SwitchToOwner(*plan, &t.ids);
  if (owner < 0) {
    RestoreIds(&t.ids);
    hold.End();
    return ParentFail(error, Stage::kNamespaceOwner, static_cast<int>(-owner), "switching to the sandbox's host ids for the clone");
  }
  if (via_namespace) {
    cpu_set_t usual, here;
    bool pinned = false;
    const int cpu = sched_getcpu();
    if (cpu >= 0 && sched_getaffinity(0, sizeof usual, &usual) == 0) {
      CPU_ZERO(&here);
      CPU_SET(cpu, &here);
      pinned = sched_setaffinity(0, sizeof here, &here) == 0;
    }
    t.affinity = pinned ? &usual : nullptr;
    trampoline = clone(TrampolineMain, ChildStack::ForThisThread().trampoline_top(),
                       CLONE_VM | CLONE_VFORK | CLONE_FILES, &t);
    clone_errno = errno;
    if (pinned) sched_setaffinity(0, sizeof usual, &usual);
  } else {
    // Exit signal 0: no SIGCHLD, so no waitpid(-1) anywhere in the host can reap our child; we reap
    // through the pidfd (with __WALL).
    long r = CloneChild(release, 0, stack_low, stack_top, &pidfd);
    pid = r < 0 ? -1 : static_cast<pid_t>(r);
    clone_errno = r < 0 ? static_cast<int>(-r) : 0;
    SPAWN_TRACE(3, "p-cloned");
  }
  RestoreIds(&t.ids);
  hold.End();
  if (via_namespace && trampoline < 0) return ParentFail(error, Stage::kClone, clone_errno);
  if (!via_namespace && pid < 0) return ParentFail(error, Stage::kClone, clone_errno);

  // Template mode: the binds and tmpfs, while the child pivots.
  if (prepared && trampoline < 0) {
    bool made = ParentMakeHostMounts(*plan, release.mounts, &release.host_failure);
    release.host_mounts = made ? 1 : -1;
  } else if (!prepared) {
    release.host_mounts = 1;
  }

  bool released;
  if (trampoline >= 0) {
    siginfo_t info;
    while (waitid(P_PID, trampoline, &info, WEXITED | __WALL) < 0 && errno == EINTR) {
    }
    if (t.stage != Stage::kNone) {
      return ParentFail(error, t.stage, t.error,
                        t.stage == Stage::kMountRoot ? "entering the template namespace" : "");
    }
    pid = t.pid;
    pidfd = t.pidfd;
    released = release.failure.stage == static_cast<uint32_t>(Stage::kNone);
  } else {
    released = RunRelease(release, pid, pidfd);
  }
  out->pid = pid;
  out->pidfd = pidfd;
  out->released = released;
  return true;
}

// The mount set's state as of now, on the launch thread (the only thread that changes it).
static void TakeMountSetState(LaunchPlan* plan) {
  if (plan->mount_set == nullptr) return;
  plan->mounts = plan->mount_set->ops();
  plan->root_namespace = plan->mount_set->namespace_fd();
  plan->root_template = plan->root_namespace >= 0 ? -1 : plan->mount_set->template_fd();
  if (plan->mount_ns && !plan->prepared()) plan->root_options = FreshRootOptions(plan->uid, plan->gid);
}

bool LaunchWithFallback(LaunchPlan* plan, LaunchResult* out, LaunchError* error) {
  TakeMountSetState(plan);
  bool launched = Launch(plan, out, error);
  if (!launched && error->stage == Stage::kMountRoot && LaunchModeOf(*plan) == LaunchMode::kNamespace) {
    plan->mount_set->DropNamespace();
    plan->root_namespace = -1;
    plan->root_template = plan->mount_set->template_fd();
    *error = LaunchError();
    launched = Launch(plan, out, error);
  }
  if (!launched && error->stage == Stage::kMountRoot && LaunchModeOf(*plan) == LaunchMode::kTemplate) {
    plan->mount_set->DropTemplate();
    plan->mounts = plan->mount_set->ops();
    plan->root_template = -1;
    plan->root_options = FreshRootOptions(plan->uid, plan->gid);
    *error = LaunchError();
    launched = Launch(plan, out, error);
  }
  return launched;
}

}  // namespace warden

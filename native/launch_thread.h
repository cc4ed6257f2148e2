// The launch thread: one thread of the process runs every launch, from the clone to the child's
// execve (or its failure), one at a time, in the order they were asked for.
//
// Why a thread: the parent of a launch waits through the child's whole setup (the CLONE_VM child
// runs on the launching thread's stack and in its memory until execve), ~5 ms on a quiet machine
// and 25 ms or more under load. On the JS thread that wait stalled the host's event loop (every
// plugin's calls and timers, the application's requests) once per spawn: per warm-pool refill,
// per cold load, per restart of a crashing plugin. Why one thread and not libuv's pool: launches
// of one mount set must not overlap (they take its spares and may drop its template), and pool
// threads blocked in launches would stall the fs and dns work queued behind them.
#pragma once

#include <atomic>

#include "launch_plan.h"
#include "launcher.h"

namespace warden {

struct LaunchJob {
  LaunchPlan plan;
  LaunchResult result;
  LaunchError error;
  bool launched = false;
  // The plan's fd sources are this job's own duplicates (an asynchronous launch: the caller's fds
  // may be closed, and their numbers reused for other files, before the launch runs). The launch
  // thread closes them once the launch is over.
  bool owns_fds = false;
  // Set by any thread when nobody will take the sandbox any more (its JS environment is ending):
  // a launch that has not started is skipped (failing with ECANCELED) instead of run.
  std::atomic<bool> cancelled{false};
  // Called on the launch thread when the launch is over: the thread's last touch of the job.
  void (*done)(LaunchJob* job) = nullptr;
  void* context = nullptr;
};

// Queues `job` for the launch thread (started on first use). False, with errno in *err, only when
// that thread could not be started; the job was not queued then. A synchronous launch (`first`)
// goes ahead of the asynchronous ones (its caller's thread, an event loop, stands still until it
// is done), behind the synchronous ones already queued, and at most a few in a row (launch_thread.cc).
bool SubmitLaunch(LaunchJob* job, int* err, bool first = false);

// Replaces the plan's fd sources with duplicates the job owns (owns_fds). 0 or errno; on failure
// nothing is left open and the plan is unchanged.
int TakeOwnFds(LaunchJob* job);
// Closes the duplicates (owns_fds only); idempotent.
void CloseOwnFds(LaunchJob* job);

// Runs a launch (LaunchWithFallback, which steps down the launch modes the kernel refuses) on the
// launch thread and waits for it: the synchronous spawn. The plan is moved into the job.
bool LaunchAndWait(LaunchPlan* plan, LaunchResult* out, LaunchError* error);

}  // namespace warden

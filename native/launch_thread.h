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

#include "launch_plan.h"
#include "launcher.h"

namespace warden {

struct LaunchJob {
  LaunchPlan plan;
  LaunchResult result;
  LaunchError error;
  bool launched = false;
  // Called on the launch thread when the launch is over: the thread's last touch of the job.
  void (*done)(LaunchJob* job) = nullptr;
  void* context = nullptr;
};

// Queues `job` for the launch thread (started on first use). False, with errno in *err, only when
// that thread could not be started; the job was not queued then.
bool SubmitLaunch(LaunchJob* job, int* err);

// Runs a launch (LaunchWithFallback, which steps down the launch modes the kernel refuses) on the
// launch thread and waits for it: the synchronous spawn. The plan is moved into the job.
bool LaunchAndWait(LaunchPlan* plan, LaunchResult* out, LaunchError* error);

}  // namespace warden

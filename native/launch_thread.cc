#include "launch_thread.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>

#include <condition_variable>
#include <deque>
#include <mutex>

#include "launch_modes.h"

namespace warden {

namespace {

// Allocated once and never freed: the thread waits on it until the process ends, and static
// destructors running at exit must not destroy a condition variable it waits on.
// Synchronous launches first, in the order asked (their callers' threads stand still meanwhile),
// but never more than kSyncStreak of them in a row while an asynchronous one waits: threads that
// spawn synchronously in a loop would otherwise hold every launch() back for as long as they go on.
constexpr int kSyncStreak = 4;

struct LaunchQueue {
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<LaunchJob*> sync_jobs;
  std::deque<LaunchJob*> async_jobs;
  int sync_streak = 0;  // synchronous launches run in a row while async_jobs was not empty
  bool started = false;
  uv_thread_t thread;

  LaunchJob* Next() {  // under mutex, with a job queued
    const bool sync = !sync_jobs.empty() && (async_jobs.empty() || sync_streak < kSyncStreak);
    std::deque<LaunchJob*>& from = sync ? sync_jobs : async_jobs;
    sync_streak = sync && !async_jobs.empty() ? sync_streak + 1 : 0;
    LaunchJob* job = from.front();
    from.pop_front();
    return job;
  }
};

LaunchQueue* Queue() {
  static LaunchQueue* queue = new LaunchQueue();
  return queue;
}

void ThreadMain(void* arg) {
  LaunchQueue* q = static_cast<LaunchQueue*>(arg);
  // No handler of the host runs here (process-directed signals go to its other threads), and the
  // children start with every signal blocked until they have reset the handlers (child.cc).
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, nullptr);
  for (;;) {
    LaunchJob* job;
    {
      std::unique_lock<std::mutex> lock(q->mutex);
      q->ready.wait(lock, [q] { return !q->sync_jobs.empty() || !q->async_jobs.empty(); });
      job = q->Next();
    }
    if (job->cancelled.load(std::memory_order_acquire)) {
      // Not even the mount set's spares are taken: nothing of it happens.
      job->launched = ParentFail(&job->error, Stage::kClone, ECANCELED, "the launch's JS environment ended before it ran");
    } else {
      job->launched = LaunchWithFallback(&job->plan, &job->result, &job->error);
    }
    CloseOwnFds(job);  // the child has its copies (or never will)
    job->done(job);
  }
}

}  // namespace

int TakeOwnFds(LaunchJob* job) {
  std::vector<FdMapping>& fds = job->plan.fds;
  std::vector<int> dups;
  dups.reserve(fds.size());
  for (const FdMapping& m : fds) {
    if (m.source == FdMapping::kDevNull) {
      dups.push_back(FdMapping::kDevNull);
      continue;
    }
    const int d = fcntl(m.source, F_DUPFD_CLOEXEC, 0);
    if (d < 0) {
      const int e = errno;
      for (int x : dups) if (x >= 0) close(x);
      return e;
    }
    dups.push_back(d);
  }
  for (size_t i = 0; i < fds.size(); i++) fds[i].source = dups[i];
  job->owns_fds = true;
  return 0;
}

void CloseOwnFds(LaunchJob* job) {
  if (!job->owns_fds) return;
  for (const FdMapping& m : job->plan.fds) if (m.source >= 0) close(m.source);
  job->owns_fds = false;
}

bool SubmitLaunch(LaunchJob* job, int* err, bool first) {
  LaunchQueue* q = Queue();
  {
    std::lock_guard<std::mutex> lock(q->mutex);
    if (!q->started) {
      uv_thread_options_t opts;
      opts.flags = UV_THREAD_HAS_STACK_SIZE;
      opts.stack_size = 1 << 20;  // the launch's own frames; the children have stacks of their own
      const int r = uv_thread_create_ex(&q->thread, &opts, ThreadMain, q);
      if (r != 0) {
        *err = -r;
        return false;
      }
      q->started = true;  // never joined: the thread lives as long as the process
    }
    (first ? q->sync_jobs : q->async_jobs).push_back(job);
  }
  q->ready.notify_one();
  return true;
}

bool LaunchAndWait(LaunchPlan* plan, LaunchResult* out, LaunchError* error) {
  struct Waiter {
    std::mutex mutex;
    std::condition_variable over;
    bool done = false;
  } waiter;
  LaunchJob job;
  job.plan = std::move(*plan);
  job.context = &waiter;
  job.done = [](LaunchJob* j) {
    Waiter* w = static_cast<Waiter*>(j->context);
    std::lock_guard<std::mutex> lock(w->mutex);
    w->done = true;
    w->over.notify_one();  // under the lock: `waiter` lives on the caller's stack
  };
  int err = 0;
  if (!SubmitLaunch(&job, &err, true)) return ParentFail(error, Stage::kClone, err, "starting the launch thread");
  {
    std::unique_lock<std::mutex> lock(waiter.mutex);
    waiter.over.wait(lock, [&waiter] { return waiter.done; });
  }
  *out = job.result;
  *error = std::move(job.error);
  return job.launched;
}

}  // namespace warden

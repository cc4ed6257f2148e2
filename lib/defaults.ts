/**
 * The library's default durations and plugin limits, in one place, so that a default is changed
 * once and every layer (channel, runner, pool, sandbox, hooks, plugin host) agrees on it. A leaf:
 * it imports nothing, and anything may import it. All durations are in milliseconds.
 */

/** A call over a runner's channel that sets no timeout (RunnerOptions.timeout; callSync's fallback). */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;
/** Loading a plugin into its runner: module plus activate() (loadTimeout, loadTimeoutMs). */
export const DEFAULT_LOAD_TIMEOUT_MS = 10_000;
/**
 * Plugin starts (sandbox, runner, module, activate()) that run at once, per core the host may use
 * (os.availableParallelism()); the others wait in line (maxConcurrentLoads). A start is mostly cpu,
 * but part of it waits on the kernel (clone, mounts, cgroups) and on the handshake's round trips:
 * two per core keep the cores busy without dividing them so thin that starts time out.
 */
export const DEFAULT_LOADS_PER_CORE = 2;
/**
 * The most runners a warm pool keeps (RunnerPool size, the host's warmPool): each idle one is a
 * Node process (~6 MiB here); past a thousand a pool is a leak more likely than a plan.
 */
export const MAX_POOL_SIZE = 1024;
/** A pooled runner's warm-up call, and how long a pool waits for a runner to become ready. */
export const DEFAULT_READY_TIMEOUT_MS = 10_000;
/** The sandbox's own setup, from clone to the exec of its command (SpawnOptions.setupTimeout). */
export const DEFAULT_SETUP_TIMEOUT_MS = 10_000;
/** A hook whose declaration sets no timeout. */
export const DEFAULT_HOOK_TIMEOUT_MS = 5_000;
/** How long unloading a plugin waits for its in-flight calls. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 5_000;
/** How long a plugin's shutdown() may take. */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 2_000;
/** After closing a runner's channel, how long it may take to exit before it is killed. */
export const DEFAULT_CLOSE_GRACE_MS = 2_000;
/** Quiet time after a file change before the plugin host reacts to it (watch). */
export const DEFAULT_WATCH_DEBOUNCE_MS = 200;
/** The plugin host's restart policy: first delay after a violation, doubling up to the maximum. */
export const DEFAULT_RESTART_INITIAL_DELAY_MS = 1_000;
export const DEFAULT_RESTART_MAX_DELAY_MS = 60_000;
/** This many violations within the window quarantine a plugin. */
export const DEFAULT_QUARANTINE: Readonly<{ violations: number; windowMs: number }> = Object.freeze({ violations: 3, windowMs: 600_000 });
/** Limits of a plugin whose trust entry sets none (PluginHostOptions.limits). */
export const DEFAULT_PLUGIN_LIMITS: Readonly<{ memory: string; pids: number; callTimeout: string }> = Object.freeze({ memory: '256M', pids: 64, callTimeout: '5s' });
/** The capability scan (lib/scan): files larger are not parsed; bytes parsed in all; entries walked. */
export const DEFAULT_SCAN_MAX_FILE_BYTES = 8 * 1024 * 1024;
export const DEFAULT_SCAN_MAX_TOTAL_BYTES = 64 * 1024 * 1024;
export const DEFAULT_SCAN_MAX_FILES = 20_000;
/** Parsing one file, and the whole scan. */
export const DEFAULT_SCAN_FILE_TIMEOUT_MS = 2_000;
export const DEFAULT_SCAN_TIMEOUT_MS = 30_000;
/** Heap of the scan's worker thread, in MiB. */
export const DEFAULT_SCAN_WORKER_HEAP_MB = 512;
/**
 * The plugin bus (lib/bus): an event's payload, a shared-data value, the events a plugin may
 * publish per second (with a burst), deliveries waiting on one subscriber before the bus drops
 * (and counts) more for it, a service call's time, refusals that make a plugin's violation
 * (a window's worth: an honest plugin is refused once and stops), a data owner's quota.
 */
export const DEFAULT_BUS: Readonly<{
  maxPayloadBytes: number; publishPerSecond: number; publishBurst: number; maxPendingPerSubscriber: number; maxPendingBytesPerPlugin: number;
  callTimeoutMs: number; maxRefusals: number; refusalWindowMs: number; maxValueBytes: number; quotaBytes: number; quotaKeys: number;
  dataWriteBytesPerSecond: number; dataWriteBurstBytes: number;
}> = Object.freeze({
  // Half the channel's queueBytes (PLUGIN_PEER_LIMITS): what the bus leaves waiting for one plugin
  // stays under the bound past which that plugin, not the sender, would be called a flood.
  maxPayloadBytes: 64 * 1024, publishPerSecond: 1000, publishBurst: 200, maxPendingPerSubscriber: 256, maxPendingBytesPerPlugin: 4 << 20,
  callTimeoutMs: 10_000, maxRefusals: 50, refusalWindowMs: 10_000, maxValueBytes: 64 * 1024, quotaBytes: 1024 * 1024, quotaKeys: 1000,
  // A data write costs the host the owner's whole namespace (up to quotaBytes) serialized, and with
  // a file adapter written and fsynced, on its event loop: a plugin's writes are charged those bytes
  // (at least 1 KiB each) against a rate. A count alone does not bound it: 100 writes a second of a
  // 1 MiB namespace kept a core busy.
  dataWriteBytesPerSecond: 4 << 20, dataWriteBurstBytes: 8 << 20,
});
/**
 * A plugin's log lines (its console) the host passes on, and their UTF-8 bytes, per second
 * sustained, with a burst of ten seconds' worth; the rest are dropped and counted. Each line is the
 * application's to write somewhere: at the channel's rates (50,000 messages, 256 MiB a second) one
 * plugin could fill a disk.
 */
export const DEFAULT_LOG_RATE: Readonly<{ lines: number; bytes: number }> = Object.freeze({ lines: 100, bytes: 64 * 1024 });
/**
 * A plugin's events (host.emit) the host passes on to the application's 'event' listeners, per
 * second sustained, with a burst of ten seconds' worth; the rest are dropped and counted
 * ('events-dropped'). Each runs the application's listeners on the host's thread: at the
 * channel's 50,000 messages a second one plugin would choose how busy the host's listeners are.
 */
export const DEFAULT_EVENT_RATE = 1000;

/**
 * What the host (lib/process) and the runner (lib/runner, inside the sandbox) agree on: fd numbers
 * inside the sandbox, env names, reserved methods, the shape of `$load`. Both sides compile this file,
 * so it imports nothing and sits below both.
 */

/** Where the channel's fds land inside the sandbox. */
export const RUNNER_FDS = { memfd: 3, ownEfd: 4, peerEfd: 5, alive: 6 } as const;

/** JSON: { ringSize, maxMessage } (the fd numbers are RUNNER_FDS). */
export const ENV_CHANNEL = 'WARDEN_CHANNEL';

/** Methods and events whose names start with '$' belong to the runner, not the plugin. */
export const M_LOAD = '$load'; // (entry: string, config: unknown, setup?: LoadSetup) → string[] (the plugin's methods)
export const N_LOG = '$log'; // (level: string, message: string)
export const M_HOOKS = '$hooks'; // () → HookRegistration[] (what the plugin registered with host.hook during load)
export const M_SHUTDOWN = '$shutdown'; // () → undefined, after the plugin's shutdown() (if any) returned
/** Prefix of the method that runs a plugin's handler for a hook: '$hook:' + hook name. */
export const HOOK_METHOD_PREFIX = '$hook:';

export interface HookRegistration {
  hook: string;
  priority: number;
}

/**
 * `$warm` (filters?: Uint8Array[]) → true: a pooled runner, before any plugin, runs its load path
 * once on scratch data, and stacks `filters` (seccomp programs, as LoadSetup.filters) for good: the
 * pool's exec guard, so that a load need not.
 */
export const M_WARM = '$warm';
export const N_READY = '$ready'; // runner → host, once, when it waits for `$load` (a pooled runner is ready)
/**
 * `$wake` host → pooled runner, before `$load`: a plugin is on the way. The runner spins for the
 * next message (WAKE_SPIN_US at most, on its own core time) instead of going back to sleep, so the
 * `$load` sent once the host has read the tree and fitted the limits finds it awake.
 */
export const N_WAKE = '$wake';
export const WAKE_SPIN_US = 3000;
/**
 * `$go` host → runner, after a `$load` whose setup has `awaitGo`: the host has lowered the
 * sandbox's limits. The runner writes the plugin's files meanwhile and runs none of its code before
 * `$go`, so a pooled runner's files and the host's fitting overlap, and no plugin code ever runs
 * under the pool's ceiling.
 */
export const N_GO = '$go';

/** One entry of a plugin tree on the wire: a directory, a file (mode, bytes) or a symlink (target). */
export type WireEntry = ['d', string] | ['f', string, number, Uint8Array] | ['l', string, string];

/**
 * `$load`'s third argument: what the runner does, in this order, before the plugin's code runs.
 * Unknown fields are an error (an old runner must not silently skip a restriction).
 */
export interface LoadSetup {
  /** Variables added to process.env. */
  env?: Record<string, string>;
  /** Seccomp programs to stack (compileSeccomp(policy, { stacked: true })), on every thread. */
  filters?: Uint8Array[];
  /** The plugin's files, written under `root` (which must be empty or absent). */
  tree?: { root: string; entries: WireEntry[] };
  /** Then wait for `$go` (N_GO) before the plugin's code runs. */
  awaitGo?: true;
}

/**
 * The bus (lib/bus), runner → host: `$bus:publish` (topic, payload), `$bus:subscribe` (topic),
 * `$bus:provide` (service), `$bus:call` (plugin, service, args), `$data:OP` (key[, value]).
 * Host → runner: `$bus:event` (topic, from, payload) and `$bus:serve` (caller, service, args).
 * Nothing the plugin sends names its sender: the host knows whose channel it came on.
 */
export const M_BUS_PUBLISH = '$bus:publish';
export const M_BUS_SUBSCRIBE = '$bus:subscribe';
export const M_BUS_PROVIDE = '$bus:provide';
export const M_BUS_CALL = '$bus:call';
export const M_BUS_EVENT = '$bus:event';
export const M_BUS_SERVE = '$bus:serve';
export const M_DATA_PREFIX = '$data:'; // + get | set | delete | list

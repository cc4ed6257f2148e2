/** What the host and the runner agree on: fd numbers inside the sandbox, env names, reserved methods. */

/** Where the channel's fds land inside the sandbox. */
export const RUNNER_FDS = { memfd: 3, ownEfd: 4, peerEfd: 5, alive: 6 } as const;

/** JSON: { ringSize, maxMessage } (the fd numbers are RUNNER_FDS). */
export const ENV_CHANNEL = 'WARDEN_CHANNEL';

/** Methods and events whose names start with '$' belong to the runner, not the plugin. */
export const M_LOAD = '$load'; // (entry: string, config: unknown) → string[] (the plugin's methods)
export const N_LOG = '$log'; // (level: string, message: string)
export const M_HOOKS = '$hooks'; // () → HookRegistration[] (what the plugin registered with host.hook during load)
export const M_SHUTDOWN = '$shutdown'; // () → undefined, after the plugin's shutdown() (if any) returned
/** Prefix of the method that runs a plugin's handler for a hook: '$hook:' + hook name. */
export const HOOK_METHOD_PREFIX = '$hook:';

export interface HookRegistration {
  hook: string;
  priority: number;
}

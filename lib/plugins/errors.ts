/**
 * Errors of the plugin host. Each has a stable `code` and names the plugin; messages say what to do.
 */
import { WardenError } from '../errors';
import type { PluginReason } from './reason';

export class PluginError extends WardenError {
  readonly plugin: string;
  constructor(code: string, plugin: string, message: string) {
    super(code, message);
    this.plugin = plugin;
  }
}

/** The manifest (warden.json, or the `warden` section of package.json) is missing or malformed. */
export class PluginManifestError extends PluginError {
  readonly field: string;
  readonly file: string;
  constructor(plugin: string, file: string, field: string, reason: string) {
    super('ERR_PLUGIN_MANIFEST', plugin, `${file}: ${field}: ${reason}`);
    this.field = field;
    this.file = file;
  }
}

/** The plugin asks for a permission (or more of a limit) than its trust list entry grants. */
export class PermissionDeniedError extends PluginError {
  /** The requested permission, e.g. "fs:read:/srv/data", or "limits.memory". */
  readonly permission: string;
  constructor(plugin: string, permission: string, reason: string, advice = 'grant it in the trust list or remove it from the manifest') {
    super('ERR_PLUGIN_PERMISSION', plugin, `${plugin} requests ${permission}, which ${reason}; ${advice}`);
    this.permission = permission;
  }
}

/** The plugin registered a hook it did not declare, or one the host does not know. */
export class PluginHookError extends PluginError {
  readonly hook: string;
  constructor(plugin: string, hook: string, reason: string) {
    super('ERR_PLUGIN_HOOK', plugin, `${plugin}: hook '${hook}': ${reason}`);
    this.hook = hook;
  }
}

/** The operation does not fit the plugin's state (unknown plugin, quarantined, host closed, ...). */
export class PluginStateError extends PluginError {
  constructor(plugin: string, message: string, code = 'ERR_PLUGIN_STATE') {
    super(code, plugin, message);
  }
}

/** Loading failed: wraps the cause (trust, compatibility, sandbox setup, runner) with the stage. */
export class PluginLoadError extends PluginError {
  /** 'discover' | 'verify' | 'compat' | 'permissions' | 'spawn' (the sandbox) | 'init' (the plugin's module or activate) | 'handshake' | 'hooks' */
  readonly stage: string;
  override readonly cause: unknown;
  /**
   * The plugin broke a limit or a policy while it loaded (the sandbox ended it, the channel cut it
   * off, or its instance reported a violation before it was activated): the host records it as a
   * violation of that kind, not a plain load failure.
   */
  readonly violation: PluginReason | undefined;
  constructor(plugin: string, stage: string, cause: unknown, violation?: PluginReason) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super('ERR_PLUGIN_LOAD', plugin, `loading ${plugin} failed at ${stage}: ${why}`);
    this.stage = stage;
    this.cause = cause;
    this.violation = violation;
  }
}

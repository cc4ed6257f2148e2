/**
 * Every error warden throws is a WardenError with a stable `code`. Messages say what to do.
 */
export class WardenError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Bad input: names the field and what to do. Nothing was started or written. */
export class InvalidOptionError extends WardenError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('ERR_INVALID_OPTION', `${field}: ${message}`);
    this.field = field;
  }
}

/**
 * A requested resource limit cannot be enforced on this host (no cgroup controller, no permission to
 * create the cgroup, no delegation). Nothing was started. The message says how to delegate, or to pass
 * `allowDegraded` to run with rlimits standing in.
 */
export class LimitError extends WardenError {
  /** The limit that cannot be enforced: 'memory', 'pids', 'cpu', 'cpuTime', 'io', or 'cgroup' for all. */
  readonly limit: string;
  /** The cgroup file or directory that failed, when there is one. */
  readonly path: string | undefined;
  /** The errno name (EACCES, EBUSY, ENOENT, ...), when a syscall failed. */
  readonly errno: string | undefined;
  constructor(limit: string, message: string, opts: { path?: string; errno?: string; code?: string } = {}) {
    super(opts.code ?? 'ERR_LIMIT_UNAVAILABLE', message);
    this.limit = limit;
    this.path = opts.path;
    this.errno = opts.errno;
  }
}

/**
 * The channel to a sandbox failed. Codes:
 * - ERR_CHANNEL_CLOSED: the channel was closed or the peer exited; `reason` says which.
 * - ERR_CHANNEL_PROTOCOL: the peer wrote something malformed into the channel; it was closed and
 *   the sandbox should be treated as hostile (a `protocol` violation is reported too).
 * - ERR_CHANNEL_MESSAGE_TOO_LARGE: a message exceeds `maxMessage`; raise it or send less.
 * - ERR_CHANNEL_SETUP: the shared memory or its fds could not be set up (`errno` in the message).
 */
export class ChannelError extends WardenError {
  readonly reason?: string;
  constructor(code: string, message: string, reason?: string) {
    super(code, message);
    if (reason !== undefined) this.reason = reason;
  }
}

/**
 * A violation as the sandbox or the channel observed it: the one shape the layers pass on (the
 * sandbox's `Violation` narrows it, the channel's `ChannelViolation` fits it, the plugin host turns it
 * into a `PluginReason`). `kind` is a string here: a receiver checks it against the kinds it knows.
 */
export interface ObservedViolation {
  kind: string;
  /** seccomp: the syscall's name. */
  syscall?: string;
  limit?: number | string;
  observed?: number | string;
  /** protocol, flood: what the peer did. */
  message?: string;
}

/**
 * The sandbox was ended for breaking a limit or a policy (ERR_SANDBOX_VIOLATION) while a call to it
 * was pending, e.g. a plugin that ran out of memory or made a forbidden syscall while it loaded.
 * `violation` is what the sandbox (or the channel: garbage or a flood) observed; `cause` is the
 * error the call itself got (the channel closing).
 */
export class SandboxViolationError extends WardenError {
  readonly violation: ObservedViolation;
  override readonly cause: unknown;
  constructor(violation: ObservedViolation, during: string, cause: unknown) {
    const what = violation.syscall ?? violation.observed ?? violation.message;
    const detail = what !== undefined ? ` (${String(what)})` : '';
    super('ERR_SANDBOX_VIOLATION', `the sandbox was ended for a ${violation.kind} violation${detail} while ${during}`);
    this.violation = violation;
    this.cause = cause;
  }
}

/** A call got no answer within its timeout (ERR_CALL_TIMEOUT). The peer was told to cancel it. */
export class CallTimeoutError extends WardenError {
  readonly method: string;
  readonly timeout: number;
  constructor(method: string, timeout: number) {
    super('ERR_CALL_TIMEOUT', `call '${method}' got no answer within ${timeout} ms; raise the timeout or check the plugin`);
    this.method = method;
    this.timeout = timeout;
  }
}

/**
 * An error thrown by the other side of a call, rethrown here. `name`, `message`, `stack` and
 * `code` are the remote error's (as the remote side chose to report them: untrusted text);
 * `instanceof RemoteError` tells them apart from errors raised locally.
 */
export class RemoteError extends Error {
  code?: string;
  readonly method: string;
  constructor(method: string, name: string, message: string, stack: string | undefined, code: string | undefined) {
    super(message);
    Object.defineProperty(this, 'name', { value: name, writable: true, configurable: true, enumerable: false });
    this.method = method;
    if (code !== undefined) this.code = code;
    if (stack !== undefined) this.stack = stack;
  }
}

/** A hook was invoked or a handler registered for a name that was never declared (ERR_HOOK_UNKNOWN). */
export class UnknownHookError extends WardenError {
  readonly hook: string;
  /** The names that are declared, to spot a typo. */
  readonly declared: string[];
  constructor(hook: string, declared: string[]) {
    const shown = declared.length > 20 ? `${declared.slice(0, 20).join(', ')}, … (${declared.length} in all)` : declared.join(', ');
    super(
      'ERR_HOOK_UNKNOWN',
      `unknown hook '${hook}'; ${declared.length === 0 ? 'no hook is declared' : `declared hooks: ${shown}`}. ` +
        'Declare it first (HookRegistry.declare) or fix the name.',
    );
    this.hook = hook;
    this.declared = declared;
  }
}

/**
 * One handler did not settle within its timeout (ERR_HOOK_TIMEOUT). It appears in the handler's
 * outcome, not as a rejection of invoke(); the handler's `ctx.signal` was aborted with it.
 */
export class HookTimeoutError extends WardenError {
  readonly hook: string;
  readonly owner: string;
  readonly timeout: number;
  constructor(hook: string, owner: string, timeout: number) {
    super(
      'ERR_HOOK_TIMEOUT',
      `handler of '${owner}' for hook '${hook}' did not finish within ${timeout} ms; its result is ignored. ` +
        'Make the handler faster or raise the hook timeout.',
    );
    this.hook = hook;
    this.owner = owner;
    this.timeout = timeout;
  }
}

/**
 * invoke() was cancelled by the caller's AbortSignal (ERR_HOOK_ABORTED). `name` is 'AbortError', as for
 * other cancelled operations. Handlers not yet started were not started; running ones had their
 * `ctx.signal` aborted. `reason` is the signal's reason.
 */
export class HookAbortError extends WardenError {
  readonly hook: string;
  readonly reason: unknown;
  constructor(hook: string, reason: unknown) {
    super('ERR_HOOK_ABORTED', `invocation of hook '${hook}' was cancelled by the caller's signal`);
    Object.defineProperty(this, 'name', { value: 'AbortError', writable: true, configurable: true, enumerable: false });
    this.hook = hook;
    this.reason = reason;
  }
}

/**
 * The audit log file could not be opened or is not an audit log (ERR_AUDIT_LOG). Raised when a log is
 * opened; failures of later appends go to the log's `onError` instead.
 */
export class AuditLogError extends WardenError {
  readonly path: string;
  readonly errno: string | undefined;
  constructor(path: string, message: string, errno?: string) {
    super('ERR_AUDIT_LOG', `${path}: ${message}`);
    this.path = path;
    this.errno = errno;
  }
}

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

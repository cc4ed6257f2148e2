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

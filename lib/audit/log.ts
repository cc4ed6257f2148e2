/**
 * AuditLog: an append-only JSON-lines file of what the plugin host decided and saw (verifications,
 * permissions, loads, violations, quarantines...).
 *
 * - The file is opened O_APPEND|O_CREAT with mode 0600, and each event is written by ONE write(2) of
 *   one whole line: appenders sharing the file never interleave inside a line.
 * - Appending is synchronous and never throws for an I/O error: the error goes to `onError`, the event
 *   stays in memory, and the next append starts again from what the file really holds.
 * - Tamper evidence: each line carries `prev`, the sha256 of the previous line's bytes, so an edit,
 *   insertion or removal in the middle of the file breaks the chain at the next line (readAuditLog
 *   reports where). This is evidence, not protection: the chain has no secret, so whoever can write the
 *   file can also rewrite every line after the one they changed, or the whole file, and cutting lines
 *   off the end leaves a valid chain. Keep `head` (the hash of the last line) somewhere the host's user
 *   cannot write, or ship lines off the machine, to detect those too.
 * - Concurrent appenders (several hosts, or `warden` processes, sharing one file) keep one linear
 *   chain: each append takes an exclusive flock(2) on the file, checks whether the file grew behind
 *   its back (re-reading the last line if it did), writes, and unlocks. Without the lock a reader of
 *   the tail could also catch another process's line half-written (a page-sized write is not atomic
 *   for readers) and take it for a torn line. The lock is advisory: a writer that does not take it
 *   (`echo >>`) can still fork the chain, which the reader reports as a break. The lock is waited for
 *   at most LOCK_WAIT_MS, never blocking the event loop on a process that holds it forever; past that
 *   the event is written anyway (lines stay whole thanks to O_APPEND) and onError is told.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { AuditLogError, InvalidOptionError } from '../errors';
import { addon } from '../native';
import {
  AUDIT_GENESIS, AuditEvent, AuditEventInput, AuditFilter, applyFilter, buildEvent, checkInput, compileFilter, eventProblem, sha256Hex,
} from './format';

export interface AuditLogOptions {
  /** The file to append to; undefined keeps events in memory only. */
  path?: string;
  /** Clock, for tests. */
  now?: () => Date;
  /**
   * Called for each failed write (the event is kept in memory). Default: one process warning per run
   * of failures.
   */
  onError?: (e: Error) => void;
  /** Events kept in memory for events(); older ones are dropped from memory (not from the file). Default 10000. */
  maxEvents?: number;
  /**
   * fdatasync after each event, so it survives a machine crash, at the cost of a disk flush per event.
   * Default false: an event is in the kernel's page cache when append() returns, which survives a crash
   * of the process but not of the machine.
   */
  sync?: boolean;
  /**
   * A file where the log's end is recorded after each event ({ seq, head }: the last event's seq and
   * the sha256 of its line), replaced atomically (temporary file, rename; with `sync`, fsync'd).
   * Kept where no plugin and, ideally, not even the host's user can write (another disk, another
   * machine's mount), it lets `warden audit --verify --checkpoint FILE` tell a log whose tail was cut
   * or that was rewritten as a whole, which the hash chain alone cannot show.
   */
  checkpoint?: string;
}

/** What a checkpoint file holds. */
export interface AuditCheckpoint {
  seq: number;
  head: string;
}

/** How far back the last line is looked for when a file is opened; a longer last line is refused. */
const MAX_TAIL_BYTES = 1024 * 1024;
const FIRST_TAIL_READ = 64 * 1024;
/** How long an append waits for another process's lock on the file before writing without it. */
const LOCK_WAIT_MS = 250;
/** Atomics.wait target for the short sleeps between lock attempts. */
const sleeper = new Int32Array(new SharedArrayBuffer(4));

type FlockFile = (fd: number, mode: 'exclusive' | 'unlock') => number;

interface Tail {
  /** sha256 of the last line (complete or not), or the genesis value for an empty file. */
  prev: string;
  /** seq of the last line that is a valid event, if one was found. */
  lastSeq: number | undefined;
  /** The file is empty or ends with a newline. */
  complete: boolean;
}

function readAt(fd: number, position: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let off = 0;
  while (off < length) {
    const n = fs.readSync(fd, buf, off, length - off, position + off);
    if (n === 0) break;
    off += n;
  }
  return buf.subarray(0, off);
}

/** Reads the end of the file: the hash of its last line and the last seq, without reading it all. */
function readTail(fd: number, size: number, file: string): Tail {
  if (size === 0) return { prev: AUDIT_GENESIS, lastSeq: undefined, complete: true };
  let len = Math.min(size, FIRST_TAIL_READ);
  for (;;) {
    const start = size - len;
    const buf = readAt(fd, start, len);
    const complete = buf[buf.length - 1] === 0x0a;
    const body = complete ? buf.subarray(0, buf.length - 1) : buf;
    const cut = body.lastIndexOf(0x0a);
    if (cut < 0 && start > 0) {
      if (len >= Math.min(size, MAX_TAIL_BYTES)) {
        throw new AuditLogError(file, `the last line is longer than ${MAX_TAIL_BYTES} bytes: this is not an audit log warden wrote; move it away`);
      }
      len = Math.min(size, MAX_TAIL_BYTES);
      continue;
    }
    const last = body.subarray(cut + 1);
    // The seq to continue from: the last valid event among the lines read. The first line read may
    // be the end of a longer one (the read did not start at a line boundary): skip it.
    const lines: Buffer[] = [];
    for (let i = 0, from = 0; i <= body.length; i++) {
      if (i === body.length || body[i] === 0x0a) {
        lines.push(body.subarray(from, i));
        from = i + 1;
      }
    }
    if (start > 0) lines.shift();
    let lastSeq: number | undefined;
    for (let i = lines.length - 1; i >= 0 && lastSeq === undefined; i--) {
      try {
        const v = JSON.parse(lines[i].toString('utf8')) as AuditEvent;
        if (eventProblem(v) === undefined) lastSeq = v.seq;
      } catch {
        // not an event; look at the line before
      }
    }
    return { prev: sha256Hex(last), lastSeq, complete };
  }
}

export class AuditLog {
  readonly path: string | undefined;
  private fd: number | undefined = undefined;
  private closed = false;
  /** Size the file has if nobody else wrote to it since our last write. */
  private size = 0;
  /** The file ends with a newline (or is empty). */
  private complete = true;
  private nextSeq = 1;
  private prev = AUDIT_GENESIS;
  private readonly memory: AuditEvent[] = [];
  private readonly maxEvents: number;
  private readonly now: () => Date;
  private readonly onError: ((e: Error) => void) | undefined;
  private failing = false;
  private readonly sync: boolean;
  private flock: FlockFile | undefined;
  private readonly checkpoint: string | undefined;
  private readonly listeners = new Set<(event: AuditEvent) => void>();

  /**
   * Opens (creating it with mode 0600) or continues the log at `options.path`: the next event follows
   * the file's last line in seq and hash chain. Throws an AuditLogError when the file cannot be opened
   * or is not a regular file: a host should know at startup that it has no audit log.
   */
  constructor(options: AuditLogOptions = {}) {
    this.path = options.path;
    this.now = options.now ?? (() => new Date());
    this.onError = options.onError;
    const max = options.maxEvents ?? 10_000;
    if (!Number.isSafeInteger(max) || max < 0) throw new InvalidOptionError('audit.maxEvents', 'must be a non-negative integer');
    this.maxEvents = max;
    this.sync = options.sync === true;
    this.checkpoint = options.checkpoint;
    if (options.path === undefined) return;
    const file = options.path;
    this.flock = addon().flockFile as FlockFile;
    let fd: number;
    try {
      fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o600);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new AuditLogError(file, `cannot open the audit log (${code ?? (e as Error).message}); check the directory exists and is writable`, code);
    }
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) throw new AuditLogError(file, 'not a regular file');
      this.fd = fd;
      this.resync(st.size);
    } catch (e) {
      this.fd = undefined;
      fs.closeSync(fd);
      if (e instanceof AuditLogError) throw e;
      const code = (e as NodeJS.ErrnoException).code;
      throw new AuditLogError(file, `cannot read the end of the audit log (${code ?? (e as Error).message})`, code);
    }
  }

  /** Same as the constructor. */
  static open(path: string, options: Omit<AuditLogOptions, 'path'> = {}): AuditLog {
    return new AuditLog({ ...options, path });
  }

  /** sha256 of the last line written (what the next event's `prev` will be). */
  get head(): string {
    return this.prev;
  }

  /** The seq the next event will get. */
  get seq(): number {
    return this.nextSeq;
  }

  private resync(size: number): void {
    const tail = readTail(this.fd!, size, this.path!);
    this.size = size;
    this.complete = tail.complete;
    this.prev = tail.prev;
    if (tail.lastSeq !== undefined && tail.lastSeq + 1 > this.nextSeq) this.nextSeq = tail.lastSeq + 1;
  }

  private report(e: Error): void {
    if (this.onError !== undefined) {
      try {
        this.onError(e);
      } catch {
        // an onError that throws must not reach the appender either
      }
      return;
    }
    if (this.failing) return;
    this.failing = true;
    process.emitWarning(e);
  }

  /**
   * Appends one event: validates it (an InvalidOptionError for a bad field; that is a bug of the
   * caller), stamps time, seq and prev, writes it, keeps it in memory and returns it (frozen).
   * I/O errors do not throw: see onError.
   */
  append(input: AuditEventInput): AuditEvent {
    checkInput(input);
    let date = this.now();
    if (!(date instanceof Date) || Number.isNaN(date.getTime())) date = new Date();
    const locked = this.lock();
    try {
      return this.appendLocked(input, date);
    } finally {
      if (locked && this.fd !== undefined) this.flock!(this.fd, 'unlock');
    }
  }

  /**
   * Takes the file's exclusive lock, retrying for up to LOCK_WAIT_MS. False when there is no file or
   * the lock could not be had (reported): the append then goes ahead without it.
   */
  private lock(): boolean {
    if (this.fd === undefined || this.flock === undefined) return false;
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      const errno = this.flock(this.fd, 'exclusive');
      if (errno === 0) return true;
      if (errno !== os.constants.errno.EWOULDBLOCK || Date.now() >= deadline) {
        const why = errno === os.constants.errno.EWOULDBLOCK ? `another process held it for ${LOCK_WAIT_MS} ms` : `errno ${errno}`;
        this.report(new AuditLogError(this.path!, `cannot lock the audit log (${why}): event ${this.nextSeq} is written without the lock, so the hash chain may fork there`));
        return false;
      }
      Atomics.wait(sleeper, 0, 0, 0.2); // the holder only writes one line: a fraction of a millisecond
    }
  }

  private appendLocked(input: AuditEventInput, date: Date): AuditEvent {
    if (this.fd !== undefined) {
      try {
        const size = fs.fstatSync(this.fd).size;
        if (size !== this.size) this.resync(size); // someone else appended, or a write of ours was cut short
      } catch (e) {
        this.report(e instanceof Error ? e : new Error(String(e)));
      }
    }
    const { event, line } = buildEvent(input, date.toISOString(), this.nextSeq++, this.prev);
    this.remember(event);
    this.tell(event);
    if (this.path === undefined) {
      this.prev = sha256Hex(Buffer.from(line));
      return event;
    }
    if (this.fd === undefined) {
      this.report(new AuditLogError(this.path, `event ${event.seq} appended after close(): kept in memory only`));
      return event;
    }
    // After a torn write the file does not end with a newline: end that line first, in the same write.
    const data = Buffer.from(this.complete ? `${line}\n` : `\n${line}\n`);
    try {
      const n = fs.writeSync(this.fd, data);
      if (n !== data.length) {
        this.size = -1; // re-read the tail before the next write: the chain continues from the torn line
        this.complete = false;
        throw new AuditLogError(this.path, `short write of event ${event.seq} (${n} of ${data.length} bytes): disk full?`);
      }
      this.size += n;
      this.complete = true;
      this.prev = sha256Hex(Buffer.from(line));
      if (this.sync) fs.fdatasyncSync(this.fd);
      if (this.checkpoint !== undefined) this.writeCheckpoint({ seq: event.seq, head: this.prev });
      this.failing = false;
    } catch (e) {
      const err = e instanceof AuditLogError ? e : new AuditLogError(this.path, `cannot write event ${event.seq}: ${(e as Error).message}`, (e as NodeJS.ErrnoException).code);
      this.report(err);
    }
    return event;
  }

  /** Replaces the checkpoint file: a crash leaves the old one or the new one, never half of one. */
  private writeCheckpoint(cp: AuditCheckpoint): void {
    const file = this.checkpoint!;
    const tmp = `${file}.${process.pid}.tmp`;
    const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_NOFOLLOW, 0o600);
    try {
      fs.writeSync(fd, `${JSON.stringify(cp)}\n`);
      if (this.sync) fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  }

  private remember(event: AuditEvent): void {
    if (this.maxEvents === 0) return;
    if (this.memory.length >= this.maxEvents) this.memory.splice(0, this.memory.length - this.maxEvents + 1);
    this.memory.push(event);
  }

  /**
   * Calls `listener` with each event this log appends from now on (metrics, a live dashboard).
   * A listener that throws breaks nothing: the error goes to onError and the append goes on. Returns
   * the unsubscriber.
   */
  subscribe(listener: (event: AuditEvent) => void): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  private tell(event: AuditEvent): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch (e) {
        this.report(e instanceof Error ? e : new Error(String(e)));
      }
    }
  }

  /** The events this log appended (in memory, up to maxEvents), filtered. */
  events(filter?: AuditFilter): AuditEvent[] {
    return applyFilter(this.memory, compileFilter(filter));
  }

  /** Closes the file. Later appends are kept in memory only and reported to onError. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const fd = this.fd;
    this.fd = undefined;
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch (e) {
        this.report(e as Error);
      }
    }
  }
}

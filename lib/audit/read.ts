/**
 * readAuditLog: reads an audit log, checks its hash chain and returns the events that match a filter.
 * Damage is reported, never thrown: a line that is not an event, a torn last line, a broken chain.
 */
import * as fs from 'node:fs';
import { createHash, Hash } from 'node:crypto';
import { AuditLogError } from '../errors';
import { AUDIT_GENESIS, AuditEvent, AuditFilter, compileFilter, eventProblem } from './format';

export interface AuditProblem {
  /** 1-based line number. */
  line: number;
  problem: string;
}

export interface AuditReadResult {
  /** The valid events that match the filter, in file order (the last `limit` if given). */
  events: AuditEvent[];
  /** What is wrong, by line; at most MAX_PROBLEMS entries (the last one says how many more). */
  problems: AuditProblem[];
  /**
   * Every event's `prev` is the hash of the line before it (64 zeros for the first line). False when
   * a line was changed, inserted or removed, or the head of the file was cut off. A torn last line or
   * a line that is not an event does not make it false by itself: the line after it would.
   */
  chainOk: boolean;
  /** Lines in the file, a torn last line included. */
  lines: number;
  /**
   * Complete lines that are not an audit event (not JSON, not an event, too long): nothing chains
   * them, so a verifier must not call such a file intact. A torn last line is not counted here.
   */
  nonEvents: number;
  /** The first of them (1-based), with what is wrong with it. */
  firstNonEvent: AuditProblem | undefined;
  /**
   * Lines of writes cut short (a crash in the middle of an append) that the next appender ended and
   * continued after: the start of event N, then event N (or N+1) chained to it. Part of the chain.
   */
  tornWrites: number[];
  /** The file ends in the middle of a line: the last write was cut short and nothing followed yet. */
  tornTail: boolean;
  /** sha256 of the last line: compare it with a copy kept elsewhere to detect a cut tail. */
  head: string;
  /** The highest seq of a valid event, if any. */
  lastSeq: number | undefined;
  /** options.hashOfSeq: the sha256 of the line of the (first) event with that seq, if there is one. */
  seqHash: string | undefined;
}

const CHUNK = 64 * 1024;
/** Lines longer than this are hashed but not parsed. */
const MAX_LINE = 1024 * 1024;
export const MAX_PROBLEMS = 1000;
/** How every event line starts (buildEvent puts seq first): a cut-short write starts the same way. */
const TORN_START = /^\{"seq":(\d{1,15}),/;

/**
 * Reads the log at `path`. Rejects only when the file cannot be read (ENOENT, EACCES, not a regular
 * file) or the filter is invalid (InvalidOptionError).
 */
export async function readAuditLog(path: string, filter?: AuditFilter, options: { hashOfSeq?: number } = {}): Promise<AuditReadResult> {
  const f = compileFilter(filter);
  const fh = await fs.promises.open(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const events: AuditEvent[] = [];
  const problems: AuditProblem[] = [];
  let more = 0;
  let chainOk = true;
  let lineNo = 0;
  let expectedPrev = AUDIT_GENESIS;
  let lastSeq: number | undefined;
  let seqHash: string | undefined;
  let nonEvents = 0;
  let firstNonEvent: AuditProblem | undefined;
  const tornWrites: number[] = [];
  let tornTail = false;
  // A complete line that looks like the start of event `seq` cut short: whether it was a torn write
  // that an appender continued after is known only from the line that follows it.
  let maybeTorn: { line: number; seq: number; hash: string; problem: string } | undefined;
  const notAnEvent = (line: number, complete: boolean, text: string): void => {
    if (!complete) return;
    nonEvents++;
    firstNonEvent ??= { line, problem: text };
  };
  /** The line after a possibly torn one decides: `next` is the event on it, if it is one. */
  const settleTorn = (next: AuditEvent | undefined): void => {
    if (maybeTorn === undefined) return;
    const torn = maybeTorn;
    maybeTorn = undefined;
    if (next !== undefined && next.prev === torn.hash && (next.seq === torn.seq || next.seq === torn.seq + 1)) {
      tornWrites.push(torn.line);
      problem(torn.line, `a write of event ${torn.seq} was cut short (a crash or a full disk); the log continues after it, chained`);
      return;
    }
    problem(torn.line, torn.problem);
    notAnEvent(torn.line, true, torn.problem);
  };

  const problem = (line: number, text: string): void => {
    if (problems.length < MAX_PROBLEMS - 1) problems.push({ line, problem: text });
    else more++;
  };

  // The line being read: its hash so far and its bytes (up to MAX_LINE).
  let hash: Hash = createHash('sha256');
  let parts: Buffer[] = [];
  let bytes = 0;

  const endLine = (complete: boolean): void => {
    lineNo++;
    const digest = hash.digest('hex');
    const prevOfThis = expectedPrev;
    expectedPrev = digest;
    const data = bytes > MAX_LINE ? undefined : Buffer.concat(parts, bytes);
    hash = createHash('sha256');
    parts = [];
    const size = bytes;
    bytes = 0;
    if (!complete) {
      tornTail = true;
      problem(lineNo, 'the last line has no newline: a write was interrupted (crash or full disk); the event on it may be incomplete');
    }
    if (data === undefined) {
      settleTorn(undefined);
      problem(lineNo, `line of ${size} bytes, more than ${MAX_LINE}: not an audit event`);
      notAnEvent(lineNo, complete, `line of ${size} bytes, more than ${MAX_LINE}`);
      return;
    }
    let v: unknown;
    try {
      v = JSON.parse(data.toString('utf8'));
    } catch {
      settleTorn(undefined);
      const torn = complete ? TORN_START.exec(data.toString('utf8')) : null;
      if (torn !== null) {
        maybeTorn = { line: lineNo, seq: Number(torn[1]), hash: digest, problem: 'not valid JSON' };
        return;
      }
      if (complete) problem(lineNo, size === 0 ? 'empty line' : 'not valid JSON');
      notAnEvent(lineNo, complete, size === 0 ? 'empty line' : 'not valid JSON');
      return;
    }
    const what = eventProblem(v);
    settleTorn(what === undefined ? (v as AuditEvent) : undefined);
    if (what !== undefined) {
      problem(lineNo, `not an audit event: ${what}`);
      notAnEvent(lineNo, complete, what);
      return;
    }
    const e = v as AuditEvent;
    if (e.prev !== prevOfThis) {
      chainOk = false;
      problem(
        lineNo,
        lineNo === 1
          ? 'hash chain broken: the first line does not start the chain (lines were removed from the head of the file, or it was replaced)'
          : `hash chain broken: prev is not the hash of line ${lineNo - 1} (that line was changed, or lines were inserted or removed before this one)`,
      );
    }
    if (lastSeq !== undefined && e.seq !== lastSeq + 1) {
      problem(lineNo, `seq ${e.seq} follows seq ${lastSeq}: ${e.seq > lastSeq ? 'events are missing (failed writes, or removed lines)' : 'seq went backwards'}`);
    }
    lastSeq = e.seq;
    if (options.hashOfSeq === e.seq && seqHash === undefined) seqHash = digest;
    if (f.matches(e)) {
      events.push(e);
      if (f.limit !== undefined && events.length > 2 * f.limit) events.splice(0, events.length - f.limit);
    }
  };

  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new AuditLogError(path, 'not a regular file');
    const buf = Buffer.alloc(CHUNK);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, null);
      if (bytesRead === 0) break;
      let from = 0;
      for (;;) {
        const nl = buf.indexOf(0x0a, from);
        const end = nl < 0 || nl >= bytesRead ? bytesRead : nl;
        if (end > from) {
          const piece = buf.subarray(from, end);
          hash.update(piece);
          if (bytes + piece.length <= MAX_LINE) parts.push(Buffer.from(piece));
          bytes += piece.length;
        }
        if (end === bytesRead) break;
        endLine(true);
        from = end + 1;
      }
    }
    if (bytes > 0) endLine(false);
    settleTorn(undefined);
  } finally {
    await fh.close();
  }
  if (more > 0) problems.push({ line: lineNo, problem: `… and ${more} more problem(s) not listed` });
  const out = f.limit !== undefined && events.length > f.limit ? events.slice(events.length - f.limit) : events;
  return { events: out, problems, chainOk, lines: lineNo, nonEvents, firstNonEvent, tornWrites, tornTail, head: expectedPrev, lastSeq, seqHash };
}

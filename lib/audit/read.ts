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
  /** sha256 of the last line: compare it with a copy kept elsewhere to detect a cut tail. */
  head: string;
}

const CHUNK = 64 * 1024;
/** Lines longer than this are hashed but not parsed. */
const MAX_LINE = 1024 * 1024;
export const MAX_PROBLEMS = 1000;

/**
 * Reads the log at `path`. Rejects only when the file cannot be read (ENOENT, EACCES, not a regular
 * file) or the filter is invalid (InvalidOptionError).
 */
export async function readAuditLog(path: string, filter?: AuditFilter): Promise<AuditReadResult> {
  const f = compileFilter(filter);
  const fh = await fs.promises.open(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const events: AuditEvent[] = [];
  const problems: AuditProblem[] = [];
  let more = 0;
  let chainOk = true;
  let lineNo = 0;
  let expectedPrev = AUDIT_GENESIS;
  let lastSeq: number | undefined;
  let nonEvents = 0;
  let firstNonEvent: AuditProblem | undefined;
  const notAnEvent = (line: number, complete: boolean, text: string): void => {
    if (!complete) return;
    nonEvents++;
    firstNonEvent ??= { line, problem: text };
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
    if (!complete) problem(lineNo, 'the last line has no newline: a write was interrupted (crash or full disk); the event on it may be incomplete');
    if (data === undefined) {
      problem(lineNo, `line of ${size} bytes, more than ${MAX_LINE}: not an audit event`);
      notAnEvent(lineNo, complete, `line of ${size} bytes, more than ${MAX_LINE}`);
      return;
    }
    let v: unknown;
    try {
      v = JSON.parse(data.toString('utf8'));
    } catch {
      if (complete) problem(lineNo, size === 0 ? 'empty line' : 'not valid JSON');
      notAnEvent(lineNo, complete, size === 0 ? 'empty line' : 'not valid JSON');
      return;
    }
    const what = eventProblem(v);
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
  } finally {
    await fh.close();
  }
  if (more > 0) problems.push({ line: lineNo, problem: `… and ${more} more problem(s) not listed` });
  const out = f.limit !== undefined && events.length > f.limit ? events.slice(events.length - f.limit) : events;
  return { events: out, problems, chainOk, lines: lineNo, nonEvents, firstNonEvent, head: expectedPrev };
}

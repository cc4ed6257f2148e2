/**
 * The audit log's line format, bounds and filters, shared by the writer and the reader.
 *
 * One event is one line: `JSON.stringify` of the event and a newline. JSON escapes newlines and
 * control characters inside strings, so no string a plugin chooses (its name, an error message used as
 * a reason) can end a line early or forge another event. Each line is at most AUDIT_MAX_LINE_BYTES:
 * longer strings and details are cut (see the limits below) and marked as cut.
 */
import { createHash } from 'node:crypto';
import { InvalidOptionError } from '../errors';

export type AuditSeverity = 'info' | 'notice' | 'warning' | 'critical';

export interface AuditEventInput {
  severity: AuditSeverity;
  /** `verify`, `permission`, `load`, `unload`, `reload`, `violation`, `quarantine`, `restart`, `refused`, …: `^[a-z][a-z0-9_.:-]{0,63}$`. */
  event: string;
  /** Any string (it may come from an untrusted manifest); cut at AUDIT_MAX_NAME characters. */
  plugin?: string;
  /** Cut at AUDIT_MAX_NAME characters. */
  version?: string;
  /** Cut at AUDIT_MAX_REASON characters. */
  reason?: string;
  /**
   * JSON data. Stored as JSON.stringify gives it (functions and undefined dropped); more than
   * AUDIT_MAX_DETAILS_BYTES of JSON is replaced by `{ _truncated: true, _bytes, _preview }`, a value
   * JSON.stringify refuses (a cycle, a BigInt) by `{ _unserializable: message }`.
   */
  details?: Record<string, unknown>;
}

export interface AuditEvent extends AuditEventInput {
  /** ISO 8601, UTC, milliseconds: 2030-01-31T12:00:00.000Z. */
  time: string;
  /** 1 for the first event of a file, then +1 per event. */
  seq: number;
  /** sha256 (hex) of the bytes of the previous line, without its newline; 64 zeros for the first line. */
  prev: string;
}

export interface AuditFilter {
  plugin?: string;
  /** One event name or several. */
  event?: string | string[];
  /** This severity and the more severe ones. */
  minSeverity?: AuditSeverity;
  /** Events at or after this time. */
  since?: Date | string;
  /** Events at or before this time. */
  until?: Date | string;
  /** Only the last N events that match. */
  limit?: number;
}

export const AUDIT_SEVERITIES: readonly AuditSeverity[] = Object.freeze(['info', 'notice', 'warning', 'critical']);
/** Largest line written, newline included. */
export const AUDIT_MAX_LINE_BYTES = 16 * 1024;
/** `plugin` and `version` are cut beyond this many UTF-16 units. */
export const AUDIT_MAX_NAME = 256;
/** `reason` is cut beyond this many UTF-16 units (less if the line would still be too long). */
export const AUDIT_MAX_REASON = 4096;
/** `details` beyond this many bytes of JSON are replaced by a truncation marker with a preview. */
export const AUDIT_MAX_DETAILS_BYTES = 8 * 1024;
/** `prev` of the first line. */
export const AUDIT_GENESIS = '0'.repeat(64);

const EVENT_NAME = /^[a-z][a-z0-9_.:-]{0,63}$/;
const INPUT_FIELDS = new Set(['severity', 'event', 'plugin', 'version', 'reason', 'details']);

export function severityRank(s: AuditSeverity): number {
  return AUDIT_SEVERITIES.indexOf(s);
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Cuts `s` to at most `max` UTF-16 units without splitting a surrogate pair, marking the cut. */
export function cut(s: string, max: number): string {
  if (s.length <= max) return s;
  let end = max;
  const c = s.charCodeAt(end - 1);
  if (c >= 0xd800 && c <= 0xdbff) end--;
  return `${s.slice(0, end)}…[cut ${s.length - end} chars]`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Validates an event given to append(). Throws InvalidOptionError naming the field. */
export function checkInput(e: AuditEventInput): void {
  if (!isPlainObject(e)) throw new InvalidOptionError('audit', 'an audit event must be an object { severity, event, plugin?, version?, reason?, details? }');
  for (const k of Object.keys(e)) {
    if (!INPUT_FIELDS.has(k)) throw new InvalidOptionError(`audit.${k}`, 'unknown field; put extra data in details');
  }
  if (!AUDIT_SEVERITIES.includes(e.severity)) throw new InvalidOptionError('audit.severity', `must be one of ${AUDIT_SEVERITIES.join(', ')}`);
  if (typeof e.event !== 'string' || !EVENT_NAME.test(e.event)) {
    throw new InvalidOptionError('audit.event', `must match ${EVENT_NAME}, like 'load' or 'violation'`);
  }
  for (const k of ['plugin', 'version', 'reason'] as const) {
    if (e[k] !== undefined && typeof e[k] !== 'string') throw new InvalidOptionError(`audit.${k}`, 'must be a string');
  }
  if (e.details !== undefined && !isPlainObject(e.details)) throw new InvalidOptionError('audit.details', 'must be a plain object of JSON data');
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/** `details` as they will be stored: a fresh JSON copy, bounded. */
function boundDetails(details: Record<string, unknown>, maxBytes: number, previewChars: number): Record<string, unknown> {
  let json: string | undefined;
  try {
    json = JSON.stringify(details);
  } catch (e) {
    let message = 'JSON.stringify failed';
    try {
      message = cut(String((e as Error).message), 256);
    } catch {
      // keep the generic message
    }
    return { _unserializable: message };
  }
  if (json === undefined) return {};
  const bytes = Buffer.byteLength(json);
  if (bytes > maxBytes) return { _truncated: true, _bytes: bytes, _preview: cut(json, previewChars) };
  return JSON.parse(json) as Record<string, unknown>;
}

/**
 * Builds the stored event and its line (without the newline) from a validated input. Strings are cut
 * and details bounded so that the line, newline included, fits in AUDIT_MAX_LINE_BYTES.
 */
export function buildEvent(input: AuditEventInput, time: string, seq: number, prev: string): { event: AuditEvent; line: string } {
  // Budgets shrink step by step; the last step fits any input: every UTF-16 unit takes at most
  // 6 bytes in JSON (\uXXXX), so 256 + 256 + 256 units of strings stay far below the limit.
  const steps: Array<[number, number, number]> = [
    // [reason chars, details bytes, details preview chars]
    [AUDIT_MAX_REASON, AUDIT_MAX_DETAILS_BYTES, 1024],
    [1024, 2048, 256],
    [256, 0, 0],
  ];
  let event: AuditEvent | undefined;
  let line = '';
  for (const [reasonMax, detailsMax, previewMax] of steps) {
    event = { seq, time, severity: input.severity, event: input.event } as AuditEvent;
    if (input.plugin !== undefined) event.plugin = cut(input.plugin, AUDIT_MAX_NAME);
    if (input.version !== undefined) event.version = cut(input.version, AUDIT_MAX_NAME);
    if (input.reason !== undefined) event.reason = cut(input.reason, reasonMax);
    if (input.details !== undefined) {
      event.details = detailsMax > 0 ? boundDetails(input.details, detailsMax, previewMax) : { _truncated: true };
    }
    event.prev = prev;
    line = JSON.stringify(event);
    if (Buffer.byteLength(line) + 1 <= AUDIT_MAX_LINE_BYTES) break;
  }
  return { event: deepFreeze(event!), line };
}

/** Checks the shape of a parsed line. Returns what is wrong, or undefined for a valid event. */
export function eventProblem(v: unknown): string | undefined {
  if (!isPlainObject(v)) return 'not a JSON object';
  if (typeof v.seq !== 'number' || !Number.isSafeInteger(v.seq) || v.seq < 1) return 'seq is not a positive integer';
  if (typeof v.time !== 'string' || Number.isNaN(Date.parse(v.time))) return 'time is not a date';
  if (!AUDIT_SEVERITIES.includes(v.severity as AuditSeverity)) return 'severity is not one of info, notice, warning, critical';
  if (typeof v.event !== 'string' || !EVENT_NAME.test(v.event)) return 'event is not an event name';
  if (typeof v.prev !== 'string' || !/^[0-9a-f]{64}$/.test(v.prev)) return 'prev is not a sha256 hex digest';
  for (const k of ['plugin', 'version', 'reason']) if (v[k] !== undefined && typeof v[k] !== 'string') return `${k} is not a string`;
  if (v.details !== undefined && !isPlainObject(v.details)) return 'details is not an object';
  return undefined;
}

/** A filter with its fields checked and converted, ready to test events. */
export interface CompiledFilter {
  matches(e: AuditEvent): boolean;
  limit: number | undefined;
}

function toTime(field: string, v: Date | string): number {
  const ms = v instanceof Date ? v.getTime() : typeof v === 'string' ? Date.parse(v) : NaN;
  if (Number.isNaN(ms)) throw new InvalidOptionError(field, 'must be a Date or an ISO 8601 date/time string');
  return ms;
}

export function compileFilter(filter: AuditFilter | undefined): CompiledFilter {
  if (filter === undefined) return { matches: () => true, limit: undefined };
  if (!isPlainObject(filter as unknown)) throw new InvalidOptionError('filter', 'must be an object');
  const { plugin, event, minSeverity, since, until, limit } = filter;
  if (plugin !== undefined && typeof plugin !== 'string') throw new InvalidOptionError('filter.plugin', 'must be a string');
  let events: Set<string> | undefined;
  if (event !== undefined) {
    const list = Array.isArray(event) ? event : [event];
    if (!list.every((x) => typeof x === 'string')) throw new InvalidOptionError('filter.event', 'must be a string or an array of strings');
    events = new Set(list);
  }
  if (minSeverity !== undefined && !AUDIT_SEVERITIES.includes(minSeverity)) {
    throw new InvalidOptionError('filter.minSeverity', `must be one of ${AUDIT_SEVERITIES.join(', ')}`);
  }
  const rank = minSeverity === undefined ? 0 : severityRank(minSeverity);
  const from = since === undefined ? -Infinity : toTime('filter.since', since);
  const to = until === undefined ? Infinity : toTime('filter.until', until);
  if (limit !== undefined && (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1)) {
    throw new InvalidOptionError('filter.limit', 'must be a positive integer');
  }
  return {
    limit,
    matches(e) {
      if (plugin !== undefined && e.plugin !== plugin) return false;
      if (events !== undefined && !events.has(e.event)) return false;
      if (rank > 0 && severityRank(e.severity) < rank) return false;
      if (from !== -Infinity || to !== Infinity) {
        const t = Date.parse(e.time);
        if (!(t >= from && t <= to)) return false;
      }
      return true;
    },
  };
}

/** Applies a compiled filter to a list, keeping the last `limit` matches. */
export function applyFilter(events: readonly AuditEvent[], f: CompiledFilter): AuditEvent[] {
  const out = events.filter((e) => f.matches(e));
  return f.limit !== undefined && out.length > f.limit ? out.slice(out.length - f.limit) : out;
}

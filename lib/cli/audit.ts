/** `warden audit`: show, filter and verify an audit log. */
import * as fs from 'node:fs';
import { readAuditLog, AuditReadResult } from '../audit/read';
import { AUDIT_SEVERITIES, AuditEvent, AuditFilter, AuditSeverity } from '../audit/format';
import { flag, list, parse, positiveInt, run, str, UsageError } from './trust-common';
import { summarize, summaryText } from './audit-summary';
import { parseTrustList } from '../trust/document';
import { terminalSafe } from '../terminal-text';
import { DEFAULT_MAX_BYTES, readBounded } from '../trust/io';

const USAGE = `usage: warden audit [--file FILE] [--plugin NAME] [--event E]... [--severity MIN]
                    [--since WHEN] [--until WHEN] [--limit N] [--json] [--verify [--checkpoint FILE]]
                    [--summary [--trust LIST]]

Shows the events of an audit log (time, severity, event, plugin, reason), oldest first.

  --file FILE       the log; default: $WARDEN_AUDIT_LOG (one of the two is required)
  --plugin NAME     only this plugin's events
  --event E         only these events (repeat, or separate with commas): load, violation, ...
  --severity MIN    only MIN and above: ${AUDIT_SEVERITIES.join(' < ')}
  --since WHEN      events at or after WHEN: a date (2030-01-31, 2030-01-31T12:00Z) or an age (30m, 12h, 7d, 2w)
  --until WHEN      events at or before WHEN
  --limit N         only the last N events that match
  --json            one JSON event per line instead of the table
  --verify          check the hash chain and print a summary instead of the events
  --checkpoint FILE with --verify: the host's checkpoint (audit checkpoint option): the log must
                    still hold the event it names, unchanged
  --summary         per plugin: loads, crashes, violations by kind, restarts, quarantines, and its
                    reputation score with each signal's contribution (with --json: one object)
  --trust LIST      with --summary: take trust levels and entry/publisher ages from this trust list
                    (read, signatures not checked)

Exit status (--verify): 0 intact (writes cut short by a crash and continued after are reported, and
are part of the chain); 1 the file cannot be read, the chain is broken or a line is not a chained
event; 2 a bad option; 3 the tail was cut (the log ends before the checkpoint's event); 4 rewritten
(the checkpoint's event is there but differs); 5 the last write was cut short and nothing follows it
yet (a crash; the next append continues cleanly). Damaged lines are reported on stderr. Without a
checkpoint the chain shows edits, insertions and deletions in the middle of the file, but not lines
cut off the end nor a file rewritten as a whole by someone who can write it.
`;

/** An age ("30m", "12h", "7d", "2w", "45s") before now, or a date. */
function parseTime(value: string, option: string, now = Date.now()): Date {
  const m = /^([1-9][0-9]{0,6})([smhdw])$/.exec(value);
  if (m !== null) {
    const unit = { s: 1, m: 60, h: 3600, d: 86400, w: 7 * 86400 }[m[2] as 's' | 'm' | 'h' | 'd' | 'w'];
    return new Date(now - Number(m[1]) * unit * 1000);
  }
  if (/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2})?(\.\d+)?(Z|[+-]\d{2}:\d{2})?)?$/.test(value)) {
    const d = new Date(value);
    if (!Number.isNaN(d.getTime())) return d;
  }
  throw new UsageError(`${option} must be an age like 30m, 12h, 7d or a date like 2030-01-31, got '${value}'`);
}

function cell(s: string | undefined, max: number): string {
  const t = terminalSafe(s ?? '-');
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

function table(events: AuditEvent[]): string {
  const rows = events.map((e) => [
    e.time,
    e.severity,
    cell(e.event, 24),
    cell(e.plugin === undefined ? undefined : e.version === undefined ? e.plugin : `${e.plugin}@${e.version}`, 40),
    cell(e.reason, 160),
  ]);
  const head = ['TIME', 'SEVERITY', 'EVENT', 'PLUGIN', 'REASON'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [fmt(head), ...rows.map(fmt)].join('\n') + '\n';
}

/** The checkpoint an AuditLog keeps ({ seq, head }); a bad one is a usage error naming the file. */
function readCheckpoint(file: string): { seq: number; head: string } {
  let v: unknown;
  try {
    v = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UsageError(`--checkpoint ${file}: cannot be read as JSON (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const cp = v as { seq?: unknown; head?: unknown };
  if (typeof v !== 'object' || v === null || !Number.isSafeInteger(cp.seq) || (cp.seq as number) < 1 || typeof cp.head !== 'string' || !/^[0-9a-f]{64}$/.test(cp.head)) {
    throw new UsageError(`--checkpoint ${file}: not a checkpoint ({ "seq": N, "head": "<sha256>" }, written by the audit log's checkpoint option)`);
  }
  return { seq: cp.seq as number, head: cp.head };
}

function reportProblems(file: string, r: AuditReadResult, max = 20): void {
  for (const p of r.problems.slice(0, max)) process.stderr.write(`warden audit: ${terminalSafe(file)}:${p.line}: ${p.problem}\n`);
  if (r.problems.length > max) process.stderr.write(`warden audit: … ${r.problems.length - max} more problem line(s)\n`);
}

export async function audit(args: string[]): Promise<number> {
  return run('audit', USAGE, args, async () => {
    const p = parse(args, {
      file: { type: 'string' }, plugin: { type: 'string' }, event: { type: 'string', multiple: true }, severity: { type: 'string' },
      since: { type: 'string' }, until: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' }, verify: { type: 'boolean' }, checkpoint: { type: 'string' },
      summary: { type: 'boolean' }, trust: { type: 'string' },
    }, { min: 0, max: 0, names: '' });
    const file = str(p, 'file') ?? (process.env.WARDEN_AUDIT_LOG || undefined);
    if (file === undefined) throw new UsageError('--file FILE is required (or set WARDEN_AUDIT_LOG to the audit log)');
    const filter: AuditFilter = {};
    const plugin = str(p, 'plugin');
    if (plugin !== undefined) filter.plugin = plugin;
    const events = list(p, 'event').flatMap((e) => e.split(',')).map((e) => e.trim()).filter((e) => e !== '');
    if (events.length > 0) filter.event = events;
    const severity = str(p, 'severity');
    if (severity !== undefined) {
      if (!(AUDIT_SEVERITIES as readonly string[]).includes(severity)) throw new UsageError(`--severity must be one of ${AUDIT_SEVERITIES.join(', ')}, got '${severity}'`);
      filter.minSeverity = severity as AuditSeverity;
    }
    const since = str(p, 'since');
    if (since !== undefined) filter.since = parseTime(since, '--since');
    const until = str(p, 'until');
    if (until !== undefined) filter.until = parseTime(until, '--until');
    const limit = str(p, 'limit');
    if (limit !== undefined) filter.limit = positiveInt(limit, '--limit');

    const checkpointFile = str(p, 'checkpoint');
    if (checkpointFile !== undefined && !flag(p, 'verify')) throw new UsageError('--checkpoint goes with --verify');
    const checkpoint = checkpointFile === undefined ? undefined : readCheckpoint(checkpointFile);
    const r = await readAuditLog(file, filter, { hashOfSeq: checkpoint?.seq });
    reportProblems(file, r);
    if (flag(p, 'verify')) {
      if (!r.chainOk) {
        process.stdout.write(`BROKEN: ${terminalSafe(file)}: the hash chain is broken (see the lines above); ${r.lines} line(s)\n`);
        return 1;
      }
      // Lines that are not events are outside the chain: a file of them proves nothing.
      if (r.firstNonEvent !== undefined) {
        process.stdout.write(`BROKEN: ${terminalSafe(file)}: line ${r.firstNonEvent.line} is not a chained audit event (${terminalSafe(r.firstNonEvent.problem)}); ${r.nonEvents} of ${r.lines} line(s) are not events\n`);
        return 1;
      }
      if (checkpoint !== undefined && (r.lastSeq === undefined || r.lastSeq < checkpoint.seq)) {
        process.stdout.write(`CUT: ${terminalSafe(file)}: the log ends at event ${r.lastSeq ?? 'none'}, but the checkpoint names event ${checkpoint.seq}: its tail was cut off\n`);
        return 3;
      }
      if (checkpoint !== undefined && r.seqHash !== checkpoint.head) {
        process.stdout.write(`REWRITTEN: ${terminalSafe(file)}: event ${checkpoint.seq} differs from the one the checkpoint recorded (sha256 ${r.seqHash ?? 'none'}, expected ${checkpoint.head}): the log was rewritten\n`);
        return 4;
      }
      const torn = r.tornWrites.length > 0 ? `, ${r.tornWrites.length} write(s) cut short by a crash and continued after (line ${r.tornWrites.join(', ')})` : '';
      const against = checkpoint === undefined ? '' : `, event ${checkpoint.seq} matches the checkpoint`;
      if (r.tornTail) {
        process.stdout.write(`TORN: ${terminalSafe(file)}: hash chain intact over ${r.lines} line(s)${torn}${against}; the last line is a write cut short (a crash): the next append ends it and continues\n`);
        return 5;
      }
      const note = r.problems.length > 0 ? `, ${r.problems.length} problem(s) reported above` : '';
      process.stdout.write(`OK: ${terminalSafe(file)}: hash chain intact over ${r.lines} line(s)${torn}${against}${note}; last line sha256 ${r.head}\n`);
      return 0;
    }
    const trustFile = str(p, 'trust');
    if (trustFile !== undefined && !flag(p, 'summary')) throw new UsageError('--trust goes with --summary');
    if (flag(p, 'summary')) {
      const entries = trustFile === undefined ? undefined : parseTrustList(await readBounded(trustFile, DEFAULT_MAX_BYTES), { file: trustFile }).signed.entries;
      const rows = summarize(r.events, entries);
      process.stdout.write(flag(p, 'json') ? `${terminalSafe(JSON.stringify(rows))}\n` : summaryText(rows, terminalSafe));
      return 0;
    }
    if (flag(p, 'json')) {
      // JSON.stringify leaves C1 controls and bidi overrides raw; escape them too (still valid JSON).
      process.stdout.write(r.events.map((e) => `${terminalSafe(JSON.stringify(e))}\n`).join(''));
    } else if (r.events.length === 0) {
      process.stderr.write(`warden audit: no matching event in ${terminalSafe(file)} (${r.lines} line(s))\n`);
    } else {
      process.stdout.write(table(r.events));
    }
    return 0;
  });
}

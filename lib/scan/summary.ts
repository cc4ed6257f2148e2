/** A scan report in a few words, and in lines for a terminal. */
import { terminalSafe } from '../terminal-text';
import type { Finding, ScanReport } from './types';

/** Counts and the permission diff: what an audit line or a one-line message needs. */
export interface ScanSummary {
  findings: number;
  /** Files the scan could not read through, or left out at its limits. */
  unseen: number;
  implied: string[];
  usedNotRequested: string[];
  requestedUnused: string[];
  complete: boolean;
  /** Findings that hide or widen what the code does: eval/Function, dynamic require, native addons, build and install scripts, code not read through. */
  risky: number;
}

/** Kinds that widen or hide what the code does, whatever permission they imply. */
const RISKY_KINDS: ReadonlySet<Finding['kind']> = new Set(['dynamic-require', 'native-addon', 'binding-gyp', 'install-script', 'unparsed', 'not-scanned']);

/** Risky: code that could do anything ('*': eval, Function, process.binding...) or that the scan cannot follow. */
function isRisky(f: Finding): boolean {
  return f.permission === '*' || RISKY_KINDS.has(f.kind);
}

export function summarize(report: ScanReport): ScanSummary {
  return {
    findings: report.findings.length,
    unseen: report.findings.filter((f) => f.kind === 'unparsed' || f.kind === 'not-scanned').length,
    implied: report.implied,
    usedNotRequested: report.diff.usedNotRequested,
    requestedUnused: report.diff.requestedUnused,
    complete: report.diff.complete,
    risky: report.findings.filter(isRisky).length,
  };
}

/** One sentence: what the code uses and how it compares with the request. */
export function summaryLine(s: ScanSummary): string {
  const used = s.implied.length === 0 ? 'uses no permission' : `uses ${s.implied.join(', ')}`;
  const parts = [`${s.findings} finding(s), ${used}`];
  if (s.usedNotRequested.length > 0) parts.push(`not requested: ${s.usedNotRequested.join(', ')}`);
  if (s.requestedUnused.length > 0) parts.push(`requested but ${s.complete ? 'unused' : 'not seen used'}: ${s.requestedUnused.join(', ')}`);
  if (s.unseen > 0) parts.push(`${s.unseen} file(s) not read through`);
  return parts.join('; ');
}

/**
 * The findings and the diff, for a terminal. File names, link targets and script text come from the
 * plugin: control characters (escape sequences, carriage returns, newlines) and bidi overrides would
 * let it rewrite or hide lines of the report, so they are shown as escapes (\u001b, \u202e).
 */
export function formatReport(report: ScanReport): string {
  const lines: string[] = [];
  for (const f of report.findings) {
    const where = f.line === 0 ? terminalSafe(f.file) : `${terminalSafe(f.file)}:${f.line}:${f.column + 1}`;
    lines.push(`${where}  ${f.kind}  ${f.permission ?? '-'}  ${terminalSafe(f.what)}`);
  }
  if (report.findings.length === 0) lines.push('no findings');
  const d = report.diff;
  lines.push('');
  lines.push(`used, not requested: ${d.usedNotRequested.length === 0 ? '-' : d.usedNotRequested.join(', ')}`);
  lines.push(`requested, ${d.complete ? 'never used' : 'not seen used (some code was not seen through: not conclusive)'}: ${d.requestedUnused.length === 0 ? '-' : d.requestedUnused.join(', ')}`);
  lines.push(`${report.stats.files} file(s), ${report.stats.bytes} bytes parsed in ${report.stats.ms} ms`);
  return lines.join('\n') + '\n';
}

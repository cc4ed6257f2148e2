/** How the plugin host words its audit lines: severities, errors, network decisions. */
import type { AuditEventInput, AuditSeverity } from '../audit';
import type { NetworkEvent } from '../net/policy';
import { versionOf, type PluginRecord } from './record';

/** A violation that only hostile code commits is critical; running out of a limit is a warning. */
export function severityOf(kind: string): AuditSeverity {
  return kind === 'seccomp' || kind === 'protocol' || kind === 'flood' || kind === 'network' ? 'critical' : 'warning';
}

export function errorFields(e: unknown): { message: string; code?: string } {
  if (e instanceof Error) return { message: e.message, code: (e as { code?: string }).code };
  return { message: String(e) };
}

/** An audit line, of plugin `r` (name and version) if given; details are copied as plain JSON. */
export function auditEvent(severity: AuditSeverity, event: string, r: PluginRecord | undefined, reason: string, details?: Record<string, unknown>): AuditEventInput {
  const e: AuditEventInput = { severity, event, reason };
  if (r !== undefined) {
    e.plugin = r.name;
    const v = versionOf(r);
    if (v !== undefined) e.version = v;
  }
  if (details !== undefined) e.details = JSON.parse(JSON.stringify(details)) as Record<string, unknown>;
  return e;
}

/** The reason text of a `network` audit line, and its severity (refusals are warnings). */
export function networkLine(e: NetworkEvent): { severity: AuditSeverity; reason: string } {
  const where = e.name ?? (e.address === undefined ? '' : e.port === undefined ? e.address : `${e.address}:${e.port}`);
  const what = e.type === 'closed' ? `closed ${where} (${e.bytesOut ?? '?'} bytes out, ${e.bytesIn ?? '?'} in)` : e.type === 'connected' ? `${e.errno === undefined ? 'connected' : `failed (${e.errno})`} ${where}` : `${e.decision} ${e.type} ${where}${e.reason === undefined ? '' : `: ${e.reason}`}`;
  return { severity: e.decision === 'refused' ? 'warning' : 'info', reason: what };
}

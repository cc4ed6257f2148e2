/** The audit log: an append-only, hash-chained JSON-lines record of what the plugin host did and saw. */
export { AuditLog, AuditLogOptions, AuditCheckpoint } from './log';
export { readAuditLog, AuditReadResult, AuditProblem } from './read';
export {
  AuditSeverity, AuditEventInput, AuditEvent, AuditFilter, AUDIT_SEVERITIES, AUDIT_MAX_LINE_BYTES, AUDIT_MAX_NAME,
  AUDIT_MAX_REASON, AUDIT_MAX_DETAILS_BYTES, AUDIT_GENESIS,
} from './format';

/** The capability scan: what a plugin's code reaches, as advice next to the permissions it asks for. */
export { scanPlugin, scanTree, ScanWorker, type TreeLike } from './scan';
export { summarize, summaryLine, formatReport, type ScanSummary } from './summary';
export { diffPermissions, type ImpliedPermission, type PermissionDiff } from './capabilities';
export type { Finding, FindingKind, ScanLimits, ScanOptions, ScanReport } from './types';

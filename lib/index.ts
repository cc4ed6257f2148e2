/** The public API of warden. Everything a host uses is exported from here. */
export { WardenError, InvalidOptionError, ChannelError, CallTimeoutError, RemoteError, SandboxViolationError, type ObservedViolation } from './errors';
export { Sandbox } from './sandbox/sandbox';
export { releasePreparedMounts } from './sandbox/plan';
export { SandboxSetupError } from './sandbox/errors';
export type {
  SpawnOptions, ExitResult, Violation, BindMount, TmpfsMount, StdioOption, NamespaceName, RlimitName, RlimitValue,
} from './sandbox/types';
export type { SeccompAction, SeccompArgCheck, SeccompRule, SeccompPolicy } from './policy/seccomp';
export { validateSeccompPolicy } from './policy/seccomp';
export type { SeccompProfileName, SeccompProfileOptions } from './policy/profiles';
export { resolveSeccompProfile, SECCOMP_PROFILE_NAMES } from './policy/profiles';
export * from './trust';
export { spawnNode } from './process/spawn-node';
export type { SpawnNodeOptions } from './process/spawn-node';
export { PluginProcess } from './process/plugin-process';
export type { RunnerOptions, RunnerExit } from './process/plugin-process';
export type { HostApi } from './runner/main';
export type { CallContext, CallOptions, ChannelLimits, PeerLimits } from './channel/rpc';
export { PLUGIN_PEER_LIMITS } from './channel/rpc';
export { RunnerPool } from './pool';
export type { RunnerPoolOptions, RunnerPoolStats, PooledPlugin } from './pool';
export { UnknownHookError, HookTimeoutError, HookAbortError } from './errors';
export * from './hooks';
export { AuditLogError } from './errors';
export * from './audit';
export * from './plugins';
export * from './reputation';
export { PluginObserver, METRIC_NAMES, DEFAULT_THRESHOLDS, HISTORY_SERIES, LATENCY_BUCKETS } from './metrics';
export type { ObserverOptions, Thresholds, HistorySeries, HistoryView, HostUsage, PluginUsage, PressureEvent, PressureKind } from './metrics';
export { scanPlugin, summarize as summarizeScan, formatReport as formatScanReport } from './scan';
export type { Finding, FindingKind, ScanLimits, ScanOptions, ScanReport, ScanSummary, ImpliedPermission, PermissionDiff } from './scan';
export { Dashboard } from './dashboard';
export type { DashboardOptions } from './dashboard';
export { BusError, FileDataAdapter, HostBus, HOST_SENDER, DataQuotaError, parseBusGrant } from './bus';
export type { BusOptions, BusGrant, BusObserver, DataAdapter } from './bus';

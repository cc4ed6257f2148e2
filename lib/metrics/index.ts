/** Metrics, usage history and early warnings of a plugin host (used by lib/plugins, never using it). */
export { PluginObserver, type ObserverOptions } from './observer';
export { registerMetrics, METRIC_NAMES, type PromRegistryLike } from './prometheus';
export { DEFAULT_THRESHOLDS, type Thresholds } from './pressure';
export { HISTORY_SERIES, type HistorySeries, type HistoryView } from './history';
export { LATENCY_BUCKETS } from './latency';
export type { HostUsage, PluginUsage, PressureEvent, PressureKind, ObserverSource, ObservedInstance, ObservedPlugin } from './types';

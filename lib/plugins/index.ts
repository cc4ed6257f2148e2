/** The plugin host: manifests, permissions, lifecycle, hot reload, auto-unload. */
export * from './errors';
export { PluginManifest, readManifest, HOOK_NAME_RE } from './manifest';
export { Permission, parsePermission, permissionToString, decidePermissions, sandboxOptionsFor, covers, PERMISSION_KINDS } from './permissions';
export { PluginLimits, PluginLimitsInput, effectiveLimits, parsePluginLimits, trustEntryLimits } from './limits';
export { LevelCeilingError, checkLevelCeiling, aboveCeiling } from './levels';
export { discoverPlugins, Discovered } from './discovery';
export { PluginReason, PluginReasonKind } from './reason';
export { PluginHost, PluginHostOptions, WarmPoolOptions, PluginInfo, PluginStatus, PluginStatusEvent, PluginLauncher, LoadProgressEvent } from './plugin-host';

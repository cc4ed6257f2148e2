/** The plugin bus: events, services and shared data between plugins, as their trust entries grant. */
export { Bus, BusError, BusMember, HOST_SENDER, type BusAudit, type BusObserver, type BusOptions, type BusPeer, type BusSettings } from './bus';
export { BusRights, busGrantToString, decideBusGrants, isBusGrant, parseBusGrant, parseDeclarations, type BusGrant } from './grants';
export { DataQuotaError, DataStore, FileDataAdapter, type DataAdapter, type DataLimits } from './data';
export { HostBus } from './host-bus';

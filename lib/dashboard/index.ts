/** The host's read-only dashboard (used by lib/plugins, never using it). */
export { Dashboard, type DashboardOptions, type DashboardSource } from './server';

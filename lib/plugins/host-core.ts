/**
 * What the parts of the plugin host share: PluginHost holds the state and hands this view of it to
 * preparation (prepare.ts), supervision (supervision.ts), the trust list's expiry
 * (trust-expiry.ts) and the reload triggers (reload-triggers.ts), so that each of them reads as a
 * whole in its own file while one object owns the records, the queue and the audit log.
 */
import type { AuditSeverity } from '../audit';
import type { Bus } from '../bus';
import type { HookRegistry } from '../hooks';
import type { VerifiedTrustList } from '../trust/verify';
import type { HostSettings } from './host-options';
import type { LoadScans } from './load-scan';
import type { PluginReason } from './reason';
import type { PluginRecord, PluginStatus } from './record';

export interface HostCore {
  readonly settings: HostSettings;
  readonly records: ReadonlyMap<string, PluginRecord>;
  readonly registry: HookRegistry;
  /** The capability scan at load (audit only); undefined when the host scans nothing (scanAtLoad: false). */
  readonly scans: LoadScans | undefined;
  readonly bus: Bus;
  isClosed(): boolean;
  /** The trust list in force, undefined until one was accepted. */
  trustList(): VerifiedTrustList | undefined;
  /** Reads and verifies the trust list again; refused lists are audited and thrown. */
  refreshTrust(): Promise<VerifiedTrustList>;
  /** Throws ExpiredError if `list` has expired (handling the expiry first). */
  assertNotExpired(list: VerifiedTrustList): void;
  /** One audit line, of the plugin `r` if given. */
  log(severity: AuditSeverity, event: string, r: PluginRecord | undefined, reason: string, details?: Record<string, unknown>): void;
  /** Changes a plugin's status and emits the 'status' event. */
  setStatus(r: PluginRecord, status: PluginStatus, reason?: PluginReason): void;
  emit(event: string, ...args: unknown[]): boolean;
  /** Discovers the plugin directories again (new plugins become idle records). */
  scan(): Promise<void>;
  /** Runs `fn` after everything queued for this plugin (load, reload, unload are serialized). */
  enqueue<T>(r: PluginRecord, fn: () => Promise<T>, evenIfClosed?: boolean): Promise<T>;
  /** Loads the plugin unless it is active; `chain` is the dependency path that asked for it. */
  ensureLoaded(r: PluginRecord, chain: string[]): Promise<void>;
  reload(name: string): Promise<void>;
  /** Inside the plugin's queue: stop routing, drain, shutdown, stop the sandbox. */
  doUnload(r: PluginRecord, reason: PluginReason): Promise<void>;
  /** Counts and times one host method called by `plugin` (metrics). */
  timeCall<T>(plugin: string, fn: () => T): T;
}

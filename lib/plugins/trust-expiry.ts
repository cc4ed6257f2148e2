/**
 * Trust is enforced for as long as the host runs, not only when a list is read: at the moment the
 * list in force expires (a timer, re-armed in steps since setTimeout cannot wait longer than
 * 2^31-1 ms), the host stops loading and reloading from it, emits 'trust-expired', writes a
 * `critical` audit line and applies `onTrustExpired` to the running plugins. Every load also checks
 * the expiry itself, before it starts and again before the new instance takes calls, so a late
 * timer (a busy loop, a wall clock jump) cannot let one through. A fresh list ends it.
 */
import { ExpiredError } from '../trust/errors';
import type { VerifiedTrustList } from '../trust/verify';
import { errorFields } from './audit-lines';
import { PluginLoadError } from './errors';
import type { HostCore } from './host-core';
import type { PluginInstance } from './instance';
import type { PluginRecord } from './record';
import { clearRestart } from './supervision';

/** The longest delay setTimeout honours; a longer one fires at once (with a warning). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class TrustExpiry {
  /** The list in force has expired (and no fresh one was accepted since). */
  expired = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly core: HostCore) {}

  /** A list was accepted: it is in force until `list.expires`. Returns whether an expiry ended. */
  accepted(list: VerifiedTrustList): boolean {
    const wasExpired = this.expired;
    this.expired = false;
    this.arm(list);
    return wasExpired;
  }

  /** Fires expire() at the list's expiry: in steps of at most MAX_TIMER_MS, re-checked each time. */
  private arm(list: VerifiedTrustList): void {
    this.stop();
    if (this.core.isClosed()) return;
    const left = list.expires.getTime() - Date.now();
    if (left <= 0) {
      this.expire(list);
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // A step of a long wait, or a timer a little early for the wall clock: wait the rest.
      if (this.core.trustList() === list) this.arm(list);
    }, Math.min(left, MAX_TIMER_MS));
    // The expiry alone must not keep the application alive.
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Throws (ExpiredError) if `list` has expired, handling the expiry first if nothing did yet. */
  assertNotExpired(list: VerifiedTrustList): void {
    const now = Date.now();
    if (now < list.expires.getTime()) return;
    this.expire(list);
    throw new ExpiredError(list.document.signed.expires, new Date(now).toISOString());
  }

  /** After a new instance started: the list it was verified against may have expired meanwhile. */
  async stillTrusted(r: PluginRecord, inst: PluginInstance): Promise<void> {
    const list = this.core.trustList();
    try {
      if (list === undefined) throw new Error('no trust list is in force');
      this.assertNotExpired(list);
    } catch (e) {
      await inst.stop({ drainMs: 0, shutdownMs: 0, now: true });
      this.core.log('warning', 'verify', r, `${r.name} refused after it started: ${errorFields(e).message}`, { code: errorFields(e).code });
      throw new PluginLoadError(r.name, 'verify', e);
    }
  }

  /** The list in force expired: stop trusting it. Idempotent. */
  private expire(list: VerifiedTrustList): void {
    const core = this.core;
    if (core.trustList() !== list || this.expired || core.isClosed()) return;
    this.expired = true;
    const policy = core.settings.onTrustExpired;
    const expires = list.document.signed.expires;
    const running = [...core.records.values()].filter((r) => r.instance !== undefined);
    core.log('critical', 'trust-expired', undefined,
      `trust list version ${list.version} expired at ${expires}: no plugin is loaded or reloaded until a fresh list is accepted; ` +
        `${running.length} running plugin(s) ${policy === 'unload' ? 'unloaded' : 'keep serving'} (onTrustExpired: ${policy})`,
      { version: list.version, expires, policy, running: running.map((r) => r.name) });
    core.emit('trust-expired', { version: list.version, expires, policy });
    for (const r of running) {
      if (policy === 'keep-serving') {
        core.log('warning', 'trust-expired', r, `keeps serving on expired trust list version ${list.version} (onTrustExpired: keep-serving)`);
        continue;
      }
      clearRestart(r);
      core.enqueue(r, () => core.doUnload(r, { kind: 'trust-expired', message: `trust list version ${list.version} expired at ${expires}` })).catch(() => undefined);
    }
  }

  /**
   * A fresh list after an expiry: plugins unloaded for it, or refused because of it, come back
   * (eager) or wait for their next call (lazy).
   */
  restoreAfterExpiry(): void {
    const core = this.core;
    for (const r of core.records.values()) {
      const unloaded = r.status === 'unloaded' && r.reason?.kind === 'trust-expired';
      const refused = r.status === 'failed' && r.reason?.code === 'ERR_TRUST_EXPIRED';
      if (!unloaded && !refused) continue;
      if (core.settings.loading === 'lazy') core.setStatus(r, 'idle', { kind: 'unloaded', message: 'a fresh trust list was accepted' });
      else core.ensureLoaded(r, []).catch(() => undefined);
    }
  }
}

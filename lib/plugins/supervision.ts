/**
 * What happens when a running plugin breaks a limit or the protocol: it is cut off at once (no
 * more calls, its sandbox killed), the violation is audited, and then either it is quarantined
 * (too many violations within the window: no restart, no reload until release()) or it is failed
 * and, with the 'restart' policy, started again after a delay that doubles with each restart.
 */
import { severityOf } from './audit-lines';
import type { HostCore } from './host-core';
import type { PluginInstance } from './instance';
import type { PluginReason } from './reason';
import type { PluginRecord } from './record';

export function onViolation(core: HostCore, r: PluginRecord, inst: PluginInstance, reason: PluginReason): void {
  if (r.instance !== inst) return; // an old instance draining after a reload: it is going anyway
  cutOff(core, r, inst);
  recordViolation(core, r, reason, inst.pid);
}

/**
 * A violation of another kind after the one that cut the instance off (the plugin raced it in
 * before the host's kill: a forbidden syscall after its timeout or a refused thread): audited with
 * its own kind, so a milder line does not hide it. When it names the end instead (after `pids`),
 * it becomes the status's reason while that is still the first one. Not counted again: one end,
 * one count.
 */
export function onLateViolation(core: HostCore, r: PluginRecord, inst: PluginInstance, reason: PluginReason, after: PluginReason, names: boolean): void {
  core.log(severityOf(reason.kind), 'violation', r, reason.message, {
    kind: reason.kind, syscall: reason.syscall, limit: reason.limit, observed: reason.observed, pid: inst.pid, after: after.kind, counted: false,
  });
  if (names && r.reason === after) core.setStatus(r, r.status, reason);
  core.emit('violation', r.name, reason);
}

/** At once: no more calls to the serving instance, its sandbox killed. In-flight calls fail with the channel. */
function cutOff(core: HostCore, r: PluginRecord, inst: PluginInstance): void {
  core.registry.removeOwner(r.name);
  if (inst.busMember !== undefined) core.bus.detach(inst.busMember);
  r.instance = undefined;
  void inst.stop({ drainMs: 0, shutdownMs: 0, now: true });
}

function quarantine(core: HostCore, r: PluginRecord, reason: PluginReason): void {
  core.setStatus(r, 'quarantined', reason);
  core.log('critical', 'quarantine', r, `${r.violationTimes.length} violations within ${core.settings.quarantine.windowMs} ms: quarantined until released`, { last: reason.kind });
}

/**
 * A violation of plugin `r` with nothing of it serving (its instance cut off, or a load that broke
 * a limit): audited, counted toward quarantine, then quarantined or failed and maybe restarted.
 */
export function recordViolation(core: HostCore, r: PluginRecord, reason: PluginReason, pid: number | undefined): void {
  if (countViolation(core, r, reason, pid) >= core.settings.quarantine.violations) {
    quarantine(core, r, reason);
    core.emit('violation', r.name, reason);
    return;
  }
  core.setStatus(r, 'failed', reason);
  core.emit('violation', r.name, reason);
  const restart = core.settings.restart;
  if (restart.policy === 'restart' && !core.isClosed()) {
    const delay = Math.min(restart.maxDelayMs, restart.initialDelayMs * 2 ** Math.min(r.restarts, 30));
    r.restarts++;
    core.log('notice', 'restart', r, `restarting in ${delay} ms (restart ${r.restarts})`, { delayMs: delay });
    clearRestart(r); // one pending restart at most (a load during the backoff may fail again)
    r.restartTimer = setTimeout(() => {
      r.restartTimer = undefined;
      if (r.status === 'failed' && !core.isClosed()) core.ensureLoaded(r, []).catch(() => undefined);
    }, delay);
    r.restartTimer.unref();
  }
}

/**
 * A new version broke a limit while it loaded beside an old one that serves (a reload): audited
 * (`loading`: the new version; the line's own is the one serving) and counted. The old version
 * serves on, unless the count reaches the quarantine threshold: the quarantine is the plugin's,
 * whichever version broke the limits, so the old one is cut off and the plugin quarantined.
 * Returns true then.
 */
export function recordReloadViolation(core: HostCore, r: PluginRecord, reason: PluginReason, loading: string | undefined): boolean {
  const count = countViolation(core, r, reason, undefined, loading);
  const quarantines = count >= core.settings.quarantine.violations && r.status !== 'quarantined'; // not: the old version's own violation got there first, during the reload
  if (quarantines) {
    if (r.instance !== undefined) cutOff(core, r, r.instance);
    quarantine(core, r, reason);
  }
  core.emit('violation', r.name, reason);
  return count >= core.settings.quarantine.violations;
}

/** Audits a violation and counts it in the quarantine window; returns the count. */
function countViolation(core: HostCore, r: PluginRecord, reason: PluginReason, pid: number | undefined, loading?: string): number {
  const now = Date.now();
  const q = core.settings.quarantine;
  r.violationTimes = r.violationTimes.filter((t) => now - t < q.windowMs);
  r.violationTimes.push(now);
  core.log(severityOf(reason.kind), 'violation', r, reason.message, { kind: reason.kind, syscall: reason.syscall, limit: reason.limit, observed: reason.observed, exit: reason.exit, pid, loading });
  return r.violationTimes.length;
}

/** Cancels a pending restart (the plugin is unloaded, released or the host closes). */
export function clearRestart(r: PluginRecord): void {
  if (r.restartTimer !== undefined) clearTimeout(r.restartTimer);
  r.restartTimer = undefined;
}

/** Lifts a quarantine: the violation count and the restart backoff start over. */
export function releaseQuarantine(core: HostCore, r: PluginRecord): void {
  r.violationTimes = [];
  r.restarts = 0;
  core.setStatus(r, core.settings.loading === 'lazy' ? 'idle' : 'unloaded', { kind: 'unloaded', message: 'released from quarantine' });
  core.log('notice', 'quarantine', r, 'released from quarantine by the host');
}


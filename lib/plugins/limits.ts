/**
 * Plugin limits: what the manifest asks for, capped by what the trust entry grants, or the host's
 * defaults where the entry says nothing. A request above the allowance refuses the load (the plugin
 * said it needs that much; starting it with less would fail later and less clearly).
 *
 * Manifest and host defaults use the sandbox's units ("256M", "10s", 0.5 cores). Trust list entries
 * and levels hold non-negative integers: memory (bytes), pids, cpu (millicores: 1000 = one core),
 * cpuTime (ms), callTimeout (ms), connectionsPerMinute, maxConnections (the network budget).
 *
 * The allowance of a limit is the trust entry's, else its trust level's (the list's `levels`
 * table), else the host's default.
 */
import { InvalidOptionError } from '../errors';
import type { LimitsOptions } from '../limits/options';
import { parseCount, parseCpu, parseDuration, parseSize } from '../limits/units';
import { PermissionDeniedError } from './errors';

export interface PluginLimits {
  /** Bytes. */
  memory?: number;
  pids?: number;
  /** Cores. */
  cpu?: number;
  /** Milliseconds of cpu time over the plugin's life. */
  cpuTime?: number;
  /** Milliseconds a hook call may take before it counts as a `timeout` violation. */
  callTimeout?: number;
  /** Network budget (when the plugin has a network policy): new connections a minute. */
  connectionsPerMinute?: number;
  /** Network budget: connections open at once. */
  maxConnections?: number;
}

export type PluginLimitsInput = { [K in keyof PluginLimits]?: string | number };

export const PLUGIN_LIMIT_NAMES = ['memory', 'pids', 'cpu', 'cpuTime', 'callTimeout', 'connectionsPerMinute', 'maxConnections'] as const;
const KEYS = PLUGIN_LIMIT_NAMES;

export function parsePluginLimits(raw: unknown, prefix: string): PluginLimits {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new InvalidOptionError(prefix, 'must be an object');
  const o = raw as Record<string, unknown>;
  const out: PluginLimits = {};
  for (const [k, v] of Object.entries(o)) {
    const field = `${prefix}.${k}`;
    if (!(KEYS as readonly string[]).includes(k)) throw new InvalidOptionError(field, `unknown limit; known: ${KEYS.join(', ')}`);
    if (typeof v !== 'string' && typeof v !== 'number') throw new InvalidOptionError(field, 'must be a number or a string with a unit');
    if (k === 'memory') out.memory = parseSize(field, v);
    else if (k === 'pids') out.pids = parseCount(field, v);
    else if (k === 'cpu') out.cpu = parseCpu(field, v);
    else if (k === 'cpuTime') out.cpuTime = parseDuration(field, v);
    else if (k === 'callTimeout') out.callTimeout = parseDuration(field, v);
    else out[k as 'connectionsPerMinute' | 'maxConnections'] = parseCount(field, v);
  }
  return out;
}

/** Reads a trust entry's (or level's) integer limits into PluginLimits; unknown names are refused. */
export function trustEntryLimits(plugin: string, limits: Readonly<Record<string, number>>, where = 'limits'): PluginLimits {
  const out: PluginLimits = {};
  for (const [k, v] of Object.entries(limits)) {
    if (!(KEYS as readonly string[]).includes(k)) {
      throw new PermissionDeniedError(plugin, `${where}.${k}`, `is a limit this host does not know (known: ${KEYS.join(', ')}), so the trust list cannot be applied`);
    }
    out[k as keyof PluginLimits] = k === 'cpu' ? v / 1000 : v;
  }
  return out;
}

/**
 * The limits a plugin runs with. For each limit: allowed = trust entry, else host default; the
 * manifest's request must not exceed it; effective = the request, else the allowance.
 */
export function effectiveLimits(plugin: string, requested: PluginLimits, granted: PluginLimits, defaults: PluginLimits): PluginLimits {
  const out: PluginLimits = {};
  for (const k of KEYS) {
    const allowed = granted[k] ?? defaults[k];
    const asked = requested[k];
    if (asked !== undefined && allowed !== undefined && asked > allowed) {
      throw new PermissionDeniedError(plugin, `limits.${k}`, `asks for ${asked} and only ${allowed} is allowed`);
    }
    const v = asked ?? allowed;
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/** The sandbox's cgroup limits for these plugin limits (callTimeout is the host's, not the kernel's). */
export function sandboxLimits(l: PluginLimits, allowDegraded: boolean): LimitsOptions | undefined {
  const o: LimitsOptions = {};
  if (l.memory !== undefined) o.memory = l.memory;
  if (l.pids !== undefined) o.pids = l.pids;
  if (l.cpu !== undefined) o.cpu = l.cpu;
  if (l.cpuTime !== undefined) o.cpuTime = l.cpuTime;
  if (Object.keys(o).length === 0) return undefined;
  if (allowDegraded) o.allowDegraded = true;
  return o;
}

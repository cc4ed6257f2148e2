/**
 * Everything a plugin goes through before it takes calls: its manifest read again, its files read
 * once and checked against the trust list (name, version, digest), its dependencies loaded first
 * and its compatibility checked, its permissions and limits decided; then its runner started in a
 * sandbox with those very files, and its hook list checked against the manifest and the hooks the
 * host declares. Each step that refuses throws a PluginLoadError naming the step, and is audited.
 */
import * as path from 'node:path';

import { BusRights, busGrantToString, decideBusGrants, isBusGrant, type BusMember } from '../bus';
import { CallTimeoutError, RemoteError, SandboxViolationError } from '../errors';
import type { HookRegistry } from '../hooks';
import type { CallContext, Handler } from '../channel/rpc';
import type { SpawnNodeOptions } from '../process/spawn-node';
import type { NetworkEvent } from '../net/policy';
import type { PluginProcess } from '../process/plugin-process';
import { M_HOOKS, type HookRegistration } from '../runner-protocol';
import type { TrustEntry } from '../trust/document';
import { assertCompatible } from '../trust/compat';
import { DigestMismatchError } from '../trust/errors';
import { readPluginTree, type PluginTree } from '../trust/tree';
import { errorFields, networkLine } from './audit-lines';
import { busHandlersFor, busPeerFor } from './bus-wiring';
import { PermissionDeniedError, PluginError, PluginHookError, PluginLoadError } from './errors';
import type { HostCore } from './host-core';
import type { PluginHostOptions, PluginLauncher } from './host-options';
import { PluginInstance } from './instance';
import { violationReason } from './reason';
import { effectiveLimits, sandboxLimits, trustEntryLimits, type PluginLimits } from './limits';
import { checkLevelCeiling } from './levels';
import { readManifest, type PluginManifest } from './manifest';
import { decidePermissions, permissionToString, sandboxOptionsFor } from './permissions';
import type { PluginRecord } from './record';

/** A plugin verified and decided on, ready to spawn. */
export interface Prepared {
  manifest: PluginManifest;
  entry: TrustEntry;
  spawn: SpawnNodeOptions;
  limits: PluginLimits;
  permissions: ReturnType<typeof decidePermissions>;
  /** The instance-to-be on the bus, with the grants it was given. */
  busMember: BusMember;
}

/** Everything before the spawn: verify, compat, permissions, limits. Throws PluginLoadError. */
export async function preparePlugin(core: HostCore, r: PluginRecord, chain: string[]): Promise<Prepared> {
  const s = core.settings;
  let manifest: PluginManifest;
  try {
    manifest = readManifest(r.dir);
    if (manifest.name !== r.name) throw new PluginError('ERR_PLUGIN_MANIFEST', r.name, `the directory now holds '${manifest.name}'; a plugin cannot change its name`);
  } catch (e) {
    throw new PluginLoadError(r.name, 'discover', e);
  }
  r.manifest = manifest;
  const list = core.trustList();
  if (list === undefined) throw new PluginLoadError(r.name, 'verify', new Error('no trust list has been accepted'));
  let entry: TrustEntry;
  let tree: PluginTree;
  try {
    core.assertNotExpired(list);
    entry = list.entry(manifest.name, manifest.version);
    // The files are read once: digested here and these very bytes copied into the sandbox, so
    // what was verified is what runs, whatever happens to the directory afterwards.
    tree = await readPluginTree(manifest.dir, s.options.treeLimits);
    if (tree.digest !== entry.digest) throw new DigestMismatchError(manifest.name, manifest.version, entry.digest, tree.digest);
    core.log('info', 'verify', r, `${manifest.name}@${manifest.version} matches trust list version ${list.version} (${entry.trust}, publisher ${entry.publisher})`, { digest: entry.digest });
  } catch (e) {
    core.log('warning', 'verify', r, `${manifest.name}@${manifest.version} refused by the trust list: ${errorFields(e).message}`, { code: errorFields(e).code });
    throw new PluginLoadError(r.name, 'verify', e);
  }
  // The scan of these very bytes, audited when it ends (it does not hold the load up). The line names
  // this version, whatever the record's instance is by then.
  const about: PluginRecord = { ...r, instance: undefined, manifest };
  core.scans?.scan(tree.digest, tree, manifest.permissions.map(permissionToString), path.relative(manifest.dir, manifest.entry), (severity, reason, details) => core.log(severity, 'scan', about, reason, details));
  // Dependencies load first, so that their versions are known to the compatibility check.
  if (chain.includes(r.name)) throw new PluginLoadError(r.name, 'compat', new Error(`dependency cycle: ${[...chain, r.name].join(' → ')}`));
  for (const dep of Object.keys(manifest.dependencies)) {
    if (chain.includes(dep)) throw new PluginLoadError(r.name, 'compat', new Error(`dependency cycle: ${[...chain, r.name, dep].join(' → ')}`));
    const d = core.records.get(dep);
    // Called from inside this plugin's queue: the dependency's load runs in its own queue.
    if (d !== undefined && d.status !== 'active' && d.status !== 'quarantined') {
      await core.ensureLoaded(d, [...chain, r.name]).catch(() => undefined);
    }
  }
  try {
    const loaded: Record<string, string> = {};
    for (const x of core.records.values()) if (x.status === 'active' || x.status === 'reloading') loaded[x.name] = x.instance?.version ?? x.manifest?.version ?? '';
    assertCompatible({ name: manifest.name, version: manifest.version, hostApi: manifest.hostApi, dependencies: manifest.dependencies }, { hostApiVersion: s.options.hostApiVersion, loaded });
  } catch (e) {
    core.log('warning', 'refused', r, errorFields(e).message, { code: errorFields(e).code });
    throw new PluginLoadError(r.name, 'compat', e);
  }
  let permissions: ReturnType<typeof decidePermissions>;
  let limits: PluginLimits;
  let busMember: BusMember;
  try {
    // The entry's level: a ceiling on what it may be granted (bus grants aside), and the limits it
    // does not name.
    const level = list.levelOf(entry);
    checkLevelCeiling(manifest.name, entry.trust, level, entry.permissions);
    permissions = decidePermissions(manifest.name, manifest.permissions, entry.permissions.filter((g) => !isBusGrant(g)));
    const bus = decideBusGrants(manifest.bus, entry.permissions);
    if (bus.malformed !== undefined) throw new PermissionDeniedError(manifest.name, bus.malformed.grant, `is granted in a form this host does not understand (${bus.malformed.why})`, 'fix the trust list entry');
    if (bus.missing !== undefined) throw new PermissionDeniedError(manifest.name, bus.missing, 'the trust list does not grant');
    busMember = core.bus.member(new BusRights(manifest.name, bus.effective));
    const granted = { ...trustEntryLimits(manifest.name, level.limits, `levels.${entry.trust}.limits`), ...trustEntryLimits(manifest.name, entry.limits) };
    limits = effectiveLimits(manifest.name, manifest.limits, granted, s.defaultLimits);
  } catch (e) {
    core.log('warning', 'permission', r, errorFields(e).message, { code: errorFields(e).code, trust: entry.trust, requested: manifest.permissions.map(permissionToString), granted: entry.permissions });
    throw new PluginLoadError(r.name, 'permissions', e);
  }
  // One line for what the plugin was given: sandbox permissions and bus grants alike (a plugin with
  // only bus grants is not "defaults only").
  const given = [...permissions.decisions.map((d) => d.permission), ...busMember.rights.grants.map(busGrantToString)];
  core.log('info', 'permission', r, given.length === 0 ? 'no permissions requested: sandbox defaults only' : `granted ${given.join(', ')}`, { decisions: permissions.decisions, bus: busMember.rights.grants.map(busGrantToString), limits });
  const sb = sandboxOptionsFor(permissions.effective, limits);
  // Each network decision of the plugin's sandbox is a `network` audit line.
  const onNetwork = (e: NetworkEvent): void => {
    const line = networkLine(e);
    core.log(line.severity, 'network', r, line.reason, { ...e });
  };
  const spawn: SpawnNodeOptions = {
    pluginDir: manifest.dir,
    pluginFiles: 'copy',
    tree,
    digest: entry.digest,
    binds: sb.binds,
    shareNet: sb.shareNet,
    ...(sb.network !== undefined ? { network: sb.network, onNetwork } : {}),
    allowExec: sb.allowExec,
    limits: sandboxLimits(limits, s.allowDegradedLimits),
    config: s.options.config?.[manifest.name],
    // The bus's methods after the application's: a `$` name is the host's own.
    handlers: { ...hostMethodsFor(s.options.methods, manifest.name, core), ...busHandlersFor(core.bus, busMember) },
    // Per-call timeouts are the hooks' and the plugin's callTimeout; the channel itself waits.
    timeout: 0,
    loadTimeout: s.loadTimeoutMs,
    stdio: ['ignore', 'ignore', s.pluginStderr],
    hostIds: s.options.hostIds,
    channelLimits: s.options.channelLimits,
  };
  return { manifest, entry, spawn, limits, permissions, busMember };
}

/** Spawns and handshakes a prepared plugin; returns the running instance. */
export async function startInstance(core: HostCore, launcher: PluginLauncher, r: PluginRecord, prep: Prepared): Promise<PluginInstance> {
  let proc: PluginProcess & { warm?: boolean };
  try {
    proc = await launcher(prep.manifest.entry, prep.spawn);
  } catch (e) {
    // The plugin's own module or activate() failing (or not answering, or breaking a limit) is 'init'; the rest is the sandbox's.
    const init = e instanceof RemoteError || e instanceof CallTimeoutError || e instanceof SandboxViolationError;
    throw new PluginLoadError(r.name, init ? 'init' : 'spawn', e, e instanceof SandboxViolationError ? violationReason(e.violation) : undefined);
  }
  const inst = new PluginInstance(proc, { manifest: prep.manifest, trust: prep.entry, permissions: prep.permissions.effective, limits: prep.limits });
  // Reachable on the bus once the host activates it (plugin-host.ts), not before.
  inst.busMember = prep.busMember;
  prep.busMember.connect(busPeerFor(inst));
  proc.on('log', (level: string, message: string) => core.emit('log', r.name, level, message));
  proc.on('logs-dropped', (count: number) => core.emit('logs-dropped', r.name, count));
  proc.on('events-dropped', (count: number) => core.emit('events-dropped', r.name, count));
  proc.on('event', (name: string, ...args: unknown[]) => core.emit('event', r.name, name, ...args));
  try {
    const regs = (await proc.callWith({ timeout: core.settings.loadTimeoutMs }, M_HOOKS)) as HookRegistration[];
    inst.hooks = checkHooks(core.registry, prep.manifest, regs);
  } catch (e) {
    // A limit or the protocol broken during the handshake fails the load with that violation. The
    // channel's (garbage, a flood) reached the instance before the call failed; the sandbox's may
    // come with the exit, after the call failed and stop() retired the instance.
    const violation = await inst.stopForViolation();
    throw new PluginLoadError(r.name, e instanceof PluginError ? 'hooks' : 'handshake', e, violation);
  }
  return inst;
}

/** The runner's hook list, untrusted: each hook must be declared by the host and listed in the manifest. */
function checkHooks(registry: HookRegistry, m: PluginManifest, regs: unknown): HookRegistration[] {
  if (!Array.isArray(regs) || regs.length > 1000) throw new PluginHookError(m.name, '?', 'the runner answered the hook list with something that is not a list');
  const out: HookRegistration[] = [];
  for (const x of regs as Array<{ hook?: unknown; priority?: unknown }>) {
    const hook = typeof x?.hook === 'string' ? x.hook : '?';
    if (!registry.has(hook)) throw new PluginHookError(m.name, hook, `the host declares no such hook (declared: ${registry.hooks().map((h) => h.name).join(', ') || 'none'})`);
    if (!m.hooks.includes(hook)) throw new PluginHookError(m.name, hook, 'registered but not listed in the manifest `hooks`; list it there');
    const priority = typeof x.priority === 'number' && Number.isSafeInteger(x.priority) ? x.priority : 0;
    out.push({ hook, priority });
  }
  return out;
}

/** The host's methods as one plugin calls them: `this.plugin` names the caller. */
function hostMethodsFor(methods: PluginHostOptions['methods'], plugin: string, core: Pick<HostCore, 'timeCall'>): Record<string, Handler> {
  const out: Record<string, Handler> = {};
  for (const [name, fn] of Object.entries(methods ?? {})) {
    out[name] = function (this: CallContext, ...args: unknown[]) {
      // Not a spread copy: `signal` is a getter of the call's context (made on first use), and
      // it must stay the one that the plugin's cancel, a timeout or the channel closing aborts.
      const ctx = this;
      const self = { get signal() { return ctx.signal; }, method: ctx.method, plugin };
      // args is at most the channel's maxArgs long.
      return core.timeCall(plugin, () => fn.apply(self, args));
    };
  }
  return out;
}

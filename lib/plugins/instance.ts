/**
 * One running version of a plugin: its sandboxed runner, the hooks it registered, the calls in
 * flight. The host may hold two instances of one plugin during a hot reload (the new one serving,
 * the old one draining); each instance knows only itself.
 */
import { CallTimeoutError, type ObservedViolation } from '../errors';
import type { HandlerContext, HookHandler } from '../hooks';
import type { BusMember } from '../bus';
import { endingViolation } from '../limits';
import type { PluginProcess, RunnerExit } from '../process/plugin-process';
import { HOOK_METHOD_PREFIX, M_SHUTDOWN, type HookRegistration } from '../runner-protocol';
import type { PluginManifest } from './manifest';
import type { PluginLimits } from './limits';
import type { Permission } from './permissions';
import type { TrustEntry } from '../trust/document';
import { violationReason, type PluginReason } from './reason';

/**
 * A hook and the channel method that runs it in the runner. The method name is made once per
 * handler: a fresh concatenation per call costs the encoder a hash of a new string each time (it
 * sends names by number after the first).
 */
interface HookTarget {
  readonly hook: string;
  readonly method: string;
}

function hookTarget(hook: string): HookTarget {
  return { hook, method: HOOK_METHOD_PREFIX + hook };
}

export interface InstanceInfo {
  manifest: PluginManifest;
  trust: TrustEntry;
  permissions: Permission[];
  limits: PluginLimits;
}

export class PluginInstance {
  readonly name: string;
  readonly version: string;
  readonly startedAt = Date.now();
  hooks: HookRegistration[] = [];
  /** Set once the host stops routing to this instance (unload, reload, violation). */
  retired = false;
  /** Set when the process ended or was told to end. */
  stopped = false;
  private inflight = 0;
  private idleWaiters: Array<() => void> = [];
  /**
   * Called on the first violation of this instance (once). The host sets it when it activates the
   * instance; a violation before that (the load's last steps) is kept in `violatedWith`, and the
   * host fails the load with it rather than activate a plugin whose violation was lost.
   */
  onViolation: (reason: PluginReason) => void = () => undefined;
  /** Called for a violation of another kind after the first (see violation()); `names`: it is now the end's reason. */
  onLateViolation: (reason: PluginReason, after: PluginReason, names: boolean) => void = () => undefined;
  /**
   * The violation that names this instance's end, whether or not the host was listening yet: the
   * first, or a later one that replaced a `pids` one (see violation()).
   */
  violatedWith: PluginReason | undefined;
  /** Kinds told through onLateViolation, once each. */
  private readonly lateKinds = new Set<string>();
  /** Set by the host when it replaced this instance, so stragglers go to the successor. */
  successor: PluginInstance | undefined;
  /** This instance on the bus (its rights, subscriptions and services). */
  busMember: BusMember | undefined;

  constructor(
    readonly proc: PluginProcess & { warm?: boolean },
    readonly info: InstanceInfo,
  ) {
    this.name = info.manifest.name;
    this.version = info.manifest.version;
    proc.on('violation', (v: ObservedViolation) => this.violation(violationReason(v)));
    // One that came while the process loaded, before this instance listened (a refused thread:
    // pids ends nothing, so the load went on).
    if (proc.observed !== undefined) this.violation(violationReason(proc.observed));
    void proc.exited.then((r: RunnerExit) => {
      this.stopped = true;
      // Every violation that ended it came as a 'violation' event before the exit (the sandbox
      // emits what it observes at once, the SIGSYS reading too): an end with none reported is a
      // crash, whatever the exit carries (a pooled runner's violation before its plugin came).
      if (this.retired || this.violatedWith !== undefined) return;
      this.violation({
        kind: 'crash',
        message: `the plugin's process ended on its own (${r.signal ? `signal ${r.signal}` : `exit code ${r.code}`})`,
        exit: { code: r.code, signal: r.signal },
      });
    });
  }

  get pid(): number {
    return this.proc.pid;
  }

  get busy(): number {
    return this.inflight;
  }

  /**
   * The first violation cuts the instance off (onViolation) and names the end (violatedWith),
   * except that a `pids` one (a refused thread, which ends nothing by itself) gives way to a later
   * one that ends the sandbox (endingViolation). A plugin may race more in before the host's kill
   * lands (a forbidden syscall after its timeout): each later kind is told once through
   * onLateViolation (audited, not counted again), so none hides behind a milder first one.
   */
  violation(reason: PluginReason): void {
    const held = this.violatedWith;
    if (held === undefined) {
      if (this.retired) return; // unloaded or replaced: its end is no violation
      this.violatedWith = reason;
      this.onViolation(reason);
      return;
    }
    if (reason.kind === held.kind || this.lateKinds.has(reason.kind)) return;
    this.lateKinds.add(reason.kind); // at most one line per kind: a handful
    const names = endingViolation(held, reason) !== held;
    if (names) this.violatedWith = reason;
    this.onLateViolation(reason, held, names);
  }

  /**
   * Stops the process now; returns the violation it ended with, if any: the one reported, or what
   * the sandbox or the channel observed since its $load (complete once it has exited), whichever
   * names the end (endingViolation). For a load that failed before the instance was activated.
   */
  async stopForViolation(): Promise<PluginReason | undefined> {
    await this.stop({ drainMs: 0, shutdownMs: 0, now: true });
    const seen = this.proc.observed;
    return seen === undefined ? this.violatedWith : endingViolation(this.violatedWith, violationReason(seen));
  }

  /** The registry handler for one hook of this instance. */
  hookHandler(hook: string): HookHandler {
    const target = hookTarget(hook);
    return (args: unknown[], ctx: HandlerContext) => this.callHook(target, args, ctx);
  }

  private async callHook(target: HookTarget, args: unknown[], ctx: HandlerContext): Promise<unknown> {
    const hook = target.hook;
    // A caller that snapshotted the handlers just before a reload switched them lands here after
    // this instance retired: send it to the successor rather than fail it.
    if (this.retired && this.successor !== undefined && !this.successor.retired && this.successor.hooks.some((h) => h.hook === hook)) {
      return this.successor.callHook(target, args, ctx);
    }
    this.inflight++;
    const started = Date.now();
    try {
      return await this.proc.callWith({ timeout: this.info.limits.callTimeout ?? 0, cancel: ctx }, target.method, ...args);
    } catch (e) {
      if (e instanceof CallTimeoutError) {
        this.violation({ kind: 'timeout', message: `hook '${hook}' got no answer within ${e.timeout} ms`, limit: e.timeout });
      } else if (ctx.aborted && ctx.timeout > 0 && Date.now() - started >= ctx.timeout - 1) {
        this.violation({ kind: 'timeout', message: `hook '${hook}' got no answer within the hook's ${ctx.timeout} ms`, limit: ctx.timeout });
      }
      throw e;
    } finally {
      if (--this.inflight === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /** Counts a call into the plugin that is not a hook (a bus service call) as in flight, so drain() waits for it. */
  async track<T>(p: Promise<T>): Promise<T> {
    this.inflight++;
    try {
      return await p;
    } finally {
      if (--this.inflight === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /** Resolves when no hook call is in flight, or after `ms` (true if drained). */
  drain(ms: number): Promise<boolean> {
    if (this.inflight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== done);
        resolve(false);
      }, ms);
      const done = (): void => {
        clearTimeout(t);
        resolve(true);
      };
      this.idleWaiters.push(done);
    });
  }

  /**
   * Stops the instance: drain (up to drainMs), the plugin's shutdown (up to shutdownMs), then the
   * channel and the sandbox. With `now`, kills at once (a violation: nothing of it is trusted).
   */
  async stop(opts: { drainMs: number; shutdownMs: number; now?: boolean }): Promise<void> {
    this.retired = true;
    if (opts.now) {
      this.proc.kill('SIGKILL');
      await this.proc.exited.catch(() => undefined);
      this.stopped = true;
      return;
    }
    if (!this.stopped) {
      await this.drain(opts.drainMs);
      if (!this.stopped) {
        // A plugin whose shutdown fails or takes too long is stopped anyway; that is not a violation.
        await this.proc.callWith({ timeout: Math.max(1, opts.shutdownMs) }, M_SHUTDOWN).catch(() => undefined);
      }
    }
    await this.proc.close(opts.shutdownMs);
    this.stopped = true;
  }
}

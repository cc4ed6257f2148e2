/**
 * A sandboxed process: Sandbox.spawn() starts it, the handle observes and stops it.
 */
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import { InvalidOptionError, LimitError } from '../errors';
import { addon, type NativePlan, type NativeSandboxProcess, type NativeSetupError, type NativeViolation } from '../native';
import { explainBindSource, explainMountTarget } from './bind-path';
import { errnoName, MOUNT_ENTRY_STAGES, SandboxSetupError } from './errors';
import { buildPlan, type BuiltPlan } from './plan';
import { acquireHostId, checkRange, releaseHostId } from './ids';
import { compiledSeccomp } from './seccomp';
import type { ExitResult, SpawnOptions, StdioOption, Violation } from './types';
import { SandboxCgroup, endingViolation, type LimitStats, type StatFields, type WeakerLimit } from '../limits';
import type { LimitsOptions } from '../limits/options';
import { mergeRlimits, superviseSandbox, validateLimits } from '../limits/launch';
import { drainCloses, unwatchClose, watchClose } from './network-closes';
import { NetworkPolicy, validateNetworkOptions, type NetworkEvent, type ResolvedNetworkOptions } from '../net/policy';

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(
  Object.entries(os.constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]),
);

function signalNumber(signal: NodeJS.Signals | number): number {
  if (typeof signal === 'number') {
    if (!Number.isInteger(signal) || signal < 0 || signal > 64) throw new InvalidOptionError('signal', `${signal} is not a signal number`);
    return signal;
  }
  const n = (os.constants.signals as Record<string, number>)[signal];
  if (n === undefined) throw new InvalidOptionError('signal', `'${signal}' is not a signal name (e.g. 'SIGTERM')`);
  return n;
}

/** A native setup failure as SandboxSetupError, naming the entry of `options` it concerns. */
function setupError(err: unknown, built: BuiltPlan, options: SpawnOptions): unknown {
  const e = err as NativeSetupError;
  if (e?.code !== 'ERR_SANDBOX_SETUP') return err;
  let entry: string | undefined;
  let detail = e.detail;
  if (e.index >= 0) {
    if (MOUNT_ENTRY_STAGES.includes(e.stage)) {
      const m = built.mountDescriptions[e.index];
      entry = m?.entry;
      detail = m?.text ?? detail;
      const errno = errnoName(e.errno);
      const { plan } = built;
      const hostUid = plan.namespaces.user ? plan.mapUidOutside : plan.uid;
      const hostGid = plan.namespaces.user ? plan.mapGidOutside : plan.gid;
      if (e.stage === 'bind-source' && m?.source !== undefined) detail += `: ${explainBindSource(m.source, errno, hostUid, hostGid)}`;
      if (e.stage === 'mount-target' && m !== undefined) detail += `: ${explainMountTarget(m.target, errno)}`;
    } else if (e.stage === 'rlimit') entry = `rlimits.${built.rlimitNames[e.index]}`;
    else if (e.stage === 'fds') entry = e.index < 3 ? `stdio[${e.index}]` : `fds[${e.index - 3}]`;
  }
  if (e.stage === 'exec') {
    // Name the command, and where a PATH search looked for it (paths inside the sandbox).
    const tried = built.plan.candidates;
    entry = 'command[0]';
    detail = `'${options.command[0]}'${tried.length > 1 || tried[0] !== options.command[0] ? ` (tried ${tried.join(', ')})` : ''}`;
  }
  return new SandboxSetupError(e.stage, e.errno, entry, detail);
}

export interface SandboxEvents {
  violation: [Violation];
  /** Each decision of the network policy (allowed, refused and why) and each connection's outcome. */
  network: [NetworkEvent];
  exit: [ExitResult];
}

export class Sandbox extends EventEmitter<SandboxEvents> {
  private launched: { pid: number; stdin: net.Socket | null; stdout: net.Socket | null; stderr: net.Socket | null } | undefined;
  /** Host pid of the sandbox's first process (pid 1 inside its PID namespace). */
  get pid(): number {
    return this.launched!.pid;
  }
  get stdin(): net.Socket | null {
    return this.launched!.stdin;
  }
  get stdout(): net.Socket | null {
    return this.launched!.stdout;
  }
  get stderr(): net.Socket | null {
    return this.launched!.stderr;
  }
  /** Resolves when the first process exits; everything else in the sandbox dies with it. */
  readonly exited: Promise<ExitResult>;
  private readonly native: NativeSandboxProcess;
  /** Set when the setup failed after the clone: the process was killed, nobody holds this object. */
  private setupFailed = false;
  private violation: Violation | null = null;
  private result: ExitResult | null = null;
  /** The sandbox's cgroup, when `limits` was given. */
  private readonly cgroup: SandboxCgroup | undefined;

  /**
   * Starts `options.command` in a new sandbox. Synchronous like child_process.spawn: it returns
   * once the command has been exec'd inside the finished sandbox, or throws SandboxSetupError
   * naming the failed stage (the command never ran) or InvalidOptionError naming the bad field.
   */
  static spawn(options: SpawnOptions): Sandbox {
    return new Sandbox(options);
  }

  /**
   * Starts `options.command` as spawn() does, without holding the host's thread while the sandbox
   * is set up: the clone and the child's setup run on the addon's launch thread (~5 ms each on a
   * quiet machine, 25 ms and more under load, that the event loop would otherwise stand still).
   * Resolves once the command has been exec'd; rejects with the errors spawn() throws. The host
   * fds given in `fds` (and numeric `stdio` entries) are duplicated at this call: the sandbox gets
   * those files even if they are closed (and their numbers reused) before the launch runs.
   */
  static launch(options: SpawnOptions): Promise<Sandbox> {
    return new Promise((resolve, reject) => {
      const sandbox: Sandbox = new Sandbox(options, (err) => (err === null ? resolve(sandbox) : reject(err)));
    });
  }

  /** The host id drawn for this sandbox (lib/sandbox/ids.ts), given back when it has exited. */
  private hostId: number | undefined;

  /** Launches synchronously, or, with `whenLaunched`, on the launch thread (see launch()). */
  private constructor(options: SpawnOptions, whenLaunched?: (err: Error | null) => void) {
    super();
    const stdio = options?.stdio ?? ['ignore', 'pipe', 'pipe'];
    if (!Array.isArray(stdio) || stdio.length !== 3) throw new InvalidOptionError('stdio', "must be three entries of 'pipe', 'inherit', 'ignore' or an fd number");
    const range = options?.hostIds === undefined ? undefined : checkRange('hostIds', options.hostIds);
    // As root, an id of its own (given back on every failure below and at exit).
    this.hostId = process.getuid?.() === 0 && options?.hostUid === undefined ? acquireHostId(range) : undefined;
    let built: ReturnType<typeof buildPlan>;
    let limits: ReturnType<typeof validateLimits>;
    let seccomp: ReturnType<typeof compiledSeccomp>;
    let netOptions: ReturnType<typeof validateNetworkOptions> | undefined;
    try {
      built = buildPlan(options, this.hostId);
      limits = validateLimits(options.limits);
      netOptions = options.network === undefined ? undefined : validateNetworkOptions(options.network);
      seccomp = compiledSeccomp(options.seccomp, built.network || netOptions !== undefined, netOptions !== undefined);
    } catch (err) {
      if (this.hostId !== undefined) releaseHostId(this.hostId);
      throw err;
    }

    const fds: Array<{ source: number; target: number }> = [];
    const ours: Array<number | null> = [null, null, null];
    try {
      stdio.forEach((s: StdioOption, i: number) => {
        if (s === 'inherit') fds.push({ source: i, target: i });
        else if (s === 'ignore') fds.push({ source: -1, target: i }); // the launcher's /dev/null
        else if (s === 'pipe') {
          const [r, w] = addon().pipe();
          const [mine, theirs] = i === 0 ? [w, r] : [r, w];
          ours[i] = mine;
          this.toClose.push(theirs);
          fds.push({ source: theirs, target: i });
        } else if (typeof s === 'number' && Number.isInteger(s) && s >= 0) {
          fds.push({ source: s, target: i });
        } else {
          throw new InvalidOptionError(`stdio[${i}]`, `must be 'pipe', 'inherit', 'ignore' or an fd number, got ${JSON.stringify(s)}`);
        }
      });
      if (options.fds !== undefined && !Array.isArray(options.fds)) throw new InvalidOptionError('fds', 'must be an array of { fd, target }');
      const targets = new Set<number>();
      (options.fds ?? []).forEach((f, i) => {
        if (f === null || typeof f !== 'object' || !Number.isInteger(f.fd) || f.fd < 0) throw new InvalidOptionError(`fds[${i}].fd`, 'must be an open host fd number');
        if (!Number.isInteger(f.target) || f.target < 3 || f.target > 1023) throw new InvalidOptionError(`fds[${i}].target`, 'must be a number from 3 to 1023 (0-2 are stdio)');
        if (targets.has(f.target)) throw new InvalidOptionError(`fds[${i}].target`, `fd ${f.target} is already passed`);
        try {
          fs.fstatSync(f.fd);
        } catch {
          throw new InvalidOptionError(`fds[${i}].fd`, `${f.fd} is not an open fd`);
        }
        targets.add(f.target);
        fds.push({ source: f.fd, target: f.target });
      });

      // Created last among the fallible steps before the clone; removed again if the clone fails.
      this.cgroup = limits === undefined ? undefined : SandboxCgroup.create(limits);
      if (this.cgroup !== undefined && this.cgroup.rlimits.length > 0) {
        built = buildPlan({ ...options, rlimits: mergeRlimits(options.rlimits, this.cgroup) }, this.hostId);
      }
      // The plan object is this call's own: completed in place rather than copied.
      const plan = built.plan as NativePlan;
      plan.fds = fds;
      plan.seccomp = seccomp;
      // The child is created in the cgroup2 directory (CLONE_INTO_CGROUP) and moves itself into
      // the v1 hierarchies first thing.
      plan.cgroupDir = this.cgroup?.cloneIntoDir ?? '';
      plan.cgroupTasks = this.cgroup?.tasksFiles ?? [];
      // Undone by the addon if this thread's JS environment ends (a worker) before we can.
      plan.teardown = { fds: [...ours.filter((fd): fd is number => fd !== null), ...this.toClose], dirs: this.cgroup?.backend?.dirs.slice() ?? [] };
      const { SandboxProcess } = addon();
      const onExit = (code: number | null, signal: number | null) => this.onExit(code, signal);
      const onViolation = (v: NativeViolation) => this.onViolation(v);
      this.exited = new Promise((resolve) => (this.resolveExited = resolve));
      if (whenLaunched === undefined) {
        try {
          this.native = new SandboxProcess(plan, onExit, onViolation);
        } catch (err) {
          throw setupError(err, built, options);
        }
        this.afterLaunch(netOptions, built.namespaces.pid, ours);
      } else {
        this.native = new SandboxProcess(plan, onExit, onViolation, (err) => {
          try {
            if (err !== null) throw setupError(err, built, options);
            this.afterLaunch(netOptions, built.namespaces.pid, ours);
          } catch (e) {
            this.failSetup(ours);
            whenLaunched(e as Error);
            return;
          }
          whenLaunched(null);
        });
      }
    } catch (err) {
      this.failSetup(ours);
      throw err;
    }
  }

  /** Our copies of the sandbox's ends of its pipes, closed once it has them (or has failed). */
  private readonly toClose: number[] = [];

  /** Undoes what the constructor made when the sandbox will never run (or was killed for it). */
  private failSetup(ours: Array<number | null>): void {
    this.setupFailed = true;
    // Undone here: the addon must not remove these cgroups again at a worker's end (their names
    // may be another sandbox's by then).
    this.native?.forgetTeardown();
    for (const fd of ours) if (fd !== null) addon().closePipe(fd);
    for (const fd of this.toClose.splice(0)) addon().closePipe(fd);
    this.cgroup?.destroy().catch(() => {});
    if (this.hostId !== undefined) releaseHostId(this.hostId);
    this.hostId = undefined;
  }

  /** The command runs: its network policy, its stdio, its limits' supervision. */
  private afterLaunch(netOptions: ResolvedNetworkOptions | undefined, pidNamespace: boolean, ours: Array<number | null>): void {
    if (netOptions !== undefined) {
      try {
        this.startNetwork(netOptions);
      } catch (err) {
        this.native.kill(9); // the command runs already: without its network it must not
        throw err;
      }
    }
    // Without a PID namespace or a cgroup nothing ends the sandbox's other processes with its
    // first: its id is then never handed out again (another sandbox would share counts and signals
    // with what is left).
    if (this.hostId !== undefined && !pidNamespace && this.cgroup === undefined) this.hostId = undefined;
    for (const fd of this.toClose.splice(0)) addon().closePipe(fd);
    const pid = this.native.pid;
    this.launched = {
      pid,
      stdin: ours[0] === null ? null : new net.Socket({ fd: ours[0], readable: false, writable: true }),
      stdout: ours[1] === null ? null : new net.Socket({ fd: ours[1], readable: true, writable: false }),
      stderr: ours[2] === null ? null : new net.Socket({ fd: ours[2], readable: true, writable: false }),
    };
    if (this.cgroup !== undefined) {
      this.endLimits = superviseSandbox(this.cgroup, pid, (v) => {
        this.violation = endingViolation(this.violation, v);
        this.emit('violation', v);
      });
    }
  }

  private endLimits: (() => Promise<Violation | undefined>) | undefined;
  private resolveExited!: (result: ExitResult) => void;

  /** Memory, cpu and pids counters of the sandbox's cgroup; null without `limits`. Cheap (a few preads). */
  stats(only?: StatFields): LimitStats | null {
    return this.cgroup?.stats(only) ?? null;
  }

  /**
   * Lowers the cgroup limits of the running sandbox (see SandboxCgroup.narrow): memory, swap, pids
   * and cpu at most the values it was started with; cpuTime and timeout count from now. Throws
   * LimitError (ERR_LIMIT_NARROW) and changes nothing when that is not possible.
   */
  narrowLimits(limits: LimitsOptions): void {
    const l = validateLimits(limits)!;
    if (this.cgroup === undefined) throw new LimitError('cgroup', 'cannot lower limits in place: the sandbox was started without limits', { code: 'ERR_LIMIT_NARROW' });
    if (this.result !== null) throw new LimitError('cgroup', 'cannot lower limits in place: the sandbox has exited', { code: 'ERR_LIMIT_NARROW' });
    this.cgroup.narrow(l);
  }

  /** Limits that hold less strictly than requested (degraded mode, missing kernel knobs), with why. */
  get weakerLimits(): readonly WeakerLimit[] {
    return this.cgroup?.weaker ?? [];
  }

  /**
   * Sends a signal (default SIGKILL) to the sandbox's first process through its pidfd. Note that a
   * PID-namespace init ignores signals it has no handler for, SIGKILL excepted. Returns false when
   * the process has already exited.
   */
  kill(signal: NodeJS.Signals | number = 'SIGKILL'): boolean {
    if (this.result !== null) return false;
    return this.native.kill(signalNumber(signal));
  }

  /** Lets the host exit while the sandbox runs (the sandbox then dies with the host). */
  unref(): this {
    this.native.unref();
    return this;
  }

  ref(): this {
    this.native.ref();
    return this;
  }

  /** The exit result, once exited. */
  get exitResult(): ExitResult | null {
    return this.result;
  }

  /** The network policy, when `network` was given. */
  private policy: NetworkPolicy | undefined;

  /** Connections handed in and not seen closed (network policy only). */
  get openConnections(): number {
    return this.policy?.openConnections ?? 0;
  }

  private startNetwork(o: ResolvedNetworkOptions): void {
    const policy = new NetworkPolicy(
      o,
      (e) => this.emit('network', e),
      (reason) => {
        const violation: Violation = { kind: 'network', at: Date.now(), observed: reason };
        this.violation = endingViolation(this.violation, violation);
        this.native.kill(9);
        this.emit('violation', violation);
      },
      (port, answer) => this.native.replyDns(port, answer),
      addon().tcpStates as (cookies: Float64Array) => Array<[number, number, number, number]>,
      { watch: watchClose, unwatch: unwatchClose, drain: drainCloses },
    );
    this.policy = policy;
    this.native.interceptNetwork(
      (r) => policy.decide(r),
      (id, errno, cookie) => policy.report(id, errno, cookie),
      (address, port, errno, cookie, at) => policy.connected(address, port, errno, cookie, at),
      (q, port) => policy.dns(q, port),
    );
  }

  private onViolation(v: NativeViolation): void {
    const violation: Violation = { kind: 'seccomp', at: Date.now(), syscall: v.syscall };
    this.violation = endingViolation(this.violation, violation);
    this.emit('violation', violation);
  }

  private onExit(code: number | null, signal: number | null): void {
    if (this.endLimits !== undefined) {
      // Kill what is left in the cgroup (daemons that left the process tree) and remove it before
      // reporting the exit: when `exited` resolves, nothing of the sandbox remains.
      const end = this.endLimits;
      this.endLimits = undefined;
      void end().then((v) => {
        if (v !== undefined) this.violation = endingViolation(this.violation, v);
        this.finishExit(code, signal);
      });
      return;
    }
    this.finishExit(code, signal);
  }

  private finishExit(code: number | null, signal: number | null): void {
    // A sandbox whose setup failed after the launch (its network) was killed; nobody holds it, and
    // the constructor's failure path gave its host id back.
    if (this.setupFailed) return;
    this.policy?.stop();
    // Everything of the sandbox is gone (its PID namespace, or its cgroup killed and removed).
    if (this.hostId !== undefined) releaseHostId(this.hostId);
    this.hostId = undefined;
    this.result = {
      code,
      signal: signal === null ? null : SIGNAL_NAMES.get(signal) ?? (`SIG${signal}` as NodeJS.Signals),
      violation: this.violation,
    };
    this.resolveExited(this.result);
    this.emit('exit', this.result);
  }
}

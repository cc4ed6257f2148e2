/**
 * RunnerPool: sandboxed plugin runners started ahead of time, so that loading a plugin does not pay
 * for Node's start-up.
 *
 * A pooled runner is a sandbox like spawnNode's (node and the warden package read-only, the pool's
 * seccomp profile, network, cgroup ceiling) running the runner, which has loaded node and its own
 * modules and waits for `$load`. It holds no plugin code. start() takes one, fits it to the
 * plugin's policy where that can be done in place, and sends the plugin:
 *
 * - files: read by the host (bounded), digested from exactly those bytes, sent in the load message
 *   and written by the runner to its private tmpfs at /plugin;
 * - `allowExec: false`: a seccomp filter that forbids starting programs is stacked on all threads
 *   before the plugin's code exists in the sandbox (the same as a cold start). In a pool without
 *   `allowExec` (the default) every runner stacks it while it warms up, so a load does not (0.3 to
 *   0.6 ms of the warm load), and a plugin that may start programs starts cold;
 * - limits: memory, pids and cpu are lowered in the sandbox's cgroup (never raised), cpuTime and
 *   timeout count from the load;
 * - env: set in process.env before the plugin loads.
 *
 * What cannot be changed in a running sandbox (binds, the seccomp profile, the network, rlimits,
 * stdio, the channel's sizes, variables node reads at start-up) is served cold: warmRefusal() says
 * why. A runner is handed out once and never returns to the pool; a replacement starts in the
 * background after each take. Idle runners cost no host CPU: the host waits on their pidfds and
 * eventfds in the event loop, with no timer per runner, and a runner waiting for `$load` sleeps in
 * epoll.
 */
import { LimitError } from '../errors';
import { DEFAULT_CALL_TIMEOUT_MS, DEFAULT_LOAD_TIMEOUT_MS, DEFAULT_READY_TIMEOUT_MS, MAX_POOL_SIZE } from '../defaults';
import { releasePreparedMounts } from '../sandbox/plan';
import { checkRange } from '../sandbox/ids';
import { resolveLimits, type LimitsOptions, type ResolvedLimits } from '../limits/options';
import { memoryRoom } from '../limits/sandbox-cgroup';
import { parseSize } from '../limits/units';
import type { PluginProcess } from '../process/plugin-process';
import {
  execGuardFilters, launchNodeRunner, loadSetupFor, preparePlugin, spawnNode, tmpfsBytesFor, type PreparedPlugin, type SpawnNodeOptions,
} from '../process/spawn-node';
import type { StdioOption } from '../sandbox/types';
import { DEFAULT_TREE_LIMITS, type TreeLimits } from '../trust/tree';
import { InvalidOptionError } from '../errors';

export interface RunnerPoolOptions {
  /** Idle runners kept ready; 0 disables the pool (every start is cold). */
  size: number;
  /** The pooled sandboxes' seccomp profile. Default 'strict'. Only plugins asking for the same are served warm. */
  seccomp?: 'strict' | 'default';
  /** The pooled sandboxes share the host's network. Default false. Only plugins asking for the same are served warm. */
  shareNet?: boolean;
  /**
   * The pooled runners may start programs. Default false: each stacks the exec guard (the seccomp
   * filter a plugin without `allowExec` gets) while it warms up, and only plugins without
   * `allowExec` are served warm. With true, the guard is stacked at each load that needs it.
   */
  allowExec?: boolean;
  /**
   * The pooled sandboxes' own ceiling (memory, swap, pids, cpu). A plugin is served warm when each
   * of its limits is at most the ceiling's (it is lowered in place); a plugin without a limit the
   * ceiling has, or above it, starts cold. Without a ceiling, only plugins without limits are warm.
   */
  limits?: LimitsOptions;
  /** Largest plugin tree a pooled runner can receive (its /plugin tmpfs is sized for it). Default 10000 entries, 64 MiB. */
  treeLimits?: TreeLimits;
  /** stdio of the pooled runners. Default: stdin ignored, stdout and stderr inherited. */
  stdio?: readonly [StdioOption, StdioOption, StdioOption];
  /** Milliseconds a runner may take to start before it is given up. Default 10000. */
  readyTimeout?: number;
  /**
   * As root: the range the runners' host ids are drawn from (see SpawnOptions.hostIds). Each runner
   * has an id of its own from its start, and serves one plugin only. Only plugins asking for the
   * same range are served warm.
   */
  hostIds?: { first: number; count: number };
}

export interface RunnerPoolStats {
  /** Runners ready and waiting. */
  idle: number;
  /** Runners being started (or about to be, in the next turn of the event loop). */
  starting: number;
  /** Plugins handed a pooled runner (whether or not their load then succeeded) / started cold, so far. */
  warm: number;
  cold: number;
}

/** What a start returns: the plugin's handle, which says whether a pooled runner served it. */
export type PooledPlugin = PluginProcess & { warm: boolean };

interface Runner {
  handle: PluginProcess | undefined;
  taken: boolean;
}

const DEFAULT_STDIO: readonly [StdioOption, StdioOption, StdioOption] = ['ignore', 'inherit', 'inherit'];
/** Read by node (or the loader) at start-up: a variable set in a running runner would not take effect. */
const STARTUP_ENV = /^(NODE_|UV_|LD_|MALLOC_|GLIBC_TUNABLES$|OPENSSL_|SSL_CERT_)/;
const MAX_BACKOFF_MS = 30_000;

export class RunnerPool {
  private readonly size: number;
  private readonly seccomp: 'strict' | 'default';
  private readonly shareNet: boolean;
  /** The exec guard every runner stacks while it warms up, or undefined (allowExec: true). */
  private readonly execGuard: Uint8Array[] | undefined;
  private readonly limitsOption: LimitsOptions | undefined;
  private readonly ceiling: ResolvedLimits | undefined;
  private readonly treeLimits: Required<TreeLimits>;
  private readonly stdio: readonly [StdioOption, StdioOption, StdioOption];
  private readonly readyTimeout: number;
  private readonly hostIds: { first: number; count: number } | undefined;

  private readonly idle: Runner[] = [];
  /** Warm starts reading their plugin's tree, each about to take an idle runner. */
  private preparing = 0;
  private readonly starting = new Set<Runner>();
  /** Every runner not handed out yet, whatever its state: close() waits for each to be gone. */
  private readonly own = new Set<Runner>();
  private readonly launches = new Set<Promise<void>>();
  private readonly idleWaiters: Array<{ count: number; resolve: () => void }> = [];
  private counts = { warm: 0, cold: 0 };
  private closed = false;
  private fillScheduled = false;
  private failures = 0;
  private backoff: NodeJS.Timeout | undefined;
  /** The last reason a pooled runner could not be started or died while idle. */
  lastError: Error | undefined;

  constructor(options: RunnerPoolOptions) {
    if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object { size, ... }');
    const { size } = options;
    if (typeof size !== 'number' || !Number.isInteger(size) || size < 0 || size > MAX_POOL_SIZE) throw new InvalidOptionError('size', `must be a whole number from 0 (disabled) to ${MAX_POOL_SIZE}`);
    this.size = size;
    const seccomp = options.seccomp ?? 'strict';
    if (seccomp !== 'strict' && seccomp !== 'default') throw new InvalidOptionError('seccomp', "a pool runs 'strict' or 'default'; other policies start cold");
    this.seccomp = seccomp;
    if (options.shareNet !== undefined && typeof options.shareNet !== 'boolean') throw new InvalidOptionError('shareNet', 'must be true or false');
    this.hostIds = options.hostIds === undefined ? undefined : checkRange('hostIds', options.hostIds);
    this.shareNet = options.shareNet === true;
    if (options.allowExec !== undefined && typeof options.allowExec !== 'boolean') throw new InvalidOptionError('allowExec', 'must be true or false');
    this.execGuard = options.allowExec === true ? undefined : execGuardFilters();
    if (options.limits !== undefined) {
      const l = resolveLimits(options.limits);
      for (const k of ['cpuTime', 'timeout'] as const) {
        if (l[k] !== undefined) throw new InvalidOptionError(`limits.${k}`, "is not a ceiling: a plugin's own budget starts when it loads");
      }
      if (l.io.length > 0) throw new InvalidOptionError('limits.io', 'is set per plugin (served cold), not on a pool');
      this.ceiling = l;
      this.limitsOption = options.limits;
    }
    this.treeLimits = { ...DEFAULT_TREE_LIMITS, ...(options.treeLimits ?? {}) };
    this.stdio = options.stdio ?? DEFAULT_STDIO;
    this.readyTimeout = options.readyTimeout ?? DEFAULT_READY_TIMEOUT_MS;
    this.scheduleFill();
  }

  stats(): RunnerPoolStats {
    return { idle: this.idle.length, starting: this.starting.size + (this.fillScheduled ? Math.max(0, this.size - this.idle.length - this.starting.size) : 0), warm: this.counts.warm, cold: this.counts.cold };
  }

  /** Resolves once at least `count` runners (default: the pool's size) are idle, or the pool is closed. */
  waitIdle(count = this.size): Promise<void> {
    if (this.closed || this.idle.length >= Math.min(count, this.size)) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push({ count: Math.min(count, this.size), resolve }));
  }

  /** Why these options cannot be served by a pooled runner, or undefined when they can. */
  warmRefusal(options: SpawnNodeOptions): string | undefined {
    const o = options ?? {};
    if (this.size === 0) return 'the pool is disabled (size 0)';
    if (this.closed) return 'the pool is closed';
    if (o.pluginFiles === 'bind') return "pluginFiles: 'bind' binds the plugin's directory when the sandbox is made; a pooled sandbox receives the files over the channel";
    if (o.binds !== undefined && o.binds.length > 0) return 'binds: a pooled sandbox has no per-plugin binds';
    const seccomp = o.seccomp ?? 'strict';
    if (typeof seccomp !== 'string') return 'seccomp: a custom policy is compiled into the sandbox at start; only the named profiles are pooled';
    if (seccomp !== this.seccomp) return `seccomp: the pool's runners run '${this.seccomp}', the plugin asks for '${seccomp}' (a profile is set at start; a stacked filter could narrow but not name violations)`;
    if (o.network !== undefined) return 'network: a network policy is set when a sandbox starts';
    if (o.allowExec === true && this.execGuard !== undefined) return "allowExec: the pool's runners stacked the exec guard while they warmed up (give the pool allowExec: true to serve such plugins warm)";
    if ((o.shareNet === true) !== this.shareNet) return `shareNet: the pool's runners ${this.shareNet ? 'share' : 'do not share'} the host's network; a network namespace is chosen at start`;
    if (o.rlimits !== undefined && Object.keys(o.rlimits).length > 0) return 'rlimits: set at start; a pooled runner has the defaults';
    if (o.hostIds?.first !== this.hostIds?.first || o.hostIds?.count !== this.hostIds?.count) return "hostIds: a pooled runner's host ids were drawn at its start, from the pool's range";
    if (o.tmpSize !== undefined) {
      let bytes: number | undefined;
      try {
        bytes = parseSize('tmpSize', o.tmpSize);
      } catch (e) {
        return (e as Error).message; // the cold start reports it as the error it is
      }
      if (bytes !== 64 * 1024 * 1024) return 'tmpSize: /tmp is mounted at start with the default 64 MiB';
    }
    if (o.stdio !== undefined && JSON.stringify(o.stdio) !== JSON.stringify(this.stdio)) return `stdio: the pool's runners have ${JSON.stringify(this.stdio)}`;
    if (o.ringSize !== undefined) return 'ringSize: the channel is made at start with the default size';
    if (o.maxMessage !== undefined) return 'maxMessage: the channel is made at start with the default';
    if (o.channelLimits !== undefined) return "channelLimits: the channel's bounds are set at start to the defaults";
    for (const k of Object.keys(o.env ?? {})) {
      if (STARTUP_ENV.test(k)) return `env.${k}: read at start-up; only a cold start honours it`;
    }
    if (o.tree !== undefined && (o.tree.bytes > this.treeLimits.maxBytes || o.tree.files.length > this.treeLimits.maxFiles)) {
      return `tree: ${o.tree.files.length} entries, ${o.tree.bytes} bytes, more than a pooled runner takes (${this.treeLimits.maxFiles}, ${this.treeLimits.maxBytes})`;
    }
    if (o.limits !== undefined) return this.limitsRefusal(o.limits);
    if (this.ceiling !== undefined) {
      for (const k of ['memory', 'pids', 'cpu'] as const) {
        if (this.ceiling[k] !== undefined) return `limits.${k}: the pool's runners are capped at ${this.ceiling[k]}; the plugin asks for no limit`;
      }
    }
    return undefined;
  }

  private limitsRefusal(limits: LimitsOptions): string | undefined {
    let l: ResolvedLimits;
    try {
      l = resolveLimits(limits);
    } catch (e) {
      return (e as Error).message; // the cold start reports it as the error it is
    }
    const c = this.ceiling;
    if (c === undefined) return "limits: the pool's runners have no cgroup to lower (give the pool a `limits` ceiling)";
    if (l.io.length > 0) return 'limits.io: block throttles are set at start';
    for (const k of ['memory', 'pids', 'cpu'] as const) {
      const want = l[k];
      const have = c[k];
      if (want === undefined && have !== undefined) return `limits.${k}: the pool's runners are capped at ${have}; the plugin asks for no limit`;
      if (want !== undefined && have === undefined) return `limits.${k}: the pool's runners have no ${k} limit to lower`;
      if (want !== undefined && want > have!) return `limits.${k}: ${want} is above the pool's ceiling ${have}`;
    }
    if (l.memory !== undefined && l.swap > c.swap) return `limits.swap: ${l.swap} is above the pool's ${c.swap}`;
    return undefined;
  }

  /**
   * Starts the plugin: warm from the pool when `warmRefusal(options)` is undefined and a runner is
   * ready, cold (spawnNode) otherwise. Either way the plugin's files are copied ('copy', unless
   * options.pluginFiles is 'bind'), so a plugin sees the same sandbox warm or cold. The handle says
   * which (`handle.warm`).
   */
  async start(entry: string, options: SpawnNodeOptions = {}): Promise<PooledPlugin> {
    if (this.closed) throw new Error('the runner pool is closed');
    if (options.allowExec !== undefined && typeof options.allowExec !== 'boolean') throw new InvalidOptionError('allowExec', 'must be true or false');
    const files = options.pluginFiles ?? 'copy';
    if (this.warmRefusal({ ...options, pluginFiles: files }) === undefined && this.idle.length > 0) {
      // Read (and check) the tree before taking a runner: a refused tree uses none. The runner
      // likely to be taken is woken first: it spins for the `$load` while the host reads the tree
      // and fits the limits, instead of being woken by it (~0.4 ms here). Starts reading their
      // trees at once take the first idle runners in some order: each wakes one of them.
      this.idle[this.preparing]?.handle?.wake();
      this.preparing++;
      let p: PreparedPlugin;
      try {
        p = await preparePlugin(entry, options, 'copy');
      } finally {
        this.preparing--;
      }
      const runner = this.warmRefusal({ ...options, tree: p.tree }) === undefined ? this.take() : undefined;
      if (runner !== undefined) {
        try {
          return await this.startWarm(runner.handle!, entry, options, p);
        } finally {
          this.scheduleFill();
        }
      }
      return this.startCold(entry, { ...options, pluginFiles: 'copy', tree: p.tree });
    }
    // Cold: spawnNode reads the tree while node starts.
    return this.startCold(entry, { ...options, pluginFiles: files });
  }

  private async startCold(entry: string, options: SpawnNodeOptions): Promise<PooledPlugin> {
    const handle = (await spawnNode(entry, options)) as PooledPlugin;
    handle.warm = false;
    this.counts.cold++;
    return handle;
  }

  private async startWarm(handle: PluginProcess, entry: string, options: SpawnNodeOptions, p: PreparedPlugin): Promise<PooledPlugin> {
    handle.warm = true;
    handle.digest = p.tree?.digest;
    handle.sigsysMeans = options.allowExec === true ? undefined : 'execve';
    handle.setTimeout(options.timeout ?? DEFAULT_CALL_TIMEOUT_MS);
    if (options.handlers !== undefined) handle.setHandlers(options.handlers);
    // A runner of a pool with the exec guard has it already (warmRefusal sends allowExec plugins
    // cold); the environment was not known when it was spawned.
    const setup = loadSetupFor(options, p.tree, { envSet: false, guardStacked: this.execGuard !== undefined });
    const fit = options.limits !== undefined;
    // The files count toward the runner's memory once written: whether they fit under the plugin's
    // limit is decided now, from what the runner uses before them, not by how far it got writing.
    if (fit && !roomFor(handle, options.limits!, p.tree?.bytes ?? 0)) {
      handle.kill();
      return this.startCold(entry, { ...options, pluginFiles: 'copy', tree: p.tree });
    }
    // `$load` goes first: the runner writes the files while the limits are lowered here, and waits
    // for `$go` before any code of the plugin runs (awaitGo), so none runs under the pool's ceiling.
    // Lowering them first made the runner wait for it (0.25-0.3 ms of a warm start here).
    const loading = handle.load(p.entry, options.config, fit ? { ...setup, awaitGo: true } : setup, options.loadTimeout ?? DEFAULT_LOAD_TIMEOUT_MS);
    loading.catch(() => undefined); // awaited below, unless this runner is given up
    if (fit) {
      try {
        handle.process.narrowLimits!(options.limits);
      } catch (e) {
        // This runner cannot be fitted (a missing controller, its memory grown meanwhile): it never
        // gets its `$go`, it is killed, and the plugin starts cold at once (its end is not awaited).
        handle.kill();
        if (!(e instanceof LimitError)) throw e;
        return this.startCold(entry, { ...options, pluginFiles: 'copy', tree: p.tree });
      }
      handle.go();
    }
    this.counts.warm++;
    await loading;
    return handle as PooledPlugin;
  }

  /** The next ready runner, removed from the pool for good. */
  private take(): Runner | undefined {
    const r = this.idle.shift();
    if (r === undefined) return undefined;
    r.taken = true;
    this.own.delete(r);
    return r;
  }

  private scheduleFill(): void {
    if (this.closed || this.fillScheduled || this.backoff !== undefined) return;
    if (this.idle.length + this.starting.size >= this.size) return;
    this.fillScheduled = true;
    // Not in the caller's turn: preparing a launch (plan, cgroup directories) takes about a
    // millisecond of this thread; the launch itself runs on the addon's launch thread.
    setImmediate(() => {
      this.fillScheduled = false;
      if (this.closed || this.backoff !== undefined || this.idle.length + this.starting.size >= this.size) return;
      const launch = this.launchOne();
      this.launches.add(launch);
      void launch.finally(() => this.launches.delete(launch));
      this.scheduleFill(); // one spawn per turn
    });
  }

  private async launchOne(): Promise<void> {
    const r: Runner = { handle: undefined, taken: false };
    this.starting.add(r);
    this.own.add(r);
    let handle: PluginProcess;
    try {
      handle = await launchNodeRunner({
        seccomp: this.seccomp,
        shareNet: this.shareNet,
        hostIds: this.hostIds,
        limits: this.limitsOption,
        stdio: this.stdio,
        pluginTmpfs: tmpfsBytesFor(this.treeLimits.maxBytes, this.treeLimits.maxFiles),
      });
    } catch (e) {
      this.starting.delete(r);
      this.own.delete(r);
      this.failed(e as Error);
      return;
    }
    r.handle = handle;
    if (this.closed) handle.kill();
    void handle.exited.then((x) => {
      if (r.taken) return; // the plugin's now
      this.own.delete(r);
      const wasIdle = this.idle.indexOf(r);
      if (wasIdle >= 0) this.idle.splice(wasIdle, 1);
      this.starting.delete(r);
      if (!this.closed) this.failed(new Error(`a pooled runner exited while idle (${x.signal ? `signal ${x.signal}` : `code ${x.code}`})`));
    });
    const timer = setTimeout(() => handle.kill(), this.readyTimeout);
    let warmed = false;
    await Promise.race([
      handle.ready.then(() => handle.warmUp(this.readyTimeout, this.execGuard)).then(() => {
        warmed = true;
      }),
      handle.exited,
    ]).catch(() => undefined);
    clearTimeout(timer);
    // A runner whose warm-up failed (its exec guard may be missing) is never idle: killed here, its
    // exit handled above. It used to be pushed idle until its exit was seen, and could be taken.
    if (!warmed) {
      handle.kill();
      return;
    }
    if (!this.starting.has(r)) return; // died while starting (reported above)
    this.starting.delete(r);
    if (this.closed) {
      handle.kill();
      return;
    }
    this.failures = 0;
    this.idle.push(r);
    for (let i = this.idleWaiters.length - 1; i >= 0; i--) {
      if (this.idle.length >= this.idleWaiters[i]!.count) this.idleWaiters.splice(i, 1)[0]!.resolve();
    }
  }

  /** A runner failed to start or died idle: retry later, backing off while it keeps happening. */
  private failed(e: Error): void {
    this.lastError = e;
    this.failures++;
    if (this.closed || this.backoff !== undefined) return;
    const delay = Math.min(MAX_BACKOFF_MS, 100 * 2 ** Math.min(this.failures - 1, 16));
    this.backoff = setTimeout(() => {
      this.backoff = undefined;
      this.scheduleFill();
    }, delay);
  }

  /**
   * Kills the idle runners (and those starting) and waits until nothing of them is left: no process,
   * cgroup or fd. Until then the pool keeps the host's event loop alive, as its sandboxes do.
   * Plugins already started are theirs to close.
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.backoff !== undefined) clearTimeout(this.backoff);
    this.backoff = undefined;
    for (const w of this.idleWaiters.splice(0)) w.resolve();
    this.idle.length = 0;
    for (const r of this.own) r.handle?.kill();
    // A launch still under way gets its handle, sees `closed` and kills it.
    await Promise.all([...this.launches]);
    const left = [...this.own];
    for (const r of left) r.handle?.kill();
    await Promise.all(left.map((r) => r.handle?.exited));
    this.starting.clear();
    releasePreparedMounts();
    // The handles' fds (eventfds, pidfds) are closed by libuv in its close-callback phase, which
    // follows the check phase: two immediates later they are gone.
    await new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)));
  }
}

/**
 * Whether the plugin's files (`bytes`, written to the runner's tmpfs, charged to its memory) fit
 * under its memory limit beside what the runner uses now, by the rule narrow() applies to the use
 * alone (memoryRoom). No memory limit, or no reading: yes (narrow decides).
 */
function roomFor(handle: PluginProcess, limits: LimitsOptions, bytes: number): boolean {
  const memory = resolveLimits(limits).memory;
  if (memory === undefined) return true;
  const used = handle.process.stats?.(new Set(['memoryCurrent']))?.memory.current;
  return used === undefined || memoryRoom(used + bytes, memory);
}

/**
 * spawnNode: the plugin runner (lib/runner) in a sandbox (lib/sandbox), as a PluginProcess. Only
 * node and the warden package are visible, read-only, plus the plugin: its directory bound
 * read-only (`pluginFiles: 'bind'`) or its files read and digested here (trust/tree), sent over the
 * channel and written to a tmpfs of the sandbox's own (`'copy'`). No network namespace is shared;
 * the seccomp profile defaults to 'strict'; without `allowExec` the runner stacks a filter that
 * forbids execve before the plugin's code loads. The channel's host side is ./plugin-process.ts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { DEFAULT_LOAD_TIMEOUT_MS } from '../defaults';
import { InvalidOptionError } from '../errors';
import { NO_EXEC_POLICY } from '../policy/profiles';
import type { NetworkEvent } from '../net/policy';
import type { LoadSetup, WireEntry } from '../runner-protocol';
import { Sandbox } from '../sandbox/sandbox';
import { compiledStacked } from '../sandbox/seccomp';
import type { BindMount, SpawnOptions } from '../sandbox/types';
import { DigestMismatchError } from '../trust/errors';
import { DEFAULT_TREE_LIMITS, readPluginTree, type PluginTree, type TreeLimits } from '../trust/tree';
import { launchRunner, type PluginProcess, type RunnerOptions } from './plugin-process';

/** Where a plugin sent over the channel is written inside the sandbox (a tmpfs of its own). */
export const PLUGIN_ROOT = '/plugin';

export interface SpawnNodeOptions extends Omit<RunnerOptions, 'plugin'> {
  /** The plugin's directory (bound, or read and sent). Default: the entry's directory. */
  pluginDir?: string;
  /** Default 'strict'. */
  seccomp?: SpawnOptions['seccomp'];
  rlimits?: SpawnOptions['rlimits'];
  tmpSize?: SpawnOptions['tmpSize'];
  /** Default: stdin ignored, stdout and stderr inherited. */
  stdio?: SpawnOptions['stdio'];
  /** Further read-only or writable binds. */
  binds?: readonly BindMount[];
  /** cgroup limits of the runner's sandbox (see SpawnOptions.limits). */
  limits?: SpawnOptions['limits'];
  /** Share the host's network (no network namespace; inet sockets allowed). Default false. */
  shareNet?: boolean;
  /** As root: the range the sandbox's host uid/gid is drawn from (see SpawnOptions.hostIds). */
  hostIds?: SpawnOptions['hostIds'];
  /** A network policy (see SpawnOptions.network); its decisions go to `onNetwork`. */
  network?: SpawnOptions['network'];
  onNetwork?: (e: NetworkEvent) => void;
  /**
   * The `sys:exec` permission: the plugin may run programs. Default false: after node has started
   * and before the plugin's code is loaded, the runner stacks a seccomp filter on all its threads
   * that kills the sandbox on execve/execveat; the host reports it as a `seccomp` violation naming
   * `execve`.
   */
  allowExec?: boolean;
  /**
   * How the plugin's files reach the sandbox.
   * - 'bind' (spawnNode's default): `pluginDir` is bound read-only at its host path.
   * - 'copy' (RunnerPool's, warm or cold): the host reads the tree (bounded by `treeLimits`),
   *   digests exactly those bytes and sends them with the load message; the runner writes them to
   *   a tmpfs of its own at /plugin and loads from there. What was digested is what runs.
   */
  pluginFiles?: 'bind' | 'copy';
  /** 'copy': the tree already read (readPluginTree), e.g. to check its digest first. Implies 'copy'. */
  tree?: PluginTree;
  /** 'copy': refuse to start (DigestMismatchError) unless the tree's digest is this. */
  digest?: string;
  /** 'copy': bounds of the tree read from `pluginDir`. */
  treeLimits?: TreeLimits;
}

const NODE_ADDRESS_SPACE_OVERHEAD = 1024 * 1024 * 1024;
const PACKAGE_DIR = path.resolve(__dirname, '..', '..', '..');

/** What the runner's sandbox is made of, apart from the plugin. */
export interface RunnerSandboxOptions extends Pick<SpawnNodeOptions,
  'seccomp' | 'rlimits' | 'tmpSize' | 'stdio' | 'binds' | 'limits' | 'shareNet' | 'hostIds' | 'network' | 'onNetwork' | 'env' | 'ringSize' | 'maxMessage' | 'timeout' | 'handlers'> {
  /** A directory to bind read-only (the plugin's, for 'bind'). */
  pluginDir?: string;
  /** Bytes of the tmpfs at /plugin that receives a copied tree; none when undefined. */
  pluginTmpfs?: number;
}

let nodeBinary: { node: string; underSystem: boolean; packageDir: string } | undefined;

/** Starts a sandboxed runner that waits for its plugin (`handle.load`). */
export function launchNodeRunner(options: RunnerSandboxOptions): Promise<PluginProcess> {
  if (nodeBinary === undefined) {
    const node = fs.realpathSync(process.execPath);
    // The default system binds already show /usr and friends; only a node installed elsewhere needs its own.
    // A bind never goes through a symlink: this package, reached by a linked node_modules say, is
    // bound from its real path to where the runner's command names it.
    nodeBinary = { node, underSystem: ['/usr/', '/bin/', '/lib/', '/lib64/'].some((d) => node.startsWith(d)), packageDir: fs.realpathSync(PACKAGE_DIR) };
  }
  const { node, underSystem, packageDir } = nodeBinary;
  const binds: BindMount[] = [
    // The node binary and this package are the host's own files, chosen by it, which no sandbox can
    // write: opened with the host's rights, so that a package installed under a 0700 directory
    // (/root, a mkdtemp checkout) still runs its plugins. Symlinks are refused all the same.
    ...(underSystem ? [] : [{ source: node, hostAccess: true }]),
    { source: packageDir, target: PACKAGE_DIR, hostAccess: true },
    ...(options.pluginDir === undefined ? [] : [{ source: options.pluginDir }]),
    ...(options.binds ?? []),
  ];
  return launchRunner(
    async (req) => {
      // On the addon's launch thread: the host's event loop runs on while the sandbox is set up.
      const sb = await Sandbox.launch({
        command: [node, ...req.command.slice(1)],
        env: req.env,
        binds: [...binds, ...(req.binds ?? []).map((source) => ({ source, hostAccess: true }))],
        tmpfs: options.pluginTmpfs === undefined ? undefined : [{ target: PLUGIN_ROOT, size: options.pluginTmpfs }],
        fds: req.fds,
        seccomp: options.seccomp ?? 'strict',
        stdio: options.stdio ?? ['ignore', 'inherit', 'inherit'],
        rlimits: options.rlimits,
        tmpSize: options.tmpSize,
        // Node reserves ~0.7 GB of address space it never touches: an RLIMIT_AS standing in for a
        // memory limit (degraded mode) must leave room for it, or the runner cannot even start.
        limits: options.limits?.allowDegraded && options.limits.addressSpaceOverhead === undefined ? { ...options.limits, addressSpaceOverhead: NODE_ADDRESS_SPACE_OVERHEAD } : options.limits,
        shareNet: options.shareNet,
        hostIds: options.hostIds,
        ...(options.network !== undefined ? { network: options.network } : {}),
      });
      if (options.onNetwork !== undefined) sb.on('network', options.onNetwork);
      return {
        pid: sb.pid,
        exited: sb.exited,
        kill: (s) => {
          sb.kill(s);
        },
        on: (event, listener) => sb.on(event, listener),
        narrowLimits: (l) => sb.narrowLimits(l as NonNullable<SpawnOptions['limits']>),
        stats: (only) => sb.stats(only),
      };
    },
    options,
  );
}

/**
 * tmpfs bytes for a tree: its contents plus a page per entry (tmpfs rounds each file up), and slack,
 * rounded up to a power of two (at least 4 MiB). The rounding lets plugins of similar size share one
 * prepared mount list (lib/sandbox/plan.ts), so a cold load reuses its template root instead of
 * building one per plugin. The size is a ceiling, not an allocation, and what is written there is
 * charged to the plugin's memory limit.
 */
export function tmpfsBytesFor(bytes: number, entries: number): number {
  const need = bytes + entries * 4096 + (1 << 20);
  let size = 4 << 20;
  while (size < need) size *= 2;
  return size;
}

export function wireTree(tree: PluginTree): LoadSetup['tree'] {
  const entries: WireEntry[] = tree.files.map((e) =>
    e.kind === 'd' ? ['d', e.path] : e.kind === 'f' ? ['f', e.path, e.mode ?? 0o644, e.data ?? Buffer.alloc(0)] : ['l', e.path, e.target ?? '']);
  return { root: PLUGIN_ROOT, entries };
}

/** Where `entry` is inside the sandbox when its tree is copied, after checking it is a file of the tree. */
export function entryInTree(entry: string, pluginDir: string, tree: PluginTree): string {
  const rel = path.relative(pluginDir, entry).split(path.sep).join('/');
  const found = tree.files.find((e) => e.path === rel);
  if (found === undefined || found.kind === 'd') throw new InvalidOptionError('entry', `'${entry}' is not a file of the plugin tree read from ${tree.root}`);
  return `${PLUGIN_ROOT}/${rel}`;
}

export interface PreparedPlugin {
  pluginDir: string;
  /** Present for 'copy'. */
  tree?: PluginTree;
  /** The entry as the runner sees it. */
  entry: string;
}

/** Validates entry and pluginDir, and reads (and checks) the tree for 'copy'. Nothing is started. */
function checkEntry(entry: string, options: SpawnNodeOptions): string {
  if (typeof entry !== 'string' || !path.isAbsolute(entry)) throw new InvalidOptionError('entry', 'must be an absolute path to the plugin module');
  const pluginDir = path.resolve(options.pluginDir ?? path.dirname(entry));
  if (path.relative(pluginDir, entry).startsWith('..')) throw new InvalidOptionError('pluginDir', 'must contain the entry');
  return pluginDir;
}

export async function preparePlugin(entry: string, options: SpawnNodeOptions, defaultFiles: 'bind' | 'copy'): Promise<PreparedPlugin> {
  const pluginDir = checkEntry(entry, options);
  const files = options.pluginFiles ?? (options.tree !== undefined ? 'copy' : defaultFiles);
  if (files !== 'bind' && files !== 'copy') throw new InvalidOptionError('pluginFiles', "must be 'bind' or 'copy'");
  if (files === 'bind') {
    if (options.tree !== undefined || options.digest !== undefined) throw new InvalidOptionError('pluginFiles', "'bind' cannot use tree or digest: the directory is read by the sandbox, not by the host; use 'copy'");
    return { pluginDir, entry };
  }
  const tree = options.tree ?? (await readPluginTree(pluginDir, options.treeLimits));
  if (options.digest !== undefined && options.digest !== tree.digest) throw new DigestMismatchError(pluginDir, '(as given)', options.digest, tree.digest);
  return { pluginDir, tree, entry: entryInTree(entry, pluginDir, tree) };
}

/** The seccomp programs a runner stacks when its plugin may not start programs (allowExec false). */
export function execGuardFilters(): Uint8Array[] {
  return [compiledStacked(NO_EXEC_POLICY)];
}

/** What the runner already holds, so `$load` need not carry it. */
export interface RunnerState {
  /** Set to false for a runner spawned for this plugin: `$load` carries its environment. */
  envSet: boolean;
  /** The runner stacked the exec guard before the load (a pool's warm-up). */
  guardStacked: boolean;
}

/** What `$load` carries for these options: the environment, the exec guard and the copied tree. */
export function loadSetupFor(options: Pick<SpawnNodeOptions, 'allowExec' | 'env'>, tree: PluginTree | undefined, runner: RunnerState): LoadSetup | undefined {
  const setup: LoadSetup = {};
  if (!runner.envSet && options.env !== undefined && Object.keys(options.env).length > 0) setup.env = { ...options.env };
  if (options.allowExec !== true && !runner.guardStacked) setup.filters = execGuardFilters();
  if (tree !== undefined) setup.tree = wireTree(tree);
  return Object.keys(setup).length === 0 ? undefined : setup;
}

export async function spawnNode(entry: string, options: SpawnNodeOptions = {}): Promise<PluginProcess> {
  if (options.allowExec !== undefined && typeof options.allowExec !== 'boolean') throw new InvalidOptionError('allowExec', 'must be true or false');
  let handle: PluginProcess;
  let p: PreparedPlugin;
  if (options.pluginFiles === 'copy' && options.tree === undefined) {
    // Node takes tens of milliseconds to start: read the tree meanwhile. The runner holds no plugin
    // code until the load below, which happens only once the tree passed every check.
    checkEntry(entry, options);
    const limits = { ...DEFAULT_TREE_LIMITS, ...(options.treeLimits ?? {}) };
    handle = await launchNodeRunner({ ...options, pluginDir: undefined, pluginTmpfs: tmpfsBytesFor(limits.maxBytes, limits.maxFiles) });
    try {
      p = await preparePlugin(entry, options, 'copy');
    } catch (e) {
      handle.kill();
      await handle.exited;
      throw e;
    }
  } else {
    p = await preparePlugin(entry, options, 'bind');
    handle = await launchNodeRunner({
      ...options,
      pluginDir: p.tree === undefined ? p.pluginDir : undefined,
      pluginTmpfs: p.tree === undefined ? undefined : tmpfsBytesFor(p.tree.bytes, p.tree.files.length),
    });
  }
  handle.sigsysMeans = options.allowExec === true ? undefined : 'execve';
  handle.digest = p.tree?.digest;
  await handle.load(p.entry, options.config, loadSetupFor(options, p.tree, { envSet: true, guardStacked: false }), options.loadTimeout ?? DEFAULT_LOAD_TIMEOUT_MS);
  return handle;
}

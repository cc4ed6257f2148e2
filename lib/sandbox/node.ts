/**
 * Sandbox.spawnNode: the plugin runner (lib/runner) in a sandbox. Only node, the warden package and
 * the plugin's directory are visible, all read-only; no network namespace is shared; the seccomp
 * profile defaults to 'strict'. The channel logic lives in lib/channel and lib/runner.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { InvalidOptionError } from '../errors';
import { startRunner, type PluginProcess, type RunnerOptions } from '../runner/host';
import { Sandbox } from './sandbox';
import type { BindMount, SpawnOptions } from './types';

export interface SpawnNodeOptions extends Omit<RunnerOptions, 'plugin'> {
  /** The directory made visible for the plugin (read-only). Default: the entry's directory. */
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
}

const NODE_ADDRESS_SPACE_OVERHEAD = 1024 * 1024 * 1024;
const PACKAGE_DIR = path.resolve(__dirname, '..', '..', '..');

export async function spawnNode(entry: string, options: SpawnNodeOptions = {}): Promise<PluginProcess> {
  if (typeof entry !== 'string' || !path.isAbsolute(entry)) throw new InvalidOptionError('entry', 'must be an absolute path to the plugin module');
  const pluginDir = path.resolve(options.pluginDir ?? path.dirname(entry));
  if (path.relative(pluginDir, entry).startsWith('..')) throw new InvalidOptionError('pluginDir', 'must contain the entry');
  const node = fs.realpathSync(process.execPath);
  // The default system binds already show /usr and friends; only a node installed elsewhere needs its own.
  const underSystem = ['/usr/', '/bin/', '/lib/', '/lib64/'].some((d) => node.startsWith(d));
  const binds: BindMount[] = [
    ...(underSystem ? [] : [{ source: node }]),
    { source: PACKAGE_DIR },
    { source: pluginDir },
    ...(options.binds ?? []),
  ];
  return startRunner(
    (req) => {
      const sb = Sandbox.spawn({
        command: [node, ...req.command.slice(1)],
        env: req.env,
        binds,
        fds: req.fds,
        seccomp: options.seccomp ?? 'strict',
        stdio: options.stdio ?? ['ignore', 'inherit', 'inherit'],
        rlimits: options.rlimits,
        tmpSize: options.tmpSize,
        // Node reserves ~0.7 GB of address space it never touches: an RLIMIT_AS standing in for a
        // memory limit (degraded mode) must leave room for it, or the runner cannot even start.
        limits: options.limits?.allowDegraded && options.limits.addressSpaceOverhead === undefined ? { ...options.limits, addressSpaceOverhead: NODE_ADDRESS_SPACE_OVERHEAD } : options.limits,
        shareNet: options.shareNet,
      });
      return {
        pid: sb.pid,
        exited: sb.exited,
        kill: (s) => {
          sb.kill(s);
        },
        on: (event, listener) => sb.on(event, listener),
      };
    },
    { ...options, plugin: entry },
  );
}

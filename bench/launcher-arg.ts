/**
 * `--launcher <module>` for the plugin benchmarks: a module exporting `launcher` (or a default export),
 * a PluginLauncher as PluginHost's `launcher` option takes it, and optionally `close()` to stop it (a
 * warm pool). Without the flag, PluginHost's default (spawnNode, cold) is used.
 */
import * as path from 'node:path';
import type { PluginLauncher } from '../lib/plugins';
import { argValue } from '../test/helpers/scale';

export interface LauncherChoice {
  name: string;
  launcher: PluginLauncher | undefined;
  close(): Promise<void>;
}

export async function launcherFromArgs(): Promise<LauncherChoice> {
  const spec = argValue('launcher');
  if (spec === undefined || spec === 'cold') return { name: 'spawnNode (cold)', launcher: undefined, close: async () => undefined };
  const mod = (await import(path.resolve(spec))) as { launcher?: PluginLauncher; default?: PluginLauncher | { launcher?: PluginLauncher }; close?: () => unknown };
  const fn = mod.launcher ?? (typeof mod.default === 'function' ? mod.default : mod.default?.launcher);
  if (typeof fn !== 'function') throw new Error(`--launcher ${spec}: the module exports no 'launcher' function`);
  return { name: path.basename(spec), launcher: fn, close: async () => { await mod.close?.(); } };
}

/**
 * Discovery: each directory given to the host holds plugins, one per subdirectory (hidden entries
 * and plain files are skipped). A subdirectory without a valid manifest is reported, not skipped
 * silently: an operator who dropped a plugin there wants to know why it did not load.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { PluginError, PluginManifestError } from './errors';
import { readManifest, type PluginManifest } from './manifest';

export interface Discovered {
  dir: string;
  manifest?: PluginManifest;
  error?: PluginError;
}

/** Every plugin directory under `roots`, read now. */
export function discoverPlugins(roots: readonly string[]): Discovered[] {
  return [...walkPluginDirs(roots)];
}

/**
 * The same, one directory at a time: a host with a thousand plugins reads a thousand manifests, and
 * lets its event loop turn between them (plugin-host.ts scan()).
 */
export function* walkPluginDirs(roots: readonly string[]): Generator<Discovered> {
  const byName = new Map<string, string>();
  for (const root of roots) {
    let names: string[];
    try {
      names = fs.readdirSync(root).sort();
    } catch (e) {
      yield { dir: root, error: new PluginManifestError(path.basename(root), root, '$', `the plugin directory cannot be read (${(e as NodeJS.ErrnoException).code})`) };
      continue;
    }
    for (const n of names) {
      if (n.startsWith('.')) continue;
      const dir = path.join(root, n);
      let st: fs.Stats;
      try {
        st = fs.statSync(dir);
      } catch {
        continue; // vanished while we looked (a rename during an update): the watcher will see it again
      }
      if (!st.isDirectory()) continue;
      try {
        const manifest = readManifest(dir);
        const seen = byName.get(manifest.name);
        if (seen !== undefined) {
          yield { dir, error: new PluginManifestError(manifest.name, manifest.file, 'name', `another plugin directory (${seen}) has the same name; names must be unique`) };
          continue;
        }
        byName.set(manifest.name, dir);
        yield { dir, manifest };
      } catch (e) {
        yield { dir, error: e instanceof PluginError ? e : new PluginManifestError(n, dir, '$', String(e)) };
      }
    }
  }
}

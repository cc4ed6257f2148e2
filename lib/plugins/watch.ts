/**
 * Watches the plugin directories and the trust list for hot reload. Linux inotify through fs.watch:
 * the parent directories (a plugin replaced by rename shows up there) and each plugin directory
 * (files edited in place). Events are debounced per plugin: an update writes many files, and the
 * reload should see the finished tree, not the first file of it.
 *
 * Not recursive: an edit deep inside a plugin's subdirectory is seen only when something at its top
 * level changes too (replace plugins by rename, or touch the manifest). No polling timers.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface WatchCallbacks {
  /** The plugin directory with this base name (under one of the roots) changed. */
  plugin(dirName: string): void;
  trust(): void;
}

export class PluginWatcher {
  private readonly watchers = new Map<string, fs.FSWatcher>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private closed = false;

  constructor(
    roots: readonly string[],
    trustFile: string,
    private readonly debounceMs: number,
    private readonly cb: WatchCallbacks,
  ) {
    for (const root of roots) {
      this.watch(root, (file) => {
        if (file === null || file.startsWith('.')) return;
        this.watchPlugin(path.join(root, file));
        this.fire(`p:${file}`, () => cb.plugin(file));
      });
      let names: string[] = [];
      try {
        names = fs.readdirSync(root);
      } catch {
        // reported by discovery
      }
      for (const n of names) if (!n.startsWith('.')) this.watchPlugin(path.join(root, n));
    }
    // Watch the directory of the trust list: editors and atomic writers replace the file by rename.
    const base = path.basename(trustFile);
    this.watch(path.dirname(trustFile), (file) => {
      if (file === base) this.fire('trust', () => cb.trust());
    });
  }

  private watchPlugin(dir: string): void {
    if (this.closed) return;
    const name = path.basename(dir);
    const old = this.watchers.get(dir);
    if (old !== undefined) {
      // A directory replaced by rename is a new inode: the old watch is dead, start over.
      old.close();
      this.watchers.delete(dir);
    }
    try {
      if (!fs.statSync(dir).isDirectory()) return;
    } catch {
      return;
    }
    this.watch(dir, () => this.fire(`p:${name}`, () => this.cb.plugin(name)));
  }

  private watch(dir: string, onEvent: (file: string | null) => void): void {
    try {
      const w = fs.watch(dir, { persistent: false }, (_ev, file) => onEvent(file === null ? null : String(file)));
      w.on('error', () => {
        w.close();
        this.watchers.delete(dir);
      });
      this.watchers.set(dir, w);
    } catch {
      // The directory is gone or unreadable; discovery reports it.
    }
  }

  private fire(key: string, fn: () => void): void {
    if (this.closed) return;
    const t = this.timers.get(key);
    if (t !== undefined) clearTimeout(t);
    const nt = setTimeout(() => {
      this.timers.delete(key);
      if (!this.closed) fn();
    }, this.debounceMs);
    nt.unref();
    this.timers.set(key, nt);
  }

  close(): void {
    this.closed = true;
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}

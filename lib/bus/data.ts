/**
 * The shared data of the bus: keys `OWNER/key`, each owner's values bounded in size and its
 * namespace by a quota (bytes and keys). Kept in memory; an adapter, when the host configures one,
 * persists each owner's namespace (FileDataAdapter: one file per owner, written atomically, in a
 * directory the host chooses; a plugin never names a path, only keys).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { WardenError } from '../errors';
import { sizeOver } from './size';

/** Persists the store: read once at start, written per owner after each change. */
export interface DataAdapter {
  load(): Map<string, Map<string, string>>;
  save(owner: string, entries: ReadonlyMap<string, string>): void;
}

/** One JSON file per owner (`encodeURIComponent(owner).json`) in `dir`, replaced by rename after fsync. */
export class FileDataAdapter implements DataAdapter {
  constructor(readonly dir: string) {
    if (!path.isAbsolute(dir)) throw new WardenError('ERR_INVALID_OPTION', `bus data directory '${dir}' must be an absolute path`);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  load(): Map<string, Map<string, string>> {
    const out = new Map<string, Map<string, string>>();
    for (const f of fs.readdirSync(this.dir)) {
      if (!f.endsWith('.json')) continue;
      const owner = decodeURIComponent(f.slice(0, -5));
      const raw = JSON.parse(fs.readFileSync(path.join(this.dir, f), 'utf8')) as Record<string, unknown>;
      const m = new Map<string, string>();
      for (const [k, v] of Object.entries(raw)) if (typeof v === 'string') m.set(k, v);
      out.set(owner, m);
    }
    return out;
  }

  save(owner: string, entries: ReadonlyMap<string, string>): void {
    const file = path.join(this.dir, `${encodeURIComponent(owner)}.json`);
    const tmp = `${file}.${process.pid}.tmp`;
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.writeSync(fd, JSON.stringify(Object.fromEntries(entries)));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    // A crash leaves the old file or the new one, never half of one.
    fs.renameSync(tmp, file);
  }
}

export interface DataLimits {
  maxValueBytes: number;
  quotaBytes: number;
  quotaKeys: number;
}

export class DataQuotaError extends WardenError {
  constructor(message: string) {
    super('ERR_BUS_QUOTA', message);
  }
}

/** What a key and its value count toward the quota: UTF-8 bytes (as the file holds them), not UTF-16 units. */
function bytes(key: string, text: string): number {
  return Buffer.byteLength(key) + Buffer.byteLength(text);
}

/** sizeOver's count of a value, against its JSON text, above which it cannot fit (see DataStore.set). */
const JSON_OVERCOUNT = 8;

/** Values are stored as JSON text: what goes in is what comes out, and its size is its length. */
export class DataStore {
  private readonly owners: Map<string, Map<string, string>>;
  private readonly used = new Map<string, number>();

  constructor(readonly limits: DataLimits, private readonly adapter?: DataAdapter) {
    this.owners = adapter?.load() ?? new Map();
    for (const [o, m] of this.owners) this.used.set(o, [...m].reduce((n, [k, v]) => n + bytes(k, v), 0));
  }

  get(owner: string, key: string): unknown {
    const v = this.owners.get(owner)?.get(key);
    return v === undefined ? undefined : JSON.parse(v);
  }

  set(owner: string, key: string, value: unknown): void {
    // Before JSON.stringify: a value that arrived by structured clone keeps its shared references,
    // and one of 249 bytes (each level an array holding the next twice) stands for 2^40 nodes as
    // JSON, which the stringify would spend the host's thread and memory writing out. sizeOver
    // counts the value as written out and stops past its bound. What JSON writes it counts at most
    // 4.5 times (a number: 9 against "1,"), so no value whose JSON fits is refused, except for the
    // parts JSON leaves out (a property set to undefined, a Map's or Set's contents).
    const bound = this.limits.maxValueBytes * JSON_OVERCOUNT;
    if (sizeOver(value, bound) > bound) {
      throw new DataQuotaError(`data value of '${owner}/${key}' is over ${this.limits.maxValueBytes} bytes as JSON (more than ${bound} bytes written out, shared parts counted each time)`);
    }
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch {
      text = undefined;
    }
    if (text === undefined) throw new TypeError(`data value of '${owner}/${key}' must be JSON (no undefined, functions or cycles)`);
    if (Buffer.byteLength(text) > this.limits.maxValueBytes) throw new DataQuotaError(`data value of '${owner}/${key}' is ${Buffer.byteLength(text)} bytes as JSON, more than ${this.limits.maxValueBytes}`);
    const m = this.owners.get(owner) ?? new Map<string, string>();
    const old = m.get(key);
    const used = (this.used.get(owner) ?? 0) - (old === undefined ? 0 : bytes(key, old)) + bytes(key, text);
    if (used > this.limits.quotaBytes) throw new DataQuotaError(`'${owner}' would hold ${used} bytes of data, more than its quota of ${this.limits.quotaBytes}`);
    if (old === undefined && m.size >= this.limits.quotaKeys) throw new DataQuotaError(`'${owner}' holds ${m.size} keys, its quota`);
    m.set(key, text);
    this.owners.set(owner, m);
    this.used.set(owner, used);
    this.adapter?.save(owner, m);
  }

  delete(owner: string, key: string): boolean {
    const m = this.owners.get(owner);
    const old = m?.get(key);
    if (m === undefined || old === undefined) return false;
    m.delete(key);
    this.used.set(owner, (this.used.get(owner) ?? 0) - bytes(key, old));
    this.adapter?.save(owner, m);
    return true;
  }

  /** Keys (without the owner) starting with `prefix`, sorted, at most `max`. */
  list(owner: string, prefix: string, max = 1000): string[] {
    const m = this.owners.get(owner);
    if (m === undefined) return [];
    return [...m.keys()].filter((k) => k.startsWith(prefix)).sort().slice(0, max);
  }

  /** Bytes held by `owner` (keys and JSON values). */
  usage(owner: string): number {
    return this.used.get(owner) ?? 0;
  }
}

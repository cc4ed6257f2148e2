/**
 * A throwaway plugin world for the plugin host tests: a plugins directory, a signing key, a trust
 * list signed with it, and a PluginHost wired to them. Everything lives in one temporary directory
 * readable by the sandbox's unprivileged uid.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import {
  addEntry, createTrustList, digestDirectory, generateSigningKey, serializeTrustList, signTrustList, TrustStore, writeResetState,
  type LevelTable, type PublicKey, type SigningKey, type TrustEntry, type TrustListDocument, type TrustStoreOptions,
} from '../../lib/trust';
import { PluginHost, type PluginHostOptions } from '../../lib/plugins';

export interface PluginSpec {
  version?: string;
  hostApi?: string;
  /** The plugin's index.js. */
  code: string;
  hooks?: string[];
  permissions?: string[];
  limits?: Record<string, string | number>;
  dependencies?: Record<string, string>;
  /** Bus declarations (lib/bus/grants.ts). */
  provides?: string[];
  consumes?: string[];
  /** More files, relative path → text. */
  files?: Record<string, string>;
}

export interface Grant {
  permissions?: string[];
  limits?: Record<string, number>;
  trust?: TrustEntry['trust'];
  /** The digest to list instead of digestDirectory's (a publisher whose tool does not refuse what ours does). */
  digest?: string;
  /** The entry's `added` time. */
  added?: string;
  publisher?: string;
}

export class PluginWorld {
  readonly root: string;
  readonly pluginsDir: string;
  readonly trustFile: string;
  readonly statePath: string;
  readonly auditPath: string;
  private key!: SigningKey;
  private version = 0;
  private readonly listed = new Map<string, TrustEntry>();

  private constructor() {
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-plugins-'));
    fs.chmodSync(this.root, 0o755);
    this.pluginsDir = path.join(this.root, 'plugins');
    fs.mkdirSync(this.pluginsDir, { mode: 0o755 });
    fs.mkdirSync(path.join(this.root, 'trust'), { mode: 0o755 });
    this.trustFile = path.join(this.root, 'trust', 'trust.json');
    this.statePath = path.join(this.root, 'trust-state.json');
    this.auditPath = path.join(this.root, 'audit.jsonl');
  }

  static async create(): Promise<PluginWorld> {
    const w = new PluginWorld();
    w.key = await generateSigningKey('test');
    // What an operator does before a host's first start (warden trust reset-state).
    await writeResetState(w.statePath, 'new test world');
    return w;
  }

  /** Writes the plugin's directory (replacing it, by rename, if it exists). Returns the directory. */
  writePlugin(name: string, spec: PluginSpec, dirName = name): string {
    const dir = path.join(this.pluginsDir, dirName);
    const staging = path.join(this.root, `.staging-${dirName}-${Date.now()}-${Math.random().toString(16).slice(2)}`);
    fs.mkdirSync(staging, { mode: 0o755 });
    fs.chmodSync(staging, 0o755);
    const manifest = {
      name,
      version: spec.version ?? '1.0.0',
      hostApi: spec.hostApi ?? '^1.0.0',
      hooks: spec.hooks ?? [],
      permissions: spec.permissions ?? [],
      ...(spec.limits ? { limits: spec.limits } : {}),
      ...(spec.dependencies ? { dependencies: spec.dependencies } : {}),
      ...(spec.provides ? { provides: spec.provides } : {}),
      ...(spec.consumes ? { consumes: spec.consumes } : {}),
    };
    fs.writeFileSync(path.join(staging, 'warden.json'), JSON.stringify(manifest, null, 2), { mode: 0o644 });
    fs.writeFileSync(path.join(staging, 'index.js'), spec.code, { mode: 0o644 });
    for (const [rel, text] of Object.entries(spec.files ?? {})) {
      fs.mkdirSync(path.dirname(path.join(staging, rel)), { recursive: true, mode: 0o755 });
      fs.writeFileSync(path.join(staging, rel), text, { mode: 0o644 });
    }
    if (fs.existsSync(dir)) {
      const old = `${staging}-old`;
      fs.renameSync(dir, old);
      fs.renameSync(staging, dir);
      fs.rmSync(old, { recursive: true, force: true });
    } else {
      fs.renameSync(staging, dir);
    }
    return dir;
  }

  /** Lists the plugin as its directory is now, with these grants (keeps earlier entries of other versions). */
  async trust(name: string, grant: Grant = {}, dirName = name): Promise<TrustEntry> {
    const dir = path.join(this.pluginsDir, dirName);
    const m = JSON.parse(fs.readFileSync(path.join(dir, 'warden.json'), 'utf8')) as { version: string };
    const e: TrustEntry = {
      name, version: m.version, digest: grant.digest ?? (await digestDirectory(dir)), publisher: grant.publisher ?? 'test', trust: grant.trust ?? 'standard',
      permissions: grant.permissions ?? [], limits: grant.limits ?? {}, ...(grant.added !== undefined ? { added: grant.added } : {}),
    };
    this.listed.set(`${name}@${m.version}`, e);
    return e;
  }

  /** Removes an entry (all versions when version is omitted). */
  untrust(name: string, version?: string): void {
    for (const k of [...this.listed.keys()]) if (k.startsWith(`${name}@`) && (version === undefined || k === `${name}@${version}`)) this.listed.delete(k);
  }

  /** Signs and writes the trust list (atomically, by rename), with a new version number (or `version`); `levels`: its trust levels table. */
  async publish(opts: { expires?: Date; version?: number; levels?: LevelTable } = {}): Promise<TrustListDocument> {
    const version = opts.version ?? ++this.version;
    let doc = createTrustList({ keys: [this.key], threshold: 1, expires: opts.expires ?? new Date(Date.now() + 86400_000), version, levels: opts.levels });
    for (const e of this.listed.values()) doc = addEntry(doc, e);
    doc = await signTrustList(doc, this.key);
    const tmp = `${this.trustFile}.tmp`;
    fs.writeFileSync(tmp, serializeTrustList(doc));
    fs.renameSync(tmp, this.trustFile);
    return doc;
  }

  /** The anchor key's public half (for a host in another process). */
  publicKey(): PublicKey {
    return this.key;
  }

  store(opts: Partial<TrustStoreOptions> = {}): TrustStore {
    return new TrustStore({ anchor: { keys: [this.key], threshold: 1 }, statePath: this.statePath, ...opts });
  }

  host(opts: Partial<PluginHostOptions> = {}): PluginHost {
    return new PluginHost({
      pluginDirs: [this.pluginsDir],
      trust: { store: this.store(), file: this.trustFile },
      hostApiVersion: '1.2.0',
      audit: this.auditPath,
      ...opts,
    });
  }

  cleanup(): void {
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

/** Resolves when `cond()` is true, polling every 10 ms, or rejects after `ms`. */
export async function until(cond: () => boolean, ms = 10000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

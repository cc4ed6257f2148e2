/**
 * scanPlugin(dir) and scanTree(tree): the capabilities a plugin's code and its bundled dependencies
 * (node_modules inside the directory) reach, as findings with the permission each implies, and the
 * comparison with the permissions the plugin requests. Advice for whoever grants permissions: the
 * sandbox is what holds a plugin to them (README, "Scanning a plugin").
 *
 * Parsed: every .js, .cjs and .mjs file, the `main` of every package.json, the entries given, and
 * any file a parsed file requires or imports by a relative name (node loads a required file of
 * any extension as JavaScript). Listed without parsing: native addons, binding.gyp, install scripts,
 * symlinks that leave the directory.
 */
import * as path from 'node:path';
import {
  DEFAULT_SCAN_FILE_TIMEOUT_MS, DEFAULT_SCAN_MAX_FILE_BYTES, DEFAULT_SCAN_MAX_FILES, DEFAULT_SCAN_MAX_TOTAL_BYTES,
  DEFAULT_SCAN_TIMEOUT_MS, DEFAULT_SCAN_WORKER_HEAP_MB,
} from '../defaults';
import { diffPermissions, type ImpliedPermission } from './capabilities';
import { linkLeaves, listDirectory, type ScanEntry } from './files';
import type { SourceKind } from './analyze';
import { ScanWorker, type Job } from './worker-pool';
import type { Finding, ScanLimits, ScanOptions, ScanReport } from './types';

const JS_EXTENSIONS = new Set(['.js', '.cjs', '.mjs']);
const INSTALL_SCRIPTS = ['preinstall', 'install', 'postinstall'];
/** A package.json larger than this is not read for its type, main and scripts. */
const MAX_PACKAGE_JSON = 1 << 20;
/** Rounds of following relative requires to files without a JavaScript extension. */
const MAX_ROUNDS = 8;

function limitOf(v: number | undefined, dflt: number, field: string): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new TypeError(`scan option ${field} must be a whole number > 0, got ${String(v)}`);
  return v;
}

function limitsOf(o: ScanLimits): Required<ScanLimits> {
  return {
    maxFileBytes: limitOf(o.maxFileBytes, DEFAULT_SCAN_MAX_FILE_BYTES, 'maxFileBytes'),
    maxTotalBytes: limitOf(o.maxTotalBytes, DEFAULT_SCAN_MAX_TOTAL_BYTES, 'maxTotalBytes'),
    maxFiles: limitOf(o.maxFiles, DEFAULT_SCAN_MAX_FILES, 'maxFiles'),
    fileTimeoutMs: limitOf(o.fileTimeoutMs, DEFAULT_SCAN_FILE_TIMEOUT_MS, 'fileTimeoutMs'),
    timeoutMs: limitOf(o.timeoutMs, DEFAULT_SCAN_TIMEOUT_MS, 'timeoutMs'),
    workerHeapMb: limitOf(o.workerHeapMb, DEFAULT_SCAN_WORKER_HEAP_MB, 'workerHeapMb'),
  };
}

/** Scans the plugin directory `dir`. Rejects only when `dir` cannot be read at all. */
export async function scanPlugin(dir: string, options: ScanOptions = {}): Promise<ScanReport> {
  const limits = limitsOf(options);
  const worker = new ScanWorker(limits.workerHeapMb);
  worker.prestart();
  try {
    const listing = listDirectory(dir, limits.maxFiles);
    const extra: Finding[] = listing.truncated ? [wholeFile('.', 'not-scanned', `more than ${limits.maxFiles} entries: the rest of the directory was not scanned (maxFiles)`, '*')] : [];
    return await scanEntries(listing.entries, options, limits, worker, extra);
  } finally {
    await worker.close();
  }
}

/** A tree read into memory, as the plugin host holds it (trust/tree.ts PluginTree). */
export interface TreeLike {
  files: ReadonlyArray<{ path: string; kind: 'f' | 'd' | 'l'; data?: Buffer; target?: string }>;
}

/** Scans a tree already in memory, with `worker` (kept by the caller between scans). */
export async function scanTree(tree: TreeLike, options: ScanOptions, worker: ScanWorker): Promise<ScanReport> {
  const limits = limitsOf(options);
  const entries: ScanEntry[] = tree.files.map((f) => (f.kind === 'f' ? { path: f.path, kind: 'f', size: f.data?.length ?? 0, read: () => f.data } : { path: f.path, kind: f.kind, target: f.target }));
  return scanEntries(entries, options, limits, worker, []);
}

export { ScanWorker };

function wholeFile(file: string, kind: Finding['kind'], what: string, permission: ImpliedPermission | null): Finding {
  return { file, line: 0, column: 0, kind, what, permission };
}

interface PackageInfo {
  type?: string;
  main?: string;
  scripts: Record<string, string>;
}

function readPackage(e: ScanEntry): PackageInfo | undefined {
  if ((e.size ?? 0) > MAX_PACKAGE_JSON) return undefined;
  const data = e.read?.();
  if (data === undefined) return undefined;
  try {
    const j = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
    if (j === null || typeof j !== 'object') return undefined;
    const scripts: Record<string, string> = {};
    if (j.scripts !== null && typeof j.scripts === 'object') {
      for (const [k, v] of Object.entries(j.scripts as Record<string, unknown>)) if (typeof v === 'string') scripts[k] = v;
    }
    return { type: typeof j.type === 'string' ? j.type : undefined, main: typeof j.main === 'string' ? j.main : undefined, scripts };
  } catch {
    return undefined;
  }
}

async function scanEntries(entries: ScanEntry[], options: ScanOptions, limits: Required<ScanLimits>, worker: ScanWorker, findings: Finding[]): Promise<ScanReport> {
  const started = Date.now();
  const deadline = started + limits.timeoutMs;
  const byPath = new Map(entries.map((e) => [e.path, e]));
  const packageTypes = new Map<string, string | undefined>();
  const candidates: string[] = [];
  let bytes = 0;

  for (const e of entries) {
    const base = path.posix.basename(e.path);
    if (e.kind === 'l') {
      if (linkLeaves(e.path, e.target ?? '')) findings.push(wholeFile(e.path, 'symlink', `a symlink to '${(e.target ?? '').slice(0, 200)}', outside the directory: not followed (a load refuses it)`, null));
      continue;
    }
    if (e.kind !== 'f') continue;
    if (base.endsWith('.node')) findings.push(wholeFile(e.path, 'native-addon', 'a native addon: machine code, which this scan does not read', '*'));
    if (base === 'binding.gyp') findings.push(wholeFile(e.path, 'binding-gyp', 'binding.gyp: npm builds it at install time (node-gyp rebuild), on the installing host', null));
    if (base === 'package.json') {
      // Read and parsed on this thread: their bytes count toward maxTotalBytes and the scan's time
      // limit holds here too, or thousands of links to one large package.json would hold the caller.
      const size = e.size ?? 0;
      if (bytes + Math.min(size, MAX_PACKAGE_JSON) > limits.maxTotalBytes || Date.now() > deadline) {
        findings.push(wholeFile(e.path, 'not-scanned', `not read: the scan's limit of ${limits.maxTotalBytes} bytes in all or its time limit was reached`, '*'));
        continue;
      }
      if (size <= MAX_PACKAGE_JSON) bytes += size;
      const pkg = readPackage(e);
      const dir = path.posix.dirname(e.path);
      packageTypes.set(dir === '.' ? '' : dir, pkg?.type);
      for (const s of INSTALL_SCRIPTS) {
        const script = pkg?.scripts[s];
        if (script !== undefined) findings.push(wholeFile(e.path, 'install-script', `${s}: ${script.slice(0, 200)} (npm runs it at install time, on the installing host)`, null));
      }
      if (pkg?.main !== undefined) candidates.push(path.posix.join(dir, pkg.main));
    }
    if (JS_EXTENSIONS.has(path.posix.extname(base))) candidates.push(e.path);
  }
  for (const entry of options.entries ?? []) candidates.push(path.posix.normalize(entry));

  /** 'module' | 'script' | 'auto' by extension and the nearest package.json's type. */
  const kindOf = (file: string): SourceKind => {
    const ext = path.posix.extname(file);
    if (ext === '.mjs') return 'module';
    if (ext === '.cjs') return 'script';
    for (let dir = path.posix.dirname(file); ; dir = path.posix.dirname(dir)) {
      const key = dir === '.' ? '' : dir;
      if (packageTypes.has(key)) return packageTypes.get(key) === 'module' ? 'module' : 'auto';
      if (key === '') return 'auto';
    }
  };

  const scanned = new Set<string>();
  let files = 0;
  let round = candidates;
  for (let r = 0; r < MAX_ROUNDS && round.length > 0; r++) {
    const jobs: Job[] = [];
    for (const file of round) {
      const e = byPath.get(file);
      if (e === undefined || e.kind !== 'f' || scanned.has(file) || file.endsWith('.json') || file.endsWith('.node')) continue;
      scanned.add(file);
      const size = e.size ?? 0;
      if (size > limits.maxFileBytes) {
        findings.push(wholeFile(file, 'unparsed', `${size} bytes: over the scan's limit of ${limits.maxFileBytes} per file (maxFileBytes)`, '*'));
        continue;
      }
      if (bytes + size > limits.maxTotalBytes) {
        findings.push(wholeFile(file, 'not-scanned', `not scanned: the scan's limit of ${limits.maxTotalBytes} bytes in all was reached (maxTotalBytes)`, '*'));
        continue;
      }
      const data = e.read?.();
      if (data === undefined) {
        findings.push(wholeFile(file, 'unparsed', 'could not be read (changed or removed while scanned)', '*'));
        continue;
      }
      bytes += size;
      jobs.push({ file, data, kind: kindOf(file) });
    }
    if (jobs.length === 0) break;
    files += jobs.length;
    const outcomes = await worker.run(jobs, limits.fileTimeoutMs, deadline);
    round = [];
    outcomes.forEach((o, i) => {
      findings.push(...o.findings);
      const dir = path.posix.dirname(jobs[i]!.file);
      for (const spec of o.relative) round.push(path.posix.join(dir, spec));
    });
  }

  findings.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line || a.column - b.column));
  const implied = new Set<ImpliedPermission>();
  for (const f of findings) if (f.permission !== null) implied.add(f.permission);
  return {
    findings,
    implied: [...implied].sort(),
    diff: diffPermissions(implied, options.requested ?? []),
    stats: { files, bytes, ms: Date.now() - started },
  };
}

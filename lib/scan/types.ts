/** The shapes of a scan: its findings, its report and its options. */
import type { ImpliedPermission, PermissionDiff } from './capabilities';

export type FindingKind =
  /** A built-in module reached (require, import, import(), createRequire...). */
  | 'builtin'
  /** A global of note (fetch, WebSocket, eval, Function, WebAssembly), or process.binding & co. */
  | 'global'
  /** require()/import() of a name the scan cannot compute. */
  | 'dynamic-require'
  /** A native addon (.node file). */
  | 'native-addon'
  /** binding.gyp: npm builds it at install time, on the host. */
  | 'binding-gyp'
  /** preinstall/install/postinstall in a package.json: npm runs it at install time, on the host. */
  | 'install-script'
  /** A symlink that leaves the directory: not followed (and a load refuses it). */
  | 'symlink'
  /** A file the scan could not read through: syntax error, too large, too deep, out of time or memory. */
  | 'unparsed'
  /** Files left out because the scan's limits (files, bytes, overall time) were reached. */
  | 'not-scanned';

export interface Finding {
  /** Path relative to the scanned directory, '/'-separated. */
  file: string;
  /** 1-based; 0 when the finding is about the file as a whole. */
  line: number;
  /** 0-based, in UTF-16 code units as editors count; 0 for the file as a whole. */
  column: number;
  kind: FindingKind;
  /** What was seen, e.g. "require('child_process')", "fetch", "process.binding". */
  what: string;
  /** The permission it implies; '*' could use anything; null: worth knowing, no permission. */
  permission: ImpliedPermission | null;
}

export interface ScanLimits {
  /** A file larger than this is not parsed (an 'unparsed' finding). Default 8 MiB. */
  maxFileBytes?: number;
  /** Bytes parsed in all; the files beyond are 'not-scanned'. Default 64 MiB. */
  maxTotalBytes?: number;
  /** Entries (files, directories, links) walked; beyond, 'not-scanned'. Default 20000. */
  maxFiles?: number;
  /** Parsing and analysing one file; past it the file is 'unparsed'. Default 2 s. */
  fileTimeoutMs?: number;
  /** The whole scan; past it the files left are 'not-scanned'. Default 30 s. */
  timeoutMs?: number;
  /** Heap of the worker thread that parses, in MiB; running out is an 'unparsed' finding. Default 512. */
  workerHeapMb?: number;
}

export interface ScanOptions extends ScanLimits {
  /** The permissions the plugin requests (its manifest's), as strings: for the diff. */
  requested?: readonly string[];
  /** Files to parse whatever their extension (e.g. the manifest's entry), relative to the directory. */
  entries?: readonly string[];
}

export interface ScanReport {
  /** Findings sorted by file, line and column. */
  findings: Finding[];
  /** Every implied permission of the findings, sorted. */
  implied: ImpliedPermission[];
  /** The comparison with `options.requested`. */
  diff: PermissionDiff;
  /** Files parsed, their bytes, and how long the scan took. */
  stats: { files: number; bytes: number; ms: number };
}

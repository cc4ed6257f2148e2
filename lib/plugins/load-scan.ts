/**
 * The capability scan at load: each plugin version the host loads is scanned once per directory
 * digest (the bytes the load verified and sends to the sandbox, not the directory again), and its
 * summary goes to the audit log as a `scan` line. It does not hold up the load: the scans run one
 * after another in one worker thread beside the loads, cached by digest, so a restart or a reload
 * of the same bytes costs nothing. A scan is advice; nothing here refuses a plugin.
 */
import type { AuditSeverity } from '../audit';
import { DEFAULT_SCAN_WORKER_HEAP_MB } from '../defaults';
import { ScanWorker, scanTree, summarize, summaryLine, type ScanSummary, type TreeLike } from '../scan';

/**
 * Scans waiting at most, and the bytes of their trees (a waiting scan keeps its tree in memory after
 * the load is done with it); a load beyond either is not scanned this time (and says so).
 */
const MAX_WAITING = 16;
const MAX_WAITING_BYTES = 128 * 1024 * 1024;
/** Digests whose summary is kept. */
const MAX_CACHED = 1024;

type Log = (severity: AuditSeverity, reason: string, details: Record<string, unknown>) => void;

interface Waiting {
  digest: string;
  tree: TreeLike;
  requested: string[];
  entry: string;
  bytes: number;
  logs: Log[];
}

export class LoadScans {
  private readonly cache = new Map<string, ScanSummary>();
  private readonly waiting: Waiting[] = [];
  private worker: ScanWorker | undefined;
  private running = false;
  private closed = false;
  private waitingBytes = 0;

  /** Records the scan of `tree` (digest-checked) through `log`, now if cached, else when it ends. */
  scan(digest: string, tree: TreeLike, requested: string[], entry: string, log: Log): void {
    if (this.closed) return;
    const cached = this.cache.get(digest);
    if (cached !== undefined) {
      emit(log, digest, cached, true);
      return;
    }
    const same = this.waiting.find((w) => w.digest === digest);
    if (same !== undefined) {
      same.logs.push(log);
      return;
    }
    let bytes = 0;
    for (const f of tree.files) bytes += f.data?.length ?? 0;
    if (this.waiting.length >= MAX_WAITING || this.waitingBytes + bytes > MAX_WAITING_BYTES) {
      log('info', `not scanned at this load: ${this.waiting.length} scans (${this.waitingBytes} bytes) are waiting`, { digest });
      return;
    }
    this.waitingBytes += bytes;
    this.waiting.push({ digest, tree, requested, entry, bytes, logs: [log] });
    if (!this.running) void this.drain();
  }

  private async drain(): Promise<void> {
    this.running = true;
    const worker = new ScanWorker(DEFAULT_SCAN_WORKER_HEAP_MB);
    this.worker = worker;
    while (!this.closed && this.waiting.length > 0) {
      const w = this.waiting.shift()!;
      this.waitingBytes -= w.bytes;
      const report = await scanTree(w.tree, { requested: w.requested, entries: [w.entry] }, worker);
      if (this.closed) break;
      const s = summarize(report);
      this.cache.set(w.digest, s);
      if (this.cache.size > MAX_CACHED) this.cache.delete(this.cache.keys().next().value!);
      for (const log of w.logs) emit(log, w.digest, s, false);
    }
    // Nothing waits: the thread goes (a host at rest holds no scan worker); the next load starts one.
    this.worker = undefined;
    this.running = false;
    this.drained = worker.close();
    await this.drained;
  }

  private drained: Promise<void> = Promise.resolve();

  /** Stops scanning; resolves once the worker thread is gone. No scan line is written after it. */
  async close(): Promise<void> {
    this.closed = true;
    this.waiting.length = 0;
    this.waitingBytes = 0;
    await this.worker?.close();
    await this.drained;
  }
}

function emit(log: Log, digest: string, s: ScanSummary, cached: boolean): void {
  const severity: AuditSeverity = s.usedNotRequested.length > 0 ? 'notice' : 'info';
  log(severity, summaryLine(s), { digest, cached, ...s });
}

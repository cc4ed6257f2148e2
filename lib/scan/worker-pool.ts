/**
 * Runs the scan's files through a worker thread (worker.ts) under a time limit per file and one
 * for the whole scan, and a bounded heap. Parsing is synchronous: only a thread that can be ended
 * from outside bounds its time, and it keeps the caller's event loop free meanwhile. A file over
 * its time, or one that exhausts the worker's heap, ends the worker and is an 'unparsed' finding;
 * a new worker takes the files after it. The worker is kept between runs (the plugin host scans
 * one plugin after another) until close(), and does not hold the process open while idle.
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Finding } from './types';
import type { WorkerJob, WorkerResult } from './worker';

export type Job = Omit<WorkerJob, 'i'>;

export interface Outcome {
  findings: Finding[];
  relative: string[];
}

const WORKER_ENTRY = path.join(__dirname, 'worker.js');

function whole(file: string, kind: Finding['kind'], what: string): Outcome {
  return { findings: [{ file, line: 0, column: 0, kind, what, permission: '*' }], relative: [] };
}

export class ScanWorker {
  private worker: Worker | undefined;
  private ready = false;
  private closed = false;

  constructor(private readonly heapMb: number) {}

  /**
   * Ends the worker; a run in progress settles with its remaining files not scanned. Resolves once
   * the thread is gone (its fds closed), not before.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.abort?.();
    await this.kill();
  }

  private abort: (() => void) | undefined;

  private kill(): Promise<unknown> {
    const w = this.worker;
    this.worker = undefined;
    this.ready = false;
    if (w === undefined) return Promise.resolve();
    w.removeAllListeners();
    w.on('error', () => undefined); // a late error of a worker being ended is nobody's
    return w.terminate();
  }

  /** Starts the thread now, so that its start overlaps the caller's reading of the files. */
  prestart(): void {
    if (this.worker === undefined && !this.closed) this.spawn();
  }

  /** Called once the current worker has loaded the parser (a run arms its first file's timer). */
  private onReady: (() => void) | undefined;

  private spawn(): Worker {
    // execArgv []: not the caller's flags and preloads (a test runner's loaders, --inspect), which
    // would cost each worker start a second and are none of the parser's business.
    const w = new Worker(WORKER_ENTRY, { execArgv: [], resourceLimits: { maxOldGenerationSizeMb: this.heapMb }, stdout: true, stderr: true });
    this.worker = w;
    this.ready = false;
    w.once('message', () => {
      // The first message of a worker is 'ready' (worker.ts).
      this.ready = true;
      this.onReady?.();
    });
    return w;
  }

  /** Analyses `jobs` in order; each outcome is the file's findings. Never rejects. */
  run(jobs: readonly Job[], fileTimeoutMs: number, deadline: number): Promise<Outcome[]> {
    const results: Outcome[] = new Array(jobs.length);
    let done = 0;
    return new Promise((resolve) => {
      let fileTimer: NodeJS.Timeout | undefined;
      let overallTimer: NodeJS.Timeout | undefined;
      let failure: Error | undefined;
      const restOut = (what: string): void => {
        for (; done < jobs.length; done++) results[done] = whole(jobs[done]!.file, 'not-scanned', what);
      };
      const settle = (): void => {
        clearTimeout(fileTimer);
        clearTimeout(overallTimer);
        this.abort = undefined;
        this.onReady = undefined;
        const w = this.worker;
        if (w !== undefined) {
          w.removeAllListeners('message').removeAllListeners('exit').removeAllListeners('error');
          w.on('error', () => undefined);
          w.unref();
        }
        resolve(results);
      };
      const armFile = (): void => {
        clearTimeout(fileTimer);
        fileTimer = setTimeout(() => {
          const job = jobs[done]!;
          void this.kill();
          results[done++] = whole(job.file, 'unparsed', `not read through within ${fileTimeoutMs} ms (the scan's time limit per file)`);
          next();
        }, fileTimeoutMs);
      };
      const onMessage = (m: WorkerResult | 'ready'): void => {
        if (m === 'ready') return;
        results[m.i - base] = { findings: m.findings, relative: m.relative };
        done = m.i - base + 1;
        if (done === jobs.length) settle();
        else armFile();
      };
      const onExit = (): void => {
        const job = jobs[done]!;
        this.worker = undefined;
        this.ready = false;
        const why = failure?.message ?? 'the worker ended';
        failure = undefined;
        results[done++] = whole(job.file, 'unparsed', `the parser failed on it: ${why.slice(0, 200)}`);
        next();
      };
      // Job numbers are unique per worker: a reused worker's earlier answers cannot be taken for these.
      let base = 0;
      const next = (): void => {
        if (done === jobs.length || this.closed) {
          restOut('the scan was stopped');
          settle();
          return;
        }
        let w = this.worker;
        if (w === undefined) w = this.spawn();
        else w.ref();
        w.on('message', onMessage);
        w.on('error', (e) => { failure = e; });
        w.on('exit', onExit);
        base = this.nextJob - done;
        for (let i = done; i < jobs.length; i++) {
          const job = jobs[i]!;
          w.postMessage({ ...job, i: base + i } satisfies WorkerJob);
        }
        this.nextJob = base + jobs.length;
        if (this.ready) armFile();
        else this.onReady = armFile;
      };
      this.abort = () => {
        restOut('the scan was stopped');
        settle();
      };
      overallTimer = setTimeout(() => {
        void this.kill();
        if (done < jobs.length) results[done] = whole(jobs[done]!.file, 'unparsed', "not read through within the scan's overall time limit");
        if (done < jobs.length) done++;
        restOut("not scanned: the scan's overall time limit was reached");
        settle();
      }, Math.max(0, deadline - Date.now()));
      next();
    });
  }

  private nextJob = 0;
}

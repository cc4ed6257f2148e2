/**
 * The scan's worker thread: parses and analyses the files it is sent, one after the other, and
 * answers each with its findings. It holds no state between files. The thread that started it
 * ends it when a file takes too long (worker-pool.ts), and its heap is bounded (resourceLimits),
 * so a hostile file costs the scan a finding, not the host its memory or its event loop.
 */
import { parentPort } from 'node:worker_threads';
import { analyzeSource, type RawFinding, type SourceKind } from './analyze';
import type { Finding } from './types';

export interface WorkerJob {
  i: number;
  file: string;
  data: Uint8Array;
  kind: SourceKind;
}

export interface WorkerResult {
  i: number;
  findings: Finding[];
  relative: string[];
}

/** Offsets into line (1-based) and column (0-based), with one pass over the text. */
function locate(code: string, raw: RawFinding[], file: string): Finding[] {
  const order = raw.map((f, idx) => ({ f, idx })).sort((a, b) => a.f.offset - b.f.offset);
  const out: Finding[] = new Array(raw.length);
  let line = 1;
  let lineStart = 0;
  let pos = 0;
  for (const { f, idx } of order) {
    const offset = Math.min(f.offset, code.length);
    for (; pos < offset; pos++) {
      const c = code.charCodeAt(pos);
      if (c === 10 || (c === 13 && code.charCodeAt(pos + 1) !== 10) || c === 0x2028 || c === 0x2029) {
        line++;
        lineStart = pos + 1;
      }
    }
    out[idx] = { file, line, column: offset - lineStart, kind: f.kind, what: f.what, permission: f.permission };
  }
  return out;
}

const port = parentPort;
if (port !== null) {
  port.on('message', (job: WorkerJob) => {
    let code = Buffer.from(job.data.buffer, job.data.byteOffset, job.data.byteLength).toString('utf8');
    if (code.charCodeAt(0) === 0xfeff) code = ' ' + code.slice(1); // a BOM: keep offsets, drop the mark
    const a = analyzeSource(code, job.kind);
    const result: WorkerResult = { i: job.i, findings: locate(code, a.findings, job.file), relative: a.relative };
    port.postMessage(result);
  });
  port.postMessage('ready');
}

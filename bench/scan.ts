/**
 * npm run bench:scan — scanning a 10 MB plugin tree (scanPlugin: walk, read, parse and analyse in
 * its worker thread, diff) against parsing the same files with acorn alone, in the same run. The
 * tree is made of real JavaScript: the package sources of this checkout's node_modules, copied
 * under the plugin's node_modules until 10 MB. Target: scan ≤ 1.5 × acorn.
 *
 * Like for like: each scan starts a fresh worker thread, whose parser code is not optimized yet
 * (the first megabytes parse several times slower than the same files parsed again), so the peer
 * is acorn alone in a fresh worker thread too, started and timed the same way. Acorn in this
 * thread, warmed up, is printed as well: the floor once the parser is optimized.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as acorn from 'acorn';
import { Worker } from 'node:worker_threads';
import { scanPlugin } from '../lib/scan';

const TARGET_BYTES = 10 * 1024 * 1024;
const RUNS = 5;

/** .js/.cjs/.mjs files of node_modules, each under 1 MB, in a stable order, up to `bytes`. */
function collect(from: string, bytes: number): string[] {
  const out: string[] = [];
  let total = 0;
  const pending = [from];
  while (pending.length > 0 && total < bytes) {
    const dir = pending.shift()!;
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) pending.push(p);
      else if (e.isFile() && /\.(c|m)?js$/.test(e.name)) {
        const size = fs.statSync(p).size;
        if (size > 1024 * 1024 || total >= bytes) continue;
        out.push(p);
        total += size;
      }
    }
  }
  return out;
}

function parseAlone(files: string[]): number {
  let nodes = 0;
  for (const f of files) {
    const code = fs.readFileSync(f, 'utf8');
    const opts = (sourceType: 'script' | 'module'): acorn.Options => ({ ecmaVersion: 'latest', sourceType, allowReturnOutsideFunction: sourceType === 'script', allowHashBang: true });
    let sourceType: 'script' | 'module' = f.endsWith('.mjs') ? 'module' : 'script';
    try {
      nodes += acorn.parse(code, opts(sourceType)).body.length;
    } catch {
      sourceType = 'module';
      try {
        nodes += acorn.parse(code, opts(sourceType)).body.length;
      } catch {
        // a file neither way: the scan reports it, the baseline moves on
      }
    }
  }
  return nodes;
}

/** Acorn alone in a fresh worker thread: reads and parses `files` as parseAlone does. */
function parseAloneInWorker(files: string[]): Promise<void> {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const fs = require('node:fs');
    const acorn = require(workerData.acorn);
    const opts = (sourceType) => ({ ecmaVersion: 'latest', sourceType, allowReturnOutsideFunction: sourceType === 'script', allowHashBang: true });
    for (const f of workerData.files) {
      const code = fs.readFileSync(f, 'utf8');
      try { acorn.parse(code, opts(f.endsWith('.mjs') ? 'module' : 'script')); }
      catch { try { acorn.parse(code, opts('module')); } catch {} }
    }
    parentPort.postMessage('done');`;
  return new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, execArgv: [], workerData: { files, acorn: require.resolve('acorn') } });
    w.once('message', () => void w.terminate().then(() => resolve()));
    w.once('error', reject);
  });
}

async function time(fn: () => unknown): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-bench-scan-'));
  try {
    const source = path.join(__dirname, '..', '..', 'node_modules');
    const files: string[] = [];
    let bytes = 0;
    for (const f of collect(source, TARGET_BYTES)) {
      const to = path.join(root, 'node_modules', path.relative(source, f));
      fs.mkdirSync(path.dirname(to), { recursive: true });
      fs.copyFileSync(f, to);
      files.push(to);
      bytes += fs.statSync(to).size;
    }
    fs.writeFileSync(path.join(root, 'warden.json'), JSON.stringify({ name: 'bench', version: '1.0.0', hostApi: '^1.0.0', permissions: [] }));
    const scans: number[] = [];
    const alone: number[] = [];
    const warm: number[] = [];
    let findings = 0;
    let parsed = 0;
    // Warm-up of both, then alternate so that the machine's noise falls on both alike.
    await scanPlugin(root);
    await parseAloneInWorker(files);
    parseAlone(files);
    for (let i = 0; i < RUNS; i++) {
      scans.push(await time(async () => {
        const r = await scanPlugin(root);
        findings = r.findings.length;
        parsed = r.stats.files;
      }));
      alone.push(await time(() => parseAloneInWorker(files)));
      warm.push(await time(() => parseAlone(files)));
    }
    const s = median(scans);
    const a = median(alone);
    const h = median(warm);
    console.log(`tree: ${files.length} files, ${(bytes / 1048576).toFixed(1)} MB of JavaScript (scan parsed ${parsed} files; ${findings} findings)`);
    console.log(`scanPlugin                  median ${s.toFixed(0)} ms  (runs: ${scans.map((x) => x.toFixed(0)).join(', ')})`);
    console.log(`acorn alone, fresh worker   median ${a.toFixed(0)} ms  (runs: ${alone.map((x) => x.toFixed(0)).join(', ')})`);
    console.log(`acorn alone, this thread warmed up   median ${h.toFixed(0)} ms  (runs: ${warm.map((x) => x.toFixed(0)).join(', ')})`);
    console.log(`ratio scan / acorn in a fresh worker: ${(s / a).toFixed(2)}x (target <= 1.5x); scan / warmed-up acorn: ${(s / h).toFixed(2)}x`);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

void main();

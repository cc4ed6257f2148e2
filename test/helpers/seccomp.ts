// Shared by the seccomp tests (and, later, launcher tests): the addon's compiler and the attempt
// driver (test/fixtures/attempt.c), compiled once per process.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { requireAddon } from '../../lib/native-file';

export const root = path.join(__dirname, '..', '..', '..');

export interface SeccompAddon {
  compileSeccomp(policy: unknown): Buffer & { needsListener: boolean };
  syscallName(nr: number): string | null;
  syscallNumber(name: string): number | null;
}

export const addon = requireAddon() as SeccompAddon;

let tmp: string | undefined;
export function tmpDir(): string {
  if (tmp === undefined) {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-seccomp-'));
    // Sandboxes bind the driver from here: their host uid must be able to reach it.
    fs.chmodSync(tmp, 0o755);
    process.on('exit', () => fs.rmSync(tmp!, { recursive: true, force: true }));
  }
  return tmp;
}

let attemptBin: string | undefined;
/** Path of the compiled attempt driver. */
export function attemptPath(): string {
  if (attemptBin === undefined) {
    const out = path.join(tmpDir(), 'attempt');
    execFileSync('cc', ['-O2', '-Wall', '-pthread', '-I', path.join(root, 'native'), '-o', out,
      path.join(root, 'test', 'fixtures', 'attempt.c')], { stdio: 'inherit' });
    attemptBin = out;
  }
  return attemptBin;
}

let counter = 0;
/** Compiles `policy` with the addon and writes the raw program to a file for attempt. */
export function filterFile(policy: unknown): string {
  const file = path.join(tmpDir(), `filter-${counter++}.bpf`);
  fs.writeFileSync(file, addon.compileSeccomp(policy));
  return file;
}

export interface AttemptResult {
  /** "ok N", "errno ENAME", "violation NAME", or "" when killed. */
  line: string;
  signal: NodeJS.Signals | null;
  status: number | null;
  stderr: string;
  stdout: string;
}

/** Runs `attempt FILTER MODE ARGS...`; FILTER "-" installs nothing. */
export function attempt(filter: string, mode: 'call' | 'int80' | 'exec', ...args: string[]): AttemptResult {
  const r = spawnSync(attemptPath(), [filter, mode, ...args], { encoding: 'utf8', timeout: 60_000 });
  return {
    line: (r.stdout ?? '').trim().split('\n').pop() ?? '',
    signal: r.signal,
    status: r.status,
    stderr: r.stderr ?? '',
    stdout: r.stdout ?? '',
  };
}

/** What the kernel did, in one word-ish string for assertions: "ok", "errno X", "violation X", "SIGSYS". */
export function outcome(r: AttemptResult): string {
  if (r.signal) return r.signal;
  if (r.line.startsWith('ok ')) return 'ok';
  return r.line;
}

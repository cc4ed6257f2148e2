// Helpers for the cgroup tests: gated child processes (they wait on stdin until placed in their
// cgroup, as the launcher's child waits for its 'G') and bounded waits. Only /bin/sh is needed, so the
// tests also run in a minimal VM.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import type { SandboxCgroup, LimitViolation as Violation } from '../lib/limits';

export interface Gated {
  child: ChildProcess;
  release(): void;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Runs `script` under sh once released; stdout is piped (for pids the script reports). */
export function gated(script: string): Gated {
  const child = spawn('/bin/sh', ['-c', `read _gate; ${script}`], { stdio: ['pipe', 'pipe', 'ignore'] });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, exit, release: () => child.stdin!.end('go\n') };
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms); }),
  ]);
}

export function nextViolation(cg: SandboxCgroup, ms = 10_000): Promise<Violation> {
  return withTimeout(once(cg, 'violation').then(([v]) => v as Violation), ms, 'a violation');
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Alive means: exists and is not a zombie (a zombie has no memory, no cpu, no cgroup). */
export function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export function fdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** First line of a stream. */
export function firstLine(stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    stream.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) resolve(buf.slice(0, nl));
    });
    stream.on('end', () => reject(new Error(`stream ended before a line: ${JSON.stringify(buf)}`)));
  });
}

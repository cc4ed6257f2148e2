import type { Test } from 'tap';
import * as fs from 'node:fs';

import { Sandbox } from '../../lib/sandbox/sandbox';
import type { ExitResult, SpawnOptions } from '../../lib/sandbox/types';

export interface Ran extends ExitResult {
  stdout: string;
  stderr: string;
}

function collect(stream: NodeJS.ReadableStream | null): Promise<string> {
  if (stream === null) return Promise.resolve('');
  return new Promise((resolve, reject) => {
    let out = '';
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => (out += d));
    stream.on('end', () => resolve(out));
    stream.on('error', reject);
  });
}

/** How long a short sandbox run may take before the test fails instead of waiting for tap's timeout. */
export const RUN_DEADLINE_MS = 30_000;

/** `p`, or a rejection naming `what` once `ms` have passed (then `onTimeout` runs, e.g. a kill). */
export function within<T>(p: Promise<T>, ms: number, what: string, onTimeout?: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** Polls `ready` every 5 ms until it is true; fails naming `what` (a function: read at the failure) after `ms`. */
export async function waitUntil(ready: () => boolean, ms: number, what: string | (() => string)): Promise<void> {
  const end = Date.now() + ms;
  while (!ready()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${typeof what === 'string' ? what : what()}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Runs a sandbox to completion and collects its output; past `deadlineMs` it is killed and this fails. */
export async function run(options: SpawnOptions, input?: string, deadlineMs = RUN_DEADLINE_MS): Promise<Ran> {
  const sb = Sandbox.spawn({ stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], ...options });
  if (input !== undefined) sb.stdin!.end(input);
  const [stdout, stderr, result] = await within(Promise.all([collect(sb.stdout), collect(sb.stderr), sb.exited]), deadlineMs,
    `the sandbox ${JSON.stringify(options.command)} to exit`, () => sb.kill());
  return { ...result, stdout, stderr };
}

/** sh -c SCRIPT in a sandbox. */
export function sh(script: string, options: Partial<SpawnOptions> = {}): Promise<Ran> {
  return run({ command: ['/bin/sh', '-c', script], ...options });
}

export const isRoot = process.getuid?.() === 0;

/**
 * Checks that only hold on a root host (host ids, cgroup limits): run them as root; otherwise one
 * visible skip that names them and why, so an unprivileged run says what it did not check.
 */
export function rootOnly<T>(t: Test, what: string, why: string, checks: () => T): T | undefined {
  if (isRoot) return checks();
  t.pass(what, { skip: `needs root: ${why}` });
  return undefined;
}

/** Host pids (other than this process) whose command line holds `marker`. */
export function withMarker(marker: string): number[] {
  const found: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(marker)) found.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

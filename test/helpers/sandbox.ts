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

/** Runs a sandbox to completion and collects its output. */
export async function run(options: SpawnOptions, input?: string): Promise<Ran> {
  const sb = Sandbox.spawn({ stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], ...options });
  if (input !== undefined) sb.stdin!.end(input);
  const [stdout, stderr, result] = await Promise.all([collect(sb.stdout), collect(sb.stderr), sb.exited]);
  return { ...result, stdout, stderr };
}

/** sh -c SCRIPT in a sandbox. */
export function sh(script: string, options: Partial<SpawnOptions> = {}): Promise<Ran> {
  return run({ command: ['/bin/sh', '-c', script], ...options });
}

export const isRoot = process.getuid?.() === 0;

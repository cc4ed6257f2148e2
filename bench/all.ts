/**
 * `npm run bench`: every benchmark of package.json (`bench:*` scripts but this one and the long
 * `bench:cycles` check), one after another, each one's table collected into bench/RESULTS.md, which
 * the README shows. A benchmark that prints no markdown table is kept as a code block.
 *
 * The scripts are run as package.json says, less their leading `tsc -p . &&` (compiled once here).
 * BENCH_ONLY=load,ipc runs a subset (RESULTS.md is then written with those sections only).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');
// bench:cycles and bench:soak are long checks (minutes) with tables of their own, run on their own.
const SKIP = new Set(['bench', 'bench:cycles', 'bench:soak']);
const ORDER = ['spawn', 'limits', 'ipc', 'trust', 'load', 'hooks', 'scale'];

interface Section {
  name: string;
  script: string;
  seconds: number;
  output: string;
  failed?: string;
}

function run(command: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d;
      process.stdout.write(d);
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d;
      process.stderr.write(d);
    });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Markdown as is when it holds a table; otherwise a code block. */
function asMarkdown(text: string): string {
  const lines = text.trimEnd().split('\n');
  const hasTable = lines.some((l, i) => /^\s*\|/.test(l) && /^\s*\|\s*:?-{3,}/.test(lines[i + 1] ?? ''));
  return hasTable ? lines.join('\n') : ['```', ...lines, '```'].join('\n');
}

function machine(): string {
  const cpus = os.cpus();
  const model = cpus[0]?.model.replace(/\s+/g, ' ').trim() ?? 'unknown cpu';
  const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  return `Linux ${os.release()} ${os.arch()}, ${cpus.length} cores (${model}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}; load average at start ${load}`;
}

async function main(): Promise<void> {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const only = process.env.BENCH_ONLY?.split(',').map((s) => s.trim()).filter(Boolean);
  const names = Object.keys(pkg.scripts)
    .filter((k) => k.startsWith('bench:') && !SKIP.has(k))
    .map((k) => k.slice('bench:'.length))
    .filter((k) => only === undefined || only.includes(k))
    .sort((a, b) => (ORDER.indexOf(a) + 1 || 99) - (ORDER.indexOf(b) + 1 || 99) || a.localeCompare(b));
  const started = new Date();
  const header = machine();
  const sections: Section[] = [];
  for (const name of names) {
    const script = pkg.scripts[`bench:${name}`]!;
    const command = script.replace(/^\s*tsc -p \.\s*&&\s*/, '');
    process.stdout.write(`\n== bench:${name}: ${command}\n`);
    const t0 = Date.now();
    const r = await run(command);
    const s: Section = { name, script, seconds: (Date.now() - t0) / 1000, output: r.stdout };
    if (r.code !== 0) s.failed = `exit ${r.code}: ${r.stderr.trim().split('\n').slice(-5).join(' / ')}`;
    sections.push(s);
  }
  const doc = [
    '# Benchmark results',
    '',
    `Written by \`npm run bench\` on ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC.`,
    '',
    `Machine: ${header}.`,
    '',
    'Each section is one benchmark\'s own output; every table compares with peers measured in the same run. ' +
      'Shared or busy machines make absolute numbers move; compare within a table.',
    '',
  ];
  for (const s of sections) {
    doc.push(`## ${s.name} (\`npm run bench:${s.name}\`, ${s.seconds.toFixed(0)} s)`, '');
    if (s.failed !== undefined) doc.push(`**Failed** (${s.failed}).`, '');
    if (s.output.trim() !== '') doc.push(asMarkdown(s.output), '');
  }
  const out = path.join(ROOT, 'bench', 'RESULTS.md');
  fs.writeFileSync(out, `${doc.join('\n').trimEnd()}\n`);
  process.stdout.write(`\nwrote ${path.relative(ROOT, out)}\n`);
  if (sections.some((s) => s.failed !== undefined)) process.exitCode = 1;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

/**
 * Hostile files against the scan: nesting deep enough to exhaust the parser's stack, a 50 MB line,
 * a file that takes longer than its time limit, one that exhausts the worker's heap, invalid
 * syntax, too many files. Each ends in a finding, the files after it are still scanned, and this
 * process carries on.
 */
import t, { Test } from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { formatReport, scanPlugin, type ScanReport } from '../lib/scan';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-scan-hostile-'));
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));

let n = 0;
function plugin(files: Record<string, string | Buffer>): string {
  const dir = path.join(root, `p${n++}`);
  fs.mkdirSync(dir);
  for (const [rel, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, rel), text);
  return dir;
}

/** The plugin's ordinary file, scanned after the hostile one ('z' sorts last). */
const AFTER = { 'z.js': `require('child_process');\n` };

function findingOf(report: ScanReport, file: string) {
  return report.findings.filter((f) => f.file === file);
}

function afterStillScanned(t: Test, report: ScanReport): void {
  t.same(findingOf(report, 'z.js').map((f) => f.permission), ['sys:exec'], 'the file after it is scanned');
}

t.test('100000 unclosed [ : a finding, not a stack overflow of the host', async (t) => {
  const report = await scanPlugin(plugin({ 'a.js': '['.repeat(100_000), ...AFTER }));
  const [f] = findingOf(report, 'a.js');
  t.equal(f?.kind, 'unparsed');
  t.equal(f?.permission, '*', 'could use anything');
  afterStillScanned(t, report);
});

t.test('100000 nested arrays, closed: a finding', async (t) => {
  const report = await scanPlugin(plugin({ 'a.js': `x = ${'['.repeat(100_000)}${']'.repeat(100_000)};\n`, ...AFTER }));
  const [f] = findingOf(report, 'a.js');
  t.equal(f?.kind, 'unparsed');
  t.match(f?.what, /nested too deep|does not parse/);
  afterStillScanned(t, report);
});

t.test('a 50 MB line: over the size limit, never parsed', async (t) => {
  const big = Buffer.alloc(50 * 1024 * 1024, 'a');
  const report = await scanPlugin(plugin({ 'big.js': big, ...AFTER }));
  const [f] = findingOf(report, 'big.js');
  t.equal(f?.kind, 'unparsed');
  t.match(f?.what, /52428800 bytes: over the scan's limit/);
  afterStillScanned(t, report);
});

t.test('a 50 MB line within the size limit: ended at the time limit per file', async (t) => {
  // One expression of 10 million terms: far more than 300 ms of parsing.
  const big = Buffer.alloc(50 * 1024 * 1024, 'a+');
  const report = await scanPlugin(plugin({ 'big.js': big, ...AFTER }), { maxFileBytes: 64 * 1024 * 1024, fileTimeoutMs: 300, workerHeapMb: 2048 });
  const [f] = findingOf(report, 'big.js');
  t.equal(f?.kind, 'unparsed');
  t.match(f?.what, /not read through within 300 ms/, 'the worker was ended at the limit');
  afterStillScanned(t, report);
});

t.test("a file that exhausts the worker's heap: a finding", async (t) => {
  // Millions of nodes in a heap of 32 MiB.
  const code = `x = [${'1,'.repeat(4_000_000)}];\n`;
  const report = await scanPlugin(plugin({ 'a.js': code, ...AFTER }), { workerHeapMb: 32, fileTimeoutMs: 60_000 });
  const [f] = findingOf(report, 'a.js');
  t.equal(f?.kind, 'unparsed');
  t.match(f?.what, /the parser failed on it/);
  afterStillScanned(t, report);
});

t.test('invalid syntax: a finding with the place', async (t) => {
  const report = await scanPlugin(plugin({ 'a.js': `let ok = 1;\nfunction (\n`, ...AFTER }));
  const [f] = findingOf(report, 'a.js');
  t.equal(f?.kind, 'unparsed');
  t.equal(f?.line, 2);
  t.match(f?.what, /does not parse/);
  afterStillScanned(t, report);
});

t.test('the overall time limit: the files left are not scanned, each a finding', async (t) => {
  const files: Record<string, string | Buffer> = {};
  for (let i = 0; i < 4; i++) files[`slow${i}.js`] = Buffer.alloc(8 * 1024 * 1024, 'a+');
  const report = await scanPlugin(plugin({ ...files, ...AFTER }), { timeoutMs: 400, fileTimeoutMs: 10_000 });
  const kinds = report.findings.map((f) => `${f.file} ${f.kind}`);
  t.ok(kinds.includes('z.js not-scanned'), `the last file is left out: ${kinds.join(', ')}`);
  t.ok(report.findings.every((f) => f.permission === '*'), 'and each counts as could use anything');
});

t.test('more files than maxFiles: a finding for the rest', async (t) => {
  const files: Record<string, string> = {};
  for (let i = 0; i < 10; i++) files[`f${i}.js`] = 'module.exports = 1;\n';
  const report = await scanPlugin(plugin(files), { maxFiles: 5 });
  t.ok(report.findings.some((f) => f.kind === 'not-scanned' && /more than 5 entries/.test(f.what)));
  t.equal(report.stats.files, 5);
});

t.test('a directory of many entries: the walk reads no more names than maxFiles allows', async (t) => {
  // A tree of millions of entries must cost what maxFiles allows, not an array of every name. The
  // count of names the walk takes from the file system is the observable (no timing).
  const dir = plugin({});
  for (let i = 0; i < 20000; i++) fs.writeFileSync(path.join(dir, `f${i}.js`), '');
  const { listDirectory } = await import('../lib/scan/files');
  const real = require('node:fs') as typeof fs & Record<string, unknown>;
  const readdir = real.readdirSync, opendir = real.opendirSync;
  let names = 0;
  real.readdirSync = ((...a: Parameters<typeof fs.readdirSync>) => {
    const r = readdir(...a);
    names += r.length;
    return r;
  }) as typeof fs.readdirSync;
  real.opendirSync = ((...a: Parameters<typeof fs.opendirSync>) => {
    const d = opendir(...a);
    const readSync = d.readSync.bind(d);
    d.readSync = () => {
      const e = readSync();
      if (e !== null) names++;
      return e;
    };
    return d;
  }) as typeof fs.opendirSync;
  let listing;
  try {
    listing = listDirectory(dir, 100);
  } finally {
    real.readdirSync = readdir;
    real.opendirSync = opendir;
  }
  t.equal(listing.entries.length, 100, '100 entries listed');
  t.ok(listing.truncated, 'and the walk says it stopped short');
  t.ok(names <= 101, `${names} names read from a directory of 20000 (at most maxFiles + 1)`);
});

t.test('names and scripts with terminal control characters: printed escaped', async (t) => {
  // A file name or an install script can carry escape sequences: printed raw, they could erase the
  // line of a risky finding or retitle the terminal while someone reads the report.
  const dir = plugin({
    'evil\x1b[2K\r.js': 'eval(x);\n',
    'package.json': JSON.stringify({ scripts: { postinstall: 'curl x\x1b]0;ok\x07\x1b[1A\x1b[2K\u202e' } }),
  });
  const text = formatReport(await scanPlugin(dir));
  t.notOk(/[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/.test(text), 'no control character reaches the terminal');
  t.match(text, /evil\\u001b\[2K\\u000d\.js/, 'the name is shown with its escapes visible');
  t.match(text, /postinstall: curl x\\u001b\]0;ok\\u0007/, 'so is the script');
  t.match(text, /\\u202e/, 'and a bidi override');
});

t.test('many large package.json: their bytes count toward maxTotalBytes', async (t) => {
  // package.json files are read and parsed on the caller's thread: without a budget, 20,000 links
  // to one 1 MiB file would be 20 GiB parsed there, past the scan's byte and time limits.
  const dir = plugin({});
  const big = JSON.stringify({ name: 'x', description: 'a'.repeat((1 << 20) - 100) });
  fs.writeFileSync(path.join(dir, 'package.json'), big);
  for (let i = 0; i < 40; i++) {
    fs.mkdirSync(path.join(dir, `d${i}`));
    fs.linkSync(path.join(dir, 'package.json'), path.join(dir, `d${i}`, 'package.json'));
  }
  const report = await scanPlugin(dir, { maxTotalBytes: 4 << 20 });
  const skipped = report.findings.filter((f) => f.kind === 'not-scanned' && f.file.endsWith('package.json'));
  t.ok(skipped.length >= 36, `package.json past the budget are not read (${skipped.length} of 41)`);
  t.ok(report.stats.bytes <= 4 << 20, `bytes read within maxTotalBytes (${report.stats.bytes})`);
});

t.test('options are checked', async (t) => {
  await t.rejects(scanPlugin(root, { fileTimeoutMs: -1 }), /fileTimeoutMs must be a whole number > 0/);
  await t.rejects(scanPlugin(path.join(root, 'missing')), { code: 'ENOENT' });
});

// The audit log: append and reopen, the hash chain against tampering, torn writes, bounds, filters.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  AuditLog, AuditLogError, readAuditLog, AUDIT_GENESIS, AUDIT_MAX_LINE_BYTES, InvalidOptionError,
} from '../lib';
import type { AuditEvent } from '../lib';
import { addonFile } from '../lib/native-file';

const lines = (file: string) => fs.readFileSync(file, 'utf8').split('\n').slice(0, -1);
const sha = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');

function clock(start = Date.parse('2030-01-01T00:00:00.000Z'), step = 60_000) {
  let now = start;
  return () => {
    const d = new Date(now);
    now += step;
    return d;
  };
}

function fill(file: string, n = 4): AuditEvent[] {
  const log = new AuditLog({ path: file, now: clock() });
  const out: AuditEvent[] = [];
  for (let i = 0; i < n; i++) out.push(log.append({ severity: 'info', event: 'load', plugin: `p${i}`, reason: `event ${i}` }));
  log.close();
  return out;
}

t.test('append writes one chained line per event; reopening continues seq and chain', async (t) => {
  const file = path.join(t.testdir(), 'audit.log');
  const log = new AuditLog({ path: file, now: clock() });
  const a = log.append({ severity: 'info', event: 'verify', plugin: 'alpha', version: '1.2.3', reason: 'trusted', details: { digest: 'sha3-512:ab' } });
  const b = log.append({ severity: 'critical', event: 'violation', plugin: 'alpha', details: { syscall: 'ptrace', n: 1 } });
  t.match(a, { seq: 1, time: '2030-01-01T00:00:00.000Z', severity: 'info', event: 'verify', plugin: 'alpha', version: '1.2.3', prev: AUDIT_GENESIS });
  t.ok(Object.isFrozen(a) && Object.isFrozen(a.details), 'returned events are frozen');
  const l = lines(file);
  t.equal(l.length, 2);
  t.same(JSON.parse(l[0]), a);
  t.equal(b.prev, sha(l[0]), 'prev is the sha256 of the previous line');
  t.equal(log.head, sha(l[1]));
  t.same(log.events(), [a, b]);
  log.close();

  const again = AuditLog.open(file, { now: clock(Date.parse('2030-02-01T00:00:00Z')) });
  t.equal(again.seq, 3);
  const c = again.append({ severity: 'notice', event: 'unload', plugin: 'alpha' });
  t.equal(c.seq, 3);
  t.equal(c.prev, sha(l[1]));
  t.same(again.events(), [c], 'events() holds what this process appended');
  again.close();

  const r = await readAuditLog(file);
  t.ok(r.chainOk);
  t.same(r.problems, []);
  t.equal(r.lines, 3);
  t.same(r.events.map((e) => e.seq), [1, 2, 3]);
  t.equal(r.head, sha(lines(file)[2]));
});

t.test('the file is created with mode 0600 and only ever appended to', async (t) => {
  const file = path.join(t.testdir(), 'audit.log');
  const old = process.umask(0);
  try {
    new AuditLog({ path: file }).close();
  } finally {
    process.umask(old);
  }
  t.equal(fs.statSync(file).mode & 0o777, 0o600);
  fs.writeFileSync(file, '');
  const log = new AuditLog({ path: file });
  log.append({ severity: 'info', event: 'load' });
  // Something else appends between our writes: our next line still goes at the end and chains to it.
  const other = new AuditLog({ path: file });
  other.append({ severity: 'info', event: 'other' });
  other.close();
  log.append({ severity: 'info', event: 'load' });
  log.close();
  const r = await readAuditLog(file);
  t.same(r.events.map((e) => [e.seq, e.event]), [[1, 'load'], [2, 'other'], [3, 'load']]);
  t.ok(r.chainOk, 'the log re-read the tail before writing');
});

t.test('a reason containing a newline and JSON stays one line', async (t) => {
  const file = path.join(t.testdir(), 'audit.log');
  const log = new AuditLog({ path: file });
  const forged = `fine\n{"seq":99,"time":"2030-01-01T00:00:00.000Z","severity":"info","event":"load","prev":"${AUDIT_GENESIS}"}\r\n\u2028x`;
  log.append({ severity: 'warning', event: 'refused', plugin: 'evil\n{"x":1}', reason: forged, details: { 'k\ney': 'v\n' } });
  log.append({ severity: 'info', event: 'load' });
  log.close();
  t.equal(lines(file).length, 2, 'two events, two lines');
  const r = await readAuditLog(file);
  t.ok(r.chainOk);
  t.equal(r.events.length, 2);
  t.equal(r.events[0].reason, forged, 'the reason reads back unchanged');
  t.equal(r.events[0].plugin, 'evil\n{"x":1}');
  t.same(r.events[0].details, { 'k\ney': 'v\n' });
});

t.test('events are bounded: every line fits in 16 KiB whatever the input', async (t) => {
  const file = path.join(t.testdir(), 'audit.log');
  const log = new AuditLog({ path: file });
  const big = 'x'.repeat(1_000_000);
  const controls = '\u0001'.repeat(100_000); // 6 bytes each once escaped
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  const inputs = [
    { severity: 'info' as const, event: 'load', reason: big },
    { severity: 'info' as const, event: 'load', reason: controls, plugin: controls, version: controls },
    { severity: 'info' as const, event: 'load', details: { blob: big } },
    { severity: 'info' as const, event: 'load', details: { blob: controls }, reason: controls },
    { severity: 'info' as const, event: 'load', details: cycle },
    { severity: 'info' as const, event: 'load', details: { n: BigInt(1) } },
    { severity: 'info' as const, event: 'load', reason: `${'a'.repeat(4095)}\u{1F600}` }, // cut inside a surrogate pair
  ];
  const events = inputs.map((e) => log.append(e));
  log.close();
  for (const l of lines(file)) t.ok(Buffer.byteLength(l) + 1 <= AUDIT_MAX_LINE_BYTES, `line of ${Buffer.byteLength(l)} bytes`);
  t.match(events[0].reason, /^x{4096}…\[cut 995904 chars\]$/);
  t.ok(events[1].plugin!.length < 300);
  t.match(events[2].details, { _truncated: true, _bytes: 1_000_011 });
  t.type((events[2].details as { _preview: string })._preview, 'string');
  t.match(events[4].details, { _unserializable: /circular/i });
  t.match(events[5].details, { _unserializable: /BigInt/ });
  t.notMatch(events[6].reason, /[\ud800-\udbff](?![\udc00-\udfff])/, 'no lone high surrogate left by the cut');
  const r = await readAuditLog(file);
  t.ok(r.chainOk);
  t.equal(r.events.length, inputs.length);
});

t.test('an edited, inserted or removed middle line breaks the chain where it happened', async (t) => {
  const dir = t.testdir();
  const base = path.join(dir, 'base.log');
  fill(base, 5);
  const orig = lines(base);

  const edited = path.join(dir, 'edited.log');
  const e = orig.slice();
  e[2] = e[2].replace('"event 2"', '"nothing to see"');
  fs.writeFileSync(edited, `${e.join('\n')}\n`);
  let r = await readAuditLog(edited);
  t.notOk(r.chainOk, 'edit detected');
  t.same(r.problems.map((p) => p.line), [4]);
  t.match(r.problems[0].problem, /hash chain broken: prev is not the hash of line 3/);
  t.equal(r.events.length, 5, 'the events are still returned');

  const removed = path.join(dir, 'removed.log');
  fs.writeFileSync(removed, `${orig.filter((_, i) => i !== 1).join('\n')}\n`);
  r = await readAuditLog(removed);
  t.notOk(r.chainOk, 'removal detected');
  t.equal(r.problems[0].line, 2);
  t.match(r.problems.map((p) => p.problem).join('\n'), /seq 3 follows seq 1/);

  const inserted = path.join(dir, 'inserted.log');
  const fake = JSON.stringify({ ...JSON.parse(orig[1]), reason: 'forged' });
  fs.writeFileSync(inserted, `${[orig[0], orig[1], fake, ...orig.slice(2)].join('\n')}\n`);
  r = await readAuditLog(inserted);
  t.notOk(r.chainOk, 'insertion detected');

  const headless = path.join(dir, 'headless.log');
  fs.writeFileSync(headless, `${orig.slice(1).join('\n')}\n`);
  r = await readAuditLog(headless);
  t.notOk(r.chainOk, 'removal of the first line detected');
  t.match(r.problems[0], { line: 1, problem: /first line does not start the chain/ });

  // What the chain cannot show (documented): lines cut off the end.
  const cut = path.join(dir, 'cut.log');
  fs.writeFileSync(cut, `${orig.slice(0, 3).join('\n')}\n`);
  r = await readAuditLog(cut);
  t.ok(r.chainOk, 'a cut tail leaves a valid chain');
  t.not(r.head, sha(orig[4]), 'only a head hash kept elsewhere shows it');
});

t.test('a torn last line is reported, not thrown, and the next writer continues after it', async (t) => {
  const file = path.join(t.testdir(), 'audit.log');
  fill(file, 3);
  const whole = fs.readFileSync(file);
  fs.writeFileSync(file, whole.subarray(0, whole.length - 20)); // crash in the middle of writing line 3
  let r = await readAuditLog(file);
  t.equal(r.lines, 3);
  t.equal(r.events.length, 2);
  t.ok(r.chainOk);
  t.match(r.problems, [{ line: 3, problem: /no newline: a write was interrupted/ }]);

  const log = new AuditLog({ path: file });
  t.equal(log.seq, 3, 'continues after the last valid event');
  const e = log.append({ severity: 'notice', event: 'restart' });
  log.close();
  const l = lines(file);
  t.equal(l.length, 4, 'the torn line was ended; the new event is on its own line');
  t.equal(e.prev, sha(l[2]), 'chained to the torn line as it is in the file');
  r = await readAuditLog(file);
  t.ok(r.chainOk);
  t.same(r.events.map((x) => x.seq), [1, 2, 3]);
  t.match(r.problems, [{ line: 3, problem: /a write of event 3 was cut short .*continues after it, chained/ }]);
  t.same(r.tornWrites, [3], 'the torn write is part of the chain');
  t.equal(r.nonEvents, 0, 'and not counted as a line that is not an event');
  t.notOk(r.tornTail);
});

t.test('garbage is reported line by line', async (t) => {
  const file = path.join(t.testdir(), 'audit.log');
  fs.writeFileSync(file, `not json\n\n{"seq":"x"}\n[1]\n${'y'.repeat(2 * 1024 * 1024)}\n\xff\xfe\n`);
  const r = await readAuditLog(file);
  t.equal(r.lines, 6);
  t.same(r.events, []);
  t.same(r.problems.map((p) => p.line), [1, 2, 3, 4, 5, 6]);
  t.match(r.problems[2].problem, /not an audit event: seq/);
  t.match(r.problems[4].problem, /more than 1048576/);
  // A writer can still continue such a file (a new chain link after the last line).
  const log = new AuditLog({ path: file });
  t.equal(log.seq, 1);
  log.append({ severity: 'info', event: 'load' });
  log.close();
  const r2 = await readAuditLog(file);
  t.equal(r2.events.length, 1);
  t.ok(r2.chainOk);
});

t.test('filters, from memory and from the file', async (t) => {
  const file = path.join(t.testdir(), 'audit.log');
  const log = new AuditLog({ path: file, now: clock(Date.parse('2030-01-01T00:00:00.000Z'), 3600_000) });
  log.append({ severity: 'info', event: 'load', plugin: 'a' }); // 00:00
  log.append({ severity: 'warning', event: 'violation', plugin: 'a' }); // 01:00
  log.append({ severity: 'info', event: 'load', plugin: 'b' }); // 02:00
  log.append({ severity: 'critical', event: 'quarantine', plugin: 'a' }); // 03:00
  log.append({ severity: 'notice', event: 'unload', plugin: 'b' }); // 04:00
  log.close();
  const cases: Array<[Parameters<AuditLog['events']>[0], number[]]> = [
    [{}, [1, 2, 3, 4, 5]],
    [{ plugin: 'a' }, [1, 2, 4]],
    [{ event: 'load' }, [1, 3]],
    [{ event: ['violation', 'unload'] }, [2, 5]],
    [{ minSeverity: 'notice' }, [2, 4, 5]],
    [{ minSeverity: 'critical' }, [4]],
    [{ since: '2030-01-01T01:00:00Z' }, [2, 3, 4, 5]],
    [{ until: new Date('2030-01-01T02:00:00Z') }, [1, 2, 3]],
    [{ since: '2030-01-01T01:30:00Z', until: '2030-01-01T03:00:00Z' }, [3, 4]],
    [{ limit: 2 }, [4, 5]],
    [{ plugin: 'a', limit: 1 }, [4]],
  ];
  for (const [filter, seqs] of cases) {
    t.same(log.events(filter).map((e) => e.seq), seqs, `memory ${JSON.stringify(filter)}`);
    t.same((await readAuditLog(file, filter)).events.map((e) => e.seq), seqs, `file ${JSON.stringify(filter)}`);
  }
  for (const [filter, field] of [
    [{ minSeverity: 'loud' }, 'filter.minSeverity'], [{ since: 'yesterday' }, 'filter.since'], [{ until: new Date(NaN) }, 'filter.until'],
    [{ limit: 0 }, 'filter.limit'], [{ event: [1] }, 'filter.event'], [{ plugin: 5 }, 'filter.plugin'],
  ] as const) {
    t.throws(() => log.events(filter as never), { code: 'ERR_INVALID_OPTION', field });
    await t.rejects(readAuditLog(file, filter as never), { code: 'ERR_INVALID_OPTION', field });
  }
});

t.test('input is validated and names the field', async (t) => {
  const log = new AuditLog();
  const bad: Array<[unknown, string]> = [
    [{ severity: 'urgent', event: 'load' }, 'audit.severity'],
    [{ severity: 'info', event: 'Load' }, 'audit.event'],
    [{ severity: 'info', event: 'load\nforged' }, 'audit.event'],
    [{ severity: 'info', event: 'load', plugin: 5 }, 'audit.plugin'],
    [{ severity: 'info', event: 'load', reason: {} }, 'audit.reason'],
    [{ severity: 'info', event: 'load', details: [1] }, 'audit.details'],
    [{ severity: 'info', event: 'load', pid: 1 }, 'audit.pid'],
    [null, 'audit'],
  ];
  for (const [input, field] of bad) {
    t.throws(() => log.append(input as never), { code: 'ERR_INVALID_OPTION', field }, field);
  }
  t.same(log.events(), [], 'nothing appended');
  t.type((() => { try { log.append({} as never); } catch (e) { return e; } })(), InvalidOptionError);
});

t.test('options: sync flushes each event, maxEvents is validated', async (t) => {
  const file = path.join(t.testdir(), 'audit.log');
  const log = new AuditLog({ path: file, sync: true });
  log.append({ severity: 'info', event: 'load' });
  log.close();
  t.equal(lines(file).length, 1);
  t.throws(() => new AuditLog({ maxEvents: -1 }), { code: 'ERR_INVALID_OPTION', field: 'audit.maxEvents' });
  t.same(new AuditLog({ maxEvents: 0 }).append({ severity: 'info', event: 'x' }).seq, 1);
});

t.test('in-memory logs chain too, and keep at most maxEvents', async (t) => {
  const log = new AuditLog({ maxEvents: 3 });
  const all: AuditEvent[] = [];
  for (let i = 0; i < 5; i++) all.push(log.append({ severity: 'info', event: 'load', reason: String(i) }));
  t.same(log.events().map((e) => e.seq), [3, 4, 5]);
  t.equal(all[1].prev, sha(JSON.stringify(all[0])));
  t.match(all[0].time, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
});

t.test('I/O errors go to onError, never to the caller; the event is kept in memory', async (t) => {
  const file = path.join(t.testdir(), 'audit.log');
  const errors: Error[] = [];
  const log = new AuditLog({ path: file, onError: (e) => { errors.push(e); throw new Error('a throwing onError is contained'); } });
  log.append({ severity: 'info', event: 'load' });
  fs.closeSync((log as unknown as { fd: number }).fd); // the descriptor goes bad under the log
  const e = log.append({ severity: 'critical', event: 'violation' });
  t.equal(e.seq, 2);
  t.ok(errors.length >= 1);
  t.type(errors[errors.length - 1], AuditLogError);
  t.match(errors[errors.length - 1].message, /cannot write event 2/);
  t.same(log.events().map((x) => x.seq), [1, 2]);
  (log as unknown as { fd: number | undefined }).fd = undefined;
  log.close();
  const after = log.append({ severity: 'info', event: 'unload' });
  t.equal(after.seq, 3);
  t.match(errors[errors.length - 1].message, /after close\(\): kept in memory only/);
  t.equal(lines(file).length, 1);
});

t.test('opening refuses what cannot be an audit log', async (t) => {
  const dir = t.testdir();
  t.throws(() => new AuditLog({ path: path.join(dir, 'missing', 'audit.log') }), { code: 'ERR_AUDIT_LOG', errno: 'ENOENT' });
  t.throws(() => new AuditLog({ path: dir }), { code: 'ERR_AUDIT_LOG' });
  const long = path.join(dir, 'long.log');
  fs.writeFileSync(long, 'z'.repeat(1024 * 1024 + 10));
  t.throws(() => new AuditLog({ path: long }), { code: 'ERR_AUDIT_LOG', message: /last line is longer/ });
  await t.rejects(readAuditLog(path.join(dir, 'nope.log')), { code: 'ENOENT' });
  await t.rejects(readAuditLog(dir), { code: /ERR_AUDIT_LOG|EISDIR/ });
});

t.test('concurrent appenders in two processes keep lines whole and one linear chain', async (t) => {
  const file = path.join(t.testdir(), 'audit.log');
  const lib = path.join(__dirname, '..', 'lib', 'audit', 'index.js');
  const script = `const { AuditLog } = require(${JSON.stringify(lib)});
    const log = new AuditLog({ path: process.argv[1] });
    for (let i = 0; i < 300; i++) log.append({ severity: 'info', event: 'load', plugin: process.argv[2], reason: 'r'.repeat(3000 + i) });
    log.close();`;
  const run = (name: string) => new Promise<number | null>((resolve) => {
    spawn(process.execPath, ['-e', script, file, name], { stdio: 'inherit' }).on('exit', resolve);
  });
  const codes = await Promise.all([run('one'), run('two')]);
  t.same(codes, [0, 0]);
  const l = lines(file);
  t.equal(l.length, 600);
  let parsed = 0;
  for (const x of l) {
    try {
      JSON.parse(x);
      parsed++;
    } catch {
      // counted below
    }
  }
  t.equal(parsed, 600, 'every line is a whole event');
  const r = await readAuditLog(file);
  t.equal(r.events.filter((e) => e.plugin === 'one').length, 300);
  t.equal(r.events.filter((e) => e.plugin === 'two').length, 300);
  // The file lock serializes check-and-write: every prev is the line before, seqs run 1..600.
  t.same(r.problems, []);
  t.equal(r.chainOk, true, 'the two processes share one hash chain');
  t.same(r.events.map((e) => e.seq), Array.from({ length: 600 }, (_, i) => i + 1));
});

t.test('a lock held by another process delays an append by a bounded time, then it is written and reported', async (t) => {
  const file = path.join(t.testdir(), 'audit.log');
  fill(file, 2);
  const addon = addonFile();
  // A process that takes the lock and keeps it until told to exit.
  const holder = spawn(process.execPath, ['-e', `
    const fs = require('fs');
    const fd = fs.openSync(process.argv[1], 'a');
    if (require(process.argv[2]).flockFile(fd, 'exclusive') !== 0) process.exit(3);
    process.stdout.write('locked\\n');
    process.stdin.on('data', () => process.exit(0));`, file, addon], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    holder.stdout!.once('data', () => resolve());
    holder.once('exit', (code) => reject(new Error(`holder exited with ${code}`)));
  });
  const errors: Error[] = [];
  const log = new AuditLog({ path: file, onError: (e) => errors.push(e) });
  const started = Date.now();
  const e = log.append({ severity: 'info', event: 'load', plugin: 'late' });
  const waited = Date.now() - started;
  t.ok(waited >= 200 && waited < 5000, `the append waited for the lock, boundedly (${waited} ms)`);
  t.equal(e.seq, 3);
  t.equal(errors.length, 1);
  t.match(errors[0].message, /cannot lock the audit log \(another process held it/);
  holder.stdin!.write('x');
  await new Promise((resolve) => holder.once('exit', resolve));
  // Once the holder is gone the lock is free again: no more errors.
  log.append({ severity: 'info', event: 'unload', plugin: 'late' });
  log.close();
  t.equal(errors.length, 1);
  const r = await readAuditLog(file);
  t.equal(r.chainOk, true);
  t.same(r.events.map((x) => x.seq), [1, 2, 3, 4]);
});

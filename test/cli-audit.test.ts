/** `warden audit` end to end, through bin/warden. */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { AuditLog } from '../lib';

const bin = path.join(__dirname, '..', '..', 'bin', 'warden');

function warden(args: string[], env: NodeJS.ProcessEnv = {}) {
  const e: NodeJS.ProcessEnv = { ...process.env, ...env };
  if (!('WARDEN_AUDIT_LOG' in env)) delete e.WARDEN_AUDIT_LOG;
  const r = spawnSync(bin, args, { encoding: 'utf8', env: e });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Five events an hour apart, ending one hour ago. */
function makeLog(dir: string): string {
  const file = path.join(dir, 'audit.log');
  let now = Date.now() - 5 * 3600_000;
  const log = new AuditLog({ path: file, now: () => new Date((now += 3600_000) - 3600_000) });
  log.append({ severity: 'info', event: 'verify', plugin: 'alpha', version: '1.0.0', reason: 'trusted by 2 keys' });
  log.append({ severity: 'info', event: 'load', plugin: 'alpha', version: '1.0.0' });
  log.append({ severity: 'critical', event: 'violation', plugin: 'alpha', reason: 'syscall ptrace\n\u001b[2J\u202eevil', details: { syscall: 'ptrace' } });
  log.append({ severity: 'warning', event: 'quarantine', plugin: 'alpha', reason: '3 violations in 60 s' });
  log.append({ severity: 'notice', event: 'load', plugin: 'beta', version: '2.1.0' });
  log.close();
  return file;
}

t.test('table: one row per event, plugin strings escaped', async (t) => {
  const file = makeLog(t.testdir());
  const r = warden(['audit', '--file', file]);
  t.equal(r.status, 0, r.stderr);
  const rows = r.stdout.trimEnd().split('\n');
  t.equal(rows.length, 6);
  t.match(rows[0], /^TIME\s+SEVERITY\s+EVENT\s+PLUGIN\s+REASON$/);
  t.match(rows[1], /^\d{4}-\d\d-\d\dT\S+Z\s+info\s+verify\s+alpha@1\.0\.0\s+trusted by 2 keys$/);
  t.match(rows[3], /critical\s+violation\s+alpha\s+syscall ptrace\\u000a\\u001b\[2J\\u202eevil$/);
  t.notMatch(r.stdout, /[\u001b\u202e]/, 'no raw escape or bidi override reaches the terminal');
  t.match(rows[5], /notice\s+load\s+beta@2\.1\.0\s+-$/);
  t.equal(r.stderr, '');
});

t.test('filters and --json', async (t) => {
  const file = makeLog(t.testdir());
  const seqs = (...args: string[]) => {
    const r = warden(['audit', '--file', file, '--json', ...args]);
    t.equal(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { seq: number }).seq);
  };
  t.same(seqs(), [1, 2, 3, 4, 5]);
  t.same(seqs('--plugin', 'beta'), [5]);
  t.same(seqs('--event', 'load'), [2, 5]);
  t.same(seqs('--event', 'verify,quarantine'), [1, 4]);
  t.same(seqs('--event', 'verify', '--event', 'load'), [1, 2, 5]);
  t.same(seqs('--severity', 'warning'), [3, 4]);
  t.same(seqs('--limit', '2'), [4, 5]);
  t.same(seqs('--since', '150m'), [4, 5], 'an age');
  t.same(seqs('--until', '150m'), [1, 2, 3]);
  t.same(seqs('--since', '2000-01-01', '--until', '2000-12-31'), []);
  t.same(seqs('--since', new Date(Date.now() - 10 * 3600_000).toISOString().slice(0, 16) + 'Z', '--plugin', 'alpha', '--limit', '1'), [4]);
  const j = warden(['audit', '--file', file, '--json', '--event', 'violation']);
  t.same(JSON.parse(j.stdout).details, { syscall: 'ptrace' });
  t.equal(JSON.parse(j.stdout).reason, 'syscall ptrace\n\u001b[2J\u202eevil', 'JSON output is escaped yet reads back unchanged');
  t.notMatch(j.stdout, /[\u001b\u202e]/);
  const none = warden(['audit', '--file', file, '--plugin', 'gamma']);
  t.equal(none.status, 0);
  t.equal(none.stdout, '');
  t.match(none.stderr, /no matching event/);
});

t.test('WARDEN_AUDIT_LOG stands in for --file', async (t) => {
  const file = makeLog(t.testdir());
  const r = warden(['audit', '--json', '--limit', '1'], { WARDEN_AUDIT_LOG: file });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /"plugin":"beta"/);
});

t.test('--verify: 0 for an intact chain, 1 for a broken one', async (t) => {
  const dir = t.testdir();
  const file = makeLog(dir);
  let r = warden(['audit', '--file', file, '--verify']);
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /^OK: .* hash chain intact over 5 line\(s\); last line sha256 [0-9a-f]{64}\n$/);

  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines[2] = lines[2].replace('critical', 'info');
  fs.writeFileSync(file, lines.join('\n'));
  r = warden(['audit', '--file', file, '--verify']);
  t.equal(r.status, 1);
  t.match(r.stdout, /^BROKEN: /);
  t.match(r.stderr, /audit\.log:4: hash chain broken: prev is not the hash of line 3/);
  r = warden(['audit', '--file', file]);
  t.equal(r.status, 0, 'showing a damaged log is not an error');
  t.match(r.stderr, /:4: hash chain broken/);

  // A torn last line is reported, with its own exit code, but is not a broken chain.
  const torn = path.join(dir, 'torn.log');
  const whole = fs.readFileSync(makeLog(t.testdir()));
  fs.writeFileSync(torn, whole.subarray(0, whole.length - 10));
  r = warden(['audit', '--file', torn, '--verify']);
  t.equal(r.status, 5, r.stderr);
  t.match(r.stderr, /torn\.log:5: the last line has no newline/);
  t.match(r.stdout, /^TORN: .*hash chain intact over 5 line\(s\); the last line is a write cut short/);
});

t.test('--verify fails on any line that is not a chained event, naming the line', async (t) => {
  const dir = t.testdir();
  const garbage = path.join(dir, 'garbage.log');
  fs.writeFileSync(garbage, 'hello\nworld\n{"not":"an event"}\n');
  let r = warden(['audit', '--file', garbage, '--verify']);
  t.equal(r.status, 1, 'a file of garbage is not an intact log');
  t.match(r.stdout, /^BROKEN: .*garbage\.log: line 1 is not a chained audit event \(not valid JSON\); 3 of 3 line\(s\) are not events\n$/);

  // One foreign line in an otherwise intact chain, at the end (the chain cannot catch it there).
  const file = makeLog(dir);
  fs.appendFileSync(file, 'appended by someone\n');
  r = warden(['audit', '--file', file, '--verify']);
  t.equal(r.status, 1);
  t.match(r.stdout, /line 6 is not a chained audit event/);
  const blank = makeLog(t.testdir());
  fs.appendFileSync(blank, '\n');
  t.match(warden(['audit', '--file', blank, '--verify']).stdout, /line 6 is not a chained audit event \(empty line\)/);
});

t.test('bad options exit 2 and name the option', async (t) => {
  const file = makeLog(t.testdir());
  const cases: Array<[string[], RegExp]> = [
    [['--severity', 'loud'], /--severity must be one of info, notice, warning, critical, got 'loud'/],
    [['--limit', '0'], /--limit must be a positive integer/],
    [['--limit', 'ten'], /--limit must be a positive integer/],
    [['--since', 'yesterday'], /--since must be an age like 30m, 12h, 7d or a date/],
    [['--until', '2030-13-45'], /--until must be/],
    [['--frob'], /Unknown option '--frob'/],
    [['extra'], /unexpected argument 'extra'/],
  ];
  for (const [args, msg] of cases) {
    const r = warden(['audit', '--file', file, ...args]);
    t.equal(r.status, 2, args.join(' '));
    t.match(r.stderr, msg);
    t.match(r.stderr, /warden audit --help/);
  }
  const r = warden(['audit']);
  t.equal(r.status, 2);
  t.match(r.stderr, /--file FILE is required \(or set WARDEN_AUDIT_LOG/);
});

t.test('a missing file exits 1; help and the command list mention audit', async (t) => {
  const r = warden(['audit', '--file', path.join(t.testdir(), 'nope.log')]);
  t.equal(r.status, 1);
  t.match(r.stderr, /nope\.log: no such file or directory \[ENOENT\]/);
  const h = warden(['audit', '--help']);
  t.equal(h.status, 0);
  t.match(h.stdout, /usage: warden audit/);
  t.match(h.stdout, /--verify/);
  t.match(warden(['--help']).stdout, /audit\s+show, filter and verify an audit log/);
});

t.test('--verify after crashes: a torn write continued after, a torn tail, a cut tail, a rewrite', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'audit.log');
  const checkpoint = path.join(dir, 'audit.checkpoint');
  const append = (n: number) => {
    const log = new AuditLog({ path: file, checkpoint });
    for (let i = 0; i < n; i++) log.append({ severity: 'info', event: 'load', plugin: `p${i}` });
    log.close();
  };
  append(3);
  const verify = (...extra: string[]) => warden(['audit', '--file', file, '--verify', ...extra]);
  let r = verify('--checkpoint', checkpoint);
  t.equal(r.status, 0, r.stdout + r.stderr);
  t.match(r.stdout, /^OK: .*hash chain intact over 3 line\(s\), event 3 matches the checkpoint/);

  // A crash in the middle of the 4th append: its line is cut short, no newline.
  const whole = fs.readFileSync(file);
  const line4 = JSON.stringify({ seq: 4, time: new Date().toISOString(), severity: 'info', event: 'load', plugin: 'cut' });
  fs.appendFileSync(file, line4.slice(0, 30));
  r = verify();
  t.equal(r.status, 5, 'a torn tail has its own exit code');
  t.match(r.stdout, /^TORN: .*the last line is a write cut short/);

  // The host restarts and appends: the torn line is ended and the chain goes on from it.
  append(2);
  r = verify('--checkpoint', checkpoint);
  t.equal(r.status, 0, r.stdout + r.stderr);
  t.match(r.stdout, /^OK: .*1 write\(s\) cut short by a crash and continued after \(line 4\), event 5 matches the checkpoint/);
  t.match(r.stderr, /:4: a write of event 4 was cut short/);

  // Lines cut off the end: the chain alone cannot see it, the checkpoint can.
  const full = fs.readFileSync(file);
  fs.writeFileSync(file, whole);
  t.equal(verify().status, 0, 'the chain alone: a shorter log looks intact');
  r = verify('--checkpoint', checkpoint);
  t.equal(r.status, 3);
  t.match(r.stdout, /^CUT: .*ends at event 3, but the checkpoint names event 5/);

  // The whole file rewritten (valid chain, other content).
  fs.rmSync(file);
  const forged = new AuditLog({ path: file });
  for (let i = 0; i < 6; i++) forged.append({ severity: 'info', event: 'load', plugin: `forged${i}` });
  forged.close();
  t.equal(verify().status, 0, 'the chain alone: a rewritten log looks intact');
  r = verify('--checkpoint', checkpoint);
  t.equal(r.status, 4);
  t.match(r.stdout, /^REWRITTEN: .*event 5 differs/);

  // A garbage line that merely looks like the start of an event is still not an event.
  fs.writeFileSync(file, Buffer.concat([full, Buffer.from('{"seq":6,"garbage\n')]));
  r = verify();
  t.equal(r.status, 1, 'a complete line that is not an event and is not continued is refused');
  t.match(r.stdout, /^BROKEN: .*line 7 is not a chained audit event/);

  fs.writeFileSync(checkpoint, '{"seq":"x"}');
  r = verify('--checkpoint', checkpoint);
  t.equal(r.status, 2);
  t.match(r.stderr, /not a checkpoint/);
});

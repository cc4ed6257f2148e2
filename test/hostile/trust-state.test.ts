/**
 * Rollback through the state file, against a real PluginHost: the host accepted list version 2,
 * which revoked alpha@1.0.0; the attacker puts version 1 (validly signed, alpha listed) back in
 * place of the list and does something to the state file that remembers version 2. Whatever is done
 * to it, at a restart or under a running host, version 1 must not be accepted and alpha must not run;
 * starting over is possible only as an operator's act, audited at critical.
 */
import t, { Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';

import { readAuditLog } from '../../lib/audit';
import { spawnNode } from '../../lib/process/spawn-node';
import { PluginWorld } from '../helpers/plugins';

const HOOKS = [{ name: 'who', mode: 'first' as const }];
const ALPHA = `exports.activate = (host) => { host.hook('who', () => 'alpha'); };`;

interface Setup {
  w: PluginWorld;
  /** Version 1 of the list (alpha@1.0.0 listed). */
  v1: Buffer;
  /** Version 2 of the list (alpha revoked). */
  v2: Buffer;
  /** The state file as it was after version 1, and after version 2. */
  state1: Buffer;
  state2: Buffer;
}

async function setup(t: Test): Promise<Setup> {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('alpha', { code: ALPHA, hooks: ['who'] });
  await w.trust('alpha');
  await w.publish();
  const v1 = fs.readFileSync(w.trustFile);
  const first = w.host({ hooks: HOOKS });
  await first.start();
  t.equal(first.status('alpha'), 'active', 'version 1: alpha runs');
  await first.close();
  const state1 = fs.readFileSync(w.statePath);
  w.untrust('alpha');
  await w.publish();
  const v2 = fs.readFileSync(w.trustFile);
  const second = w.host({ hooks: HOOKS });
  await second.start();
  t.equal(second.status('alpha'), 'failed', 'version 2: alpha is revoked');
  await second.close();
  const state2 = fs.readFileSync(w.statePath);
  return { w, v1, v2, state1, state2 };
}

/** Ways to do away with the state file; each leaves the path as the attacker wants it. */
const TAMPER: Record<string, { code: string; apply: (s: Setup) => void }> = {
  'deleted': { code: 'ERR_TRUST_STATE_MISSING', apply: (s) => fs.rmSync(s.w.statePath) },
  'truncated to nothing': { code: 'ERR_TRUST_STATE', apply: (s) => fs.truncateSync(s.w.statePath, 0) },
  'truncated halfway': { code: 'ERR_TRUST_STATE', apply: (s) => fs.truncateSync(s.w.statePath, Math.floor(s.state2.length / 2)) },
  'a dangling symlink': {
    code: 'ERR_TRUST_STATE',
    apply: (s) => {
      fs.rmSync(s.w.statePath);
      fs.symlinkSync(path.join(s.w.root, 'nowhere.json'), s.w.statePath);
    },
  },
  'a looping symlink': {
    code: 'ERR_TRUST_STATE',
    apply: (s) => {
      fs.rmSync(s.w.statePath);
      fs.symlinkSync(s.w.statePath, s.w.statePath);
    },
  },
  'a symlink to a copy of the older state': {
    code: 'ERR_TRUST_STATE',
    apply: (s) => {
      const old = path.join(s.w.root, 'old-state.json');
      fs.writeFileSync(old, s.state1);
      fs.rmSync(s.w.statePath);
      fs.symlinkSync(old, s.w.statePath);
    },
  },
};

function restore(s: Setup): void {
  fs.rmSync(s.w.statePath, { force: true });
  fs.writeFileSync(s.w.statePath, s.state2, { mode: 0o600 });
  fs.writeFileSync(s.w.trustFile, s.v2);
}

t.test('at a restart: the host refuses to start on a tampered state file, and the revoked plugin stays stopped', async (t) => {
  const s = await setup(t);
  for (const [what, { code, apply }] of Object.entries(TAMPER)) {
    await t.test(`state file ${what}`, async (t) => {
      restore(s);
      apply(s);
      fs.writeFileSync(s.w.trustFile, s.v1); // the replayed list
      const started: string[] = [];
      const host = s.w.host({ hooks: HOOKS, launcher: async (entry, options) => { started.push(entry); return spawnNode(entry, options); } });
      t.teardown(() => host.close());
      await t.rejects(host.start(), { code }, `start refuses with ${code}`);
      t.same(started, [], 'no plugin was started');
      t.same(host.plugins(), [], 'none is even known: the host did not get past its trust list');
      t.equal((await host.invoke('who')).value, undefined, 'nothing answers for alpha');
      const { events } = await readAuditLog(s.w.auditPath, { event: 'verify', minSeverity: 'critical' });
      t.equal(events[events.length - 1]?.details?.code, code, 'the refusal is audited at critical with its code');
    });
  }
});

t.test('while running: the host keeps the version it accepted and refuses the replayed list', async (t) => {
  const s = await setup(t);
  restore(s);
  const host = s.w.host({ hooks: HOOKS });
  t.teardown(() => host.close());
  await host.start();
  const cases = {
    ...TAMPER,
    // Only a running host can tell these: the file is a good one, for less than it accepted.
    'replaced by a copy of the older state': { code: 'ERR_TRUST_STATE_REPLACED', apply: (x: Setup) => fs.writeFileSync(x.w.statePath, x.state1) },
    'reset under it': {
      code: 'ERR_TRUST_STATE_REPLACED',
      apply: (x: Setup) => fs.writeFileSync(x.w.statePath, JSON.stringify({ type: 'warden-trust-state', version: 0, resetAt: new Date().toISOString(), reason: 'sneaky' })),
    },
  };
  for (const [what, { code, apply }] of Object.entries(cases)) {
    await t.test(`state file ${what}`, async (t) => {
      restore(s);
      apply(s);
      fs.writeFileSync(s.w.trustFile, s.v1);
      await t.rejects(host.refreshTrust(), { code }, `the replayed list is refused with ${code}`);
      await t.rejects(host.load('alpha'), { code: 'ERR_PLUGIN_LOAD', stage: 'verify' }, 'alpha is still revoked');
      t.equal(host.info('alpha').reason?.code, 'ERR_TRUST_NOT_LISTED', 'by version 2, still in force');
    });
  }
  restore(s);
  await host.refreshTrust();
  t.pass('with the state file back, the current list is accepted again');
});

t.test('starting over is explicit and audited at critical: warden trust reset-state, or the startOver option', async (t) => {
  const s = await setup(t);
  // The world was made with a reset record, as an operator would (one line already).
  const base = (await readAuditLog(s.w.auditPath, { event: 'trust-state-reset' })).events.length;
  t.equal(base, 1, 'the first start of the world is recorded as a start-over');
  fs.rmSync(s.w.statePath);
  fs.writeFileSync(s.w.trustFile, s.v1);

  // The option applies only where there is no state file; it makes the host accept version 1 again.
  const opted = s.w.host({ hooks: HOOKS, trust: { store: s.w.store({ startOver: true }), file: s.w.trustFile } });
  await opted.start();
  t.equal(opted.status('alpha'), 'active', 'started over: the old list is accepted (that is what a reset means)');
  await opted.close();
  let { events } = await readAuditLog(s.w.auditPath, { event: 'trust-state-reset' });
  t.equal(events.length, base + 1);
  t.equal(events[base]!.severity, 'critical');
  t.match(events[base]!.reason, /started over \(startOver option\), version 1 accepted without rollback protection/);

  // With a state file, the option changes nothing: version 2 accepted, version 1 is a rollback.
  fs.writeFileSync(s.w.trustFile, s.v2);
  const again = s.w.host({ hooks: HOOKS, trust: { store: s.w.store({ startOver: true }), file: s.w.trustFile } });
  await again.start();
  await again.close();
  fs.writeFileSync(s.w.trustFile, s.v1);
  const refused = s.w.host({ hooks: HOOKS, trust: { store: s.w.store({ startOver: true }), file: s.w.trustFile } });
  await t.rejects(refused.start(), { code: 'ERR_TRUST_ROLLBACK' });
  await refused.close();

  // The command: needs a reason and an audit log, records the reset at critical, then the host starts over.
  const bin = path.join(__dirname, '..', '..', '..', 'bin', 'warden');
  const env = { ...process.env };
  delete env.WARDEN_AUDIT_LOG;
  let r = spawnSync(bin, ['trust', 'reset-state', s.w.statePath, '--audit', s.w.auditPath], { encoding: 'utf8', env });
  t.equal(r.status, 2, 'no --reason: refused');
  r = spawnSync(bin, ['trust', 'reset-state', s.w.statePath, '--reason', 'x'], { encoding: 'utf8', env });
  t.equal(r.status, 2, 'no audit log: refused');
  t.match(r.stderr, /--audit FILE/);
  r = spawnSync(bin, ['trust', 'reset-state', s.w.statePath, '--reason', 'restored host from image', '--audit', s.w.auditPath], { encoding: 'utf8', env });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /was: version 2 accepted/);
  ({ events } = await readAuditLog(s.w.auditPath, { event: 'trust-state-reset' }));
  t.equal(events.length, base + 2);
  t.equal(events[base + 1]!.severity, 'critical');
  t.equal(events[base + 1]!.details?.previousVersion, 2);
  const host = s.w.host({ hooks: HOOKS });
  t.teardown(() => host.close());
  await host.start();
  t.equal(host.status('alpha'), 'active', 'after the reset the operator chose, version 1 is accepted');
  ({ events } = await readAuditLog(s.w.auditPath, { event: 'trust-state-reset' }));
  t.equal(events.length, base + 3, 'and the host records that it started over');
  t.match(events[base + 2]!.reason, /reset by the operator .*restored host from image/);
  const state = JSON.parse(fs.readFileSync(s.w.statePath, 'utf8')) as { version: number };
  t.equal(state.version, 1, 'the reset record is replaced by the accepted version');
});

t.test('the state file is written whole and in place of a symlink, never through it', async (t) => {
  const s = await setup(t);
  // A link planted where the state file goes, pointing at a file the attacker wants overwritten.
  const victim = path.join(s.w.root, 'victim');
  fs.writeFileSync(victim, 'precious\n');
  fs.rmSync(s.w.statePath);
  fs.symlinkSync(victim, s.w.statePath);
  const bin = path.join(__dirname, '..', '..', '..', 'bin', 'warden');
  const r = spawnSync(bin, ['trust', 'reset-state', s.w.statePath, '--reason', 'replace the link', '--audit', s.w.auditPath], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /was: .*symbolic link/, 'the command says what it found');
  t.equal(fs.readFileSync(victim, 'utf8'), 'precious\n', 'the link target is untouched');
  const host = s.w.host({ hooks: HOOKS });
  t.teardown(() => host.close());
  await host.start();
  const st = fs.lstatSync(s.w.statePath);
  t.ok(st.isFile(), 'a regular file replaced the link');
  t.equal(st.mode & 0o777, 0o600, 'readable by the host only');
  t.equal((JSON.parse(fs.readFileSync(s.w.statePath, 'utf8')) as { version: number }).version, 2);
  t.same(fs.readdirSync(s.w.root).filter((n) => n.endsWith('.tmp')), [], 'no temporary file left');
});

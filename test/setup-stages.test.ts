/**
 * The one table of setup stages (native/stages.h, exported by the addon as `setupStages`) and the
 * hint per stage in lib/sandbox/errors.ts: every native stage has a hint, every hint names a native
 * stage, and every stage the native code can report, or the TypeScript side looks for, is in the
 * table.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { addon } from '../lib/native';
import { Sandbox } from '../lib/sandbox/sandbox';
import { MOUNT_ENTRY_STAGES, SandboxSetupError, SETUP_STAGE_HINTS } from '../lib/sandbox/errors';

const root = path.join(__dirname, '..', '..');
const nativeDir = path.join(root, 'native');
const stages = addon().setupStages;

/** The table as the source declares it: enum name → stage name, in order. */
function declaredStages(): Array<[string, string]> {
  const header = fs.readFileSync(path.join(nativeDir, 'stages.h'), 'utf8');
  return [...header.matchAll(/^\s*X\((k\w+), "([a-z0-9-]+)"\)/gm)].map((m) => [m[1], m[2]]);
}

t.test('the addon exports the table of native/stages.h, in order', async (t) => {
  t.ok(Array.isArray(stages) && stages.length > 30, 'a list of stage names');
  t.same([...stages], declaredStages().map(([, name]) => name), 'the binary is built from the current table');
  t.equal(new Set(stages).size, stages.length, 'no name twice');
  t.notOk(stages.includes('none'), "'none' (nothing failed) is no stage");
});

t.test('every native stage has a hint, and every hint names a native stage', async (t) => {
  const missing = stages.filter((s) => typeof SETUP_STAGE_HINTS[s] !== 'string' || SETUP_STAGE_HINTS[s].length < 20);
  t.same(missing, [], 'a stage added to native/stages.h needs its hint in lib/sandbox/errors.ts');
  const stale = Object.keys(SETUP_STAGE_HINTS).filter((s) => !stages.includes(s));
  t.same(stale, [], 'a hint for a stage the native table no longer has');
  for (const s of stages) {
    const e = new SandboxSetupError(s, 0, undefined, '');
    t.ok(e.message.endsWith(SETUP_STAGE_HINTS[s]), `the error of stage '${s}' carries its hint`);
  }
});

t.test('every stage the native code reports is in the table, and none is a free string', async (t) => {
  const declared = new Set(declaredStages().map(([id]) => id));
  const sources = fs.readdirSync(nativeDir).filter((f) => /\.(cc|h)$/.test(f));
  const used = new Set<string>();
  for (const f of sources) {
    const text = fs.readFileSync(path.join(nativeDir, f), 'utf8');
    for (const m of text.matchAll(/Stage::(k\w+)/g)) used.add(m[1]);
    // The stage of an ERR_SANDBOX_SETUP is always StageName(...) of the table.
    t.notMatch(text, /Set\("stage",\s*Napi::String::New\(\s*env,\s*"/, `${f}: no stage as a string literal`);
    t.notMatch(text, /setup failed at stage [a-z]/, `${f}: no stage name inside a message string`);
  }
  used.delete('kNone');
  t.ok(used.size > 30, 'the sources report stages through the enum');
  t.same([...used].filter((id) => !declared.has(id)), [], 'every Stage:: the sources use is declared in stages.h');
  t.same([...declared].filter((id) => !used.has(id)), [], 'every stage of the table is reported somewhere (no dead stage)');
});

t.test('the stages lib/sandbox looks for are in the table', async (t) => {
  t.same(MOUNT_ENTRY_STAGES.filter((s) => !stages.includes(s)), [], 'MOUNT_ENTRY_STAGES');
  const dir = path.join(root, 'lib', 'sandbox');
  for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
    const text = fs.readFileSync(path.join(dir, f), 'utf8');
    for (const m of text.matchAll(/stage\s*[!=]==\s*'([^']+)'/g)) {
      t.ok(stages.includes(m[1]), `${f}: stage '${m[1]}' is in the table`);
    }
  }
});

t.test('failures the child reports at run time name a stage of the table, with its hint', async (t) => {
  const cases: Array<[string, () => unknown]> = [
    ['exec', () => Sandbox.spawn({ command: ['/no/such/program'] })],
    ['chdir', () => Sandbox.spawn({ command: ['/bin/true'], cwd: '/nowhere' })],
    ['mkdir', () => Sandbox.spawn({ command: ['/bin/true'], tmpfs: [{ target: '/usr/lib/x' }] })],
  ];
  for (const [expected, fn] of cases) {
    let err: unknown;
    try {
      fn();
    } catch (e) {
      err = e;
    }
    t.type(err, SandboxSetupError, `${expected}: a setup error`);
    const e = err as SandboxSetupError;
    t.equal(e.stage, expected);
    t.ok(stages.includes(e.stage), `'${e.stage}' is in the native table`);
    t.ok(e.message.endsWith(SETUP_STAGE_HINTS[e.stage]), `'${e.stage}' comes with its hint`);
  }
});

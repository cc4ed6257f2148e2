// The runner runs as one bundled file (process/runner-bundle.ts): a cold start costs milliseconds
// more without it, and a bundle that cannot be built falls back to the plain files without a word.
// So the bundle must build from this package's runner, and hold exactly the modules it may load.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';

import { RUNNER_ENTRY } from '../lib/process/plugin-process';
import { bundleSource, runnerBundle } from '../lib/process/runner-bundle';

t.test("the runner's bundle builds from the compiled runner, with the modules it reaches", async (t) => {
  // A require of a literal relative path anywhere in the runner's files, a string included, is read
  // as one of its modules: a scratch module's text written that way made the build fail.
  const source = bundleSource(RUNNER_ENTRY);
  const modules = [...source.matchAll(/^defs\[("[^"]+")\] = function/gm)].map((m) => path.relative(path.join(__dirname, '..', 'lib'), JSON.parse(m[1]!) as string));
  t.ok(modules.includes(path.join('runner', 'main.js')), 'the entry is in it');
  t.ok(modules.includes(path.join('channel', 'rpc.js')), 'the channel is in it');
  t.ok(modules.every((m) => !m.startsWith('..')), `only files of lib/ (${modules.length} modules)`);
  const file = runnerBundle(RUNNER_ENTRY);
  t.type(file, 'string', 'the host makes the bundle (a null here means every runner starts from the plain files)');
  t.equal(fs.readFileSync(file!, 'utf8'), source);
});

t.test('a bundle that cannot be made is said once, as a process warning', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const mod = path.join(__dirname, '..', 'lib', 'process', 'runner-bundle.js');
  const r = spawnSync(process.execPath, ['-e', `const b = require(${JSON.stringify(mod)}); console.log(b.runnerBundle('/nonexistent/main.js'), b.runnerBundle('/nonexistent/main.js'))`], { encoding: 'utf8' });
  t.equal(r.stdout.trim(), 'null null', 'no bundle: runners start from the plain files');
  t.match(r.stderr, /WARDEN_RUNNER_BUNDLE.*the runner bundle could not be made \(ENOENT/s);
  t.equal(r.stderr.split('the runner bundle could not be made').length - 1, 1, 'once');
});

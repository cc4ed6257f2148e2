/**
 * The runner as one file. Node pays for every module it loads from disk (resolution, package.json
 * scope lookups, a compile without code cache): the runner's six modules cost about 5.5 ms of cpu
 * over `node -e 0` on the 2-core bench machine, the same code in one file about 2 ms (measured
 * with `perf stat -e task-clock`, 15 interleaved runs each). A startup snapshot of the same bundle
 * (`node --snapshot-blob`) was slower than either: deserializing a 4 MB custom snapshot costs
 * more than the built-in one saves.
 *
 * The bundle is made once per host process from the compiled modules (it is always exactly the
 * code of this package), written to a private directory (mkdtemp, readable by the sandbox's uid)
 * and bound read-only into each runner's sandbox. It is removed when the host exits; a host killed
 * before it could (SIGKILL, OOM) leaves it, so the directory's name carries the host's pid and the
 * next host removes those of dead pids. Any failure falls back to the plain entry file, with a
 * process warning (WARDEN_RUNNER_BUNDLE).
 * WARDEN_RUNNER_BUNDLE=0 turns it off (debugging).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pidAlive } from '../pid-alive';

const REQUIRE_RE = /\brequire\((["'])(\.{1,2}\/[^"']+)\1\)/g;

/** Builds the bundle's source from the compiled module `entry` and the relative requires it reaches. */
export function bundleSource(entry: string): string {
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const src = fs.readFileSync(file, 'utf8');
    for (const m of src.matchAll(REQUIRE_RE)) visit(resolveJs(path.dirname(file), m[2]!));
    order.push(file);
  };
  visit(entry);
  const defs = order.map((file) => {
    const src = fs.readFileSync(file, 'utf8').replace(/^\/\/# sourceMappingURL=.*$/m, '');
    return `defs[${JSON.stringify(file)}] = function (exports, require, module, __filename, __dirname) {${src}\n};`;
  });
  return [
    '// warden plugin runner, bundled from the compiled modules below (lib/process/runner-bundle.ts).',
    '(function () {',
    "'use strict';",
    'const outer = require;',
    'const { dirname, join } = outer("node:path");',
    'const defs = Object.create(null);',
    'const cache = Object.create(null);',
    'function load(file) {',
    '  const hit = cache[file];',
    '  if (hit !== undefined) return hit.exports;',
    '  const module = { exports: {} };',
    '  cache[file] = module;',
    '  const dir = dirname(file);',
    '  const req = (spec) => {',
    '    if (spec.startsWith("./") || spec.startsWith("../")) {',
    '      const target = join(dir, spec) + (spec.endsWith(".js") ? "" : ".js");',
    '      if (defs[target] !== undefined) return load(target);',
    '      return outer(target);',
    '    }',
    '    return outer(spec);',
    '  };',
    '  defs[file].call(module.exports, module.exports, req, module, file, dir);',
    '  return module.exports;',
    '}',
    ...defs,
    `load(${JSON.stringify(entry)});`,
    '})();',
    '',
  ].join('\n');
}

function resolveJs(dir: string, spec: string): string {
  return path.join(dir, spec.endsWith('.js') ? spec : `${spec}.js`);
}

let built: string | null | undefined;

const BUNDLE_DIR_PREFIX = 'warden-runner-';
const BUNDLE_DIR = new RegExp(`^${BUNDLE_DIR_PREFIX}(\\d+)-[A-Za-z0-9]{6}$`);

/**
 * Removes bundle directories that hosts killed before their exit handler left in the temporary
 * directory: only ours by name, owned by our uid, real directories (never a symlink someone planted),
 * and only when no process has the pid in the name.
 */
function removeBundlesOfDeadHosts(): void {
  const tmp = os.tmpdir();
  let names: string[];
  try {
    names = fs.readdirSync(tmp);
  } catch {
    return;
  }
  for (const name of names) {
    const m = BUNDLE_DIR.exec(name);
    if (m === null || Number(m[1]) === process.pid || pidAlive(Number(m[1]))) continue;
    const dir = path.join(tmp, name);
    try {
      const st = fs.lstatSync(dir);
      if (!st.isDirectory() || st.uid !== process.getuid?.()) continue;
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // another host removed it first, or it is not ours to remove
    }
  }
}

/** The bundle's path (made on first use), or null when it cannot be made or is turned off. */
export function runnerBundle(entry: string): string | null {
  if (built !== undefined) return built;
  built = null;
  if (process.env.WARDEN_RUNNER_BUNDLE === '0') return built;
  let dir: string | undefined;
  try {
    const source = bundleSource(entry);
    removeBundlesOfDeadHosts();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `${BUNDLE_DIR_PREFIX}${process.pid}-`));
    // The sandbox's uid reads it; nobody but us writes.
    fs.chmodSync(dir, 0o755);
    const file = path.join(dir, 'runner.js');
    fs.writeFileSync(file, source, { mode: 0o644, flag: 'wx' });
    const made = dir;
    process.once('exit', () => fs.rmSync(made, { recursive: true, force: true }));
    built = file;
  } catch (e) {
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
    built = null;
    // Said once, not silent: runners still start, milliseconds slower each (a runner source the
    // bundler misread once cost every cold start ~10 ms, unnoticed).
    process.emitWarning(`the runner bundle could not be made (${(e as Error).message}); runners start from the plain files, slower`, { code: 'WARDEN_RUNNER_BUNDLE' });
  }
  return built;
}

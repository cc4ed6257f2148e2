/**
 * A copy of the built package that another user can reach.
 *
 * Tests that run something as an ordinary user (uid 1000 through setpriv) cannot use the checkout
 * itself: it may live anywhere, for example in a `mktemp -d` directory or under /root, both 0700,
 * where uid 1000 cannot even look up the path. So such a test copies what the package needs at run
 * time (the compiled library and examples, the addon, the production dependencies) into a fresh
 * world-readable temporary directory and runs from there. Where no such directory can be made (a
 * TMPDIR that others cannot traverse), the caller skips and says why.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** The checkout: dist/test/helpers → the package root. */
const PACKAGE_ROOT = path.resolve(__dirname, '..', '..', '..');

/** What runs as another user: compiled code, the examples' plugins, the addon wherever it was built. */
const RUNTIME_ENTRIES = ['package.json', 'bin', 'dist/lib', 'dist/examples', 'examples', 'build/Release', 'prebuilds'];

export type Reachable = { root: string; skip?: undefined } | { root?: undefined; skip: string };

let made: Reachable | undefined;

/** The package's runtime files under a directory every user can read (made once per test process). */
export function reachablePackage(): Reachable {
  if (made !== undefined) return made;
  const blocked = firstUntraversable(os.tmpdir());
  if (blocked !== undefined) {
    made = { skip: `skip: ${blocked} (on the way to the temporary directory) cannot be traversed by other users; set TMPDIR to a directory they can reach` };
    return made;
  }
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-reachable-'));
  process.once('exit', () => fs.rmSync(root, { recursive: true, force: true }));
  fs.chmodSync(root, 0o755);
  for (const entry of RUNTIME_ENTRIES) copyIfPresent(path.join(PACKAGE_ROOT, entry), path.join(root, entry));
  for (const dep of productionDependencies()) copyIfPresent(path.join(PACKAGE_ROOT, 'node_modules', dep), path.join(root, 'node_modules', dep));
  made = { root };
  return made;
}

function copyIfPresent(from: string, to: string): void {
  if (!fs.existsSync(from)) return;
  fs.mkdirSync(path.dirname(to), { recursive: true, mode: 0o755 });
  // dereference: a dependency may be a symlink (workspaces, linked installs); the copy holds files.
  fs.cpSync(from, to, { recursive: true, dereference: true });
  makeWorldReadable(to);
}

/** The checkout may have been made under umask 077: open up the copy (it is ours, in a fresh directory). */
function makeWorldReadable(p: string): void {
  const st = fs.lstatSync(p);
  if (st.isSymbolicLink()) return;
  fs.chmodSync(p, st.mode | (st.isDirectory() || st.mode & 0o100 ? 0o555 : 0o444));
  if (st.isDirectory()) for (const name of fs.readdirSync(p)) makeWorldReadable(path.join(p, name));
}

/** The closure of package.json's `dependencies`, as installed (hoisted) at the top of node_modules. */
function productionDependencies(): string[] {
  const seen = new Set<string>();
  const visit = (dir: string): void => {
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    for (const name of Object.keys(pkg.dependencies ?? {})) {
      const at = path.join(PACKAGE_ROOT, 'node_modules', name);
      if (seen.has(name) || !fs.existsSync(path.join(at, 'package.json'))) continue;
      seen.add(name);
      visit(at);
    }
  };
  visit(PACKAGE_ROOT);
  return [...seen];
}

/** The first directory on the way to `dir` that a user other than its owner cannot search, if any. */
function firstUntraversable(dir: string): string | undefined {
  const parts = path.resolve(dir).split(path.sep).filter(Boolean);
  for (let i = 0; i <= parts.length; i++) {
    const p = path.sep + parts.slice(0, i).join(path.sep);
    if ((fs.statSync(p).mode & 0o001) === 0) return p;
  }
  return undefined;
}

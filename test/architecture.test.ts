// The layering of lib/ (ARCHITECTURE.md), checked on the sources: every relative import of every
// lib/**/*.ts file is read with TypeScript's own pre-processor (import, export-from, import types,
// require), so a new arrow, a cycle or an oversized file fails here instead of in review.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ts from 'typescript';

const root = path.join(__dirname, '..', '..');
const LIB = path.join(root, 'lib');

/**
 * Which layers each layer may import. A layer is a folder of lib/, or a single file at lib/'s top
 * (named without .ts). Read top-down: nothing imports upward, and the table itself has no cycle.
 * Every arrow listed is used: an arrow the code no longer needs is removed here, so the table stays
 * the exact picture of the code.
 */
const ALLOWED: Record<string, readonly string[]> = {
  // The public entry re-exports the API of every layer but the command line's.
  index: ['plugins', 'bus', 'reputation', 'metrics', 'dashboard', 'pool', 'process', 'hooks', 'trust', 'audit', 'channel', 'sandbox', 'policy', 'runner', 'scan', 'errors'],
  cli: ['install', 'plugins', 'reputation', 'trust', 'audit', 'sandbox', 'limits', 'scan', 'terminal-text', 'errors', 'metrics'],
  plugins: ['bus', 'reputation', 'hooks', 'trust', 'audit', 'pool', 'process', 'channel', 'sandbox', 'net', 'limits', 'scan', 'runner-protocol', 'errors', 'defaults', 'metrics', 'dashboard'],
  pool: ['process', 'trust', 'sandbox', 'limits', 'errors', 'defaults'],
  // A plugin process: a runner in a sandbox, its tree read and digest-checked (trust/tree).
  process: ['trust', 'limits', 'channel', 'sandbox', 'net', 'policy', 'runner-protocol', 'pid-alive', 'errors', 'defaults', 'token-bucket'],
  // Beside plugins/, used by it, never using it: metrics read a view of the host the plugin host builds.
  metrics: ['audit', 'hooks', 'limits', 'errors', 'token-bucket'],
  dashboard: ['metrics', 'audit', 'errors'],
  // The capability scan: acorn over a plugin's files in a worker thread; knows nothing of plugins.
  scan: ['terminal-text', 'defaults'],
  // npm ci in a sandbox, then the digest.
  install: ['sandbox', 'trust', 'net', 'errors'],
  // The plugins' bus: grants, routing, shared data; plugins/ wires it to each plugin's channel.
  bus: ['trust', 'errors', 'defaults', 'token-bucket', 'abort-source'],
  // Pure libraries.
  // A score from the audit log's counts and the trust list (types only of both).
  reputation: ['audit', 'trust'],
  hooks: ['errors', 'defaults', 'abort-source'],
  trust: ['errors'],
  audit: ['native', 'errors'],
  channel: ['native-file', 'errors', 'defaults', 'token-bucket', 'abort-source'],
  // Runs any command; knows nothing of runners, plugins or trust.
  sandbox: ['native', 'net', 'limits', 'policy', 'errors', 'defaults'],
  // The addon's typed surface (its network hooks take net's types).
  native: ['net', 'native-file'],
  net: ['policy', 'errors', 'token-bucket'],
  limits: ['native-file', 'pid-alive', 'errors'],
  policy: ['errors'],
  // Runs inside the sandbox: the channel and the wire protocol, nothing of the host side.
  runner: ['channel', 'runner-protocol'],
  errors: [],
  // Default durations and limits: constants only.
  defaults: [],
  'native-file': [],
  'pid-alive': [],
  'runner-protocol': [],
  // Escapes what a terminal would obey in text from outside.
  'terminal-text': [],
  // A rate with a burst: every rate the host holds a plugin to.
  'token-bucket': [],
  // Abort once, heard cheaply (onAbort) or as an AbortSignal: the handler contexts of calls and hooks.
  'abort-source': [],
};

/** What the code inside a sandbox may load, all the way down from the runner's entry. */
const RUNNER_ENTRY = 'runner/main.ts';
const RUNNER_MAY_REACH = new Set(['runner', 'channel', 'runner-protocol', 'errors', 'native-file', 'defaults', 'token-bucket', 'abort-source']);

const MAX_LINES = 600;

function walk(dir: string, keep: (f: string) => boolean, out: string[] = []): string[] {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, keep, out);
    else if (keep(p)) out.push(p);
  }
  return out;
}

/** 'lib/sandbox/plan.ts' → 'sandbox'; 'lib/errors.ts' → 'errors'. */
function layerOf(rel: string): string {
  const parts = rel.split('/');
  return parts.length === 1 ? parts[0]!.replace(/\.ts$/, '') : parts[0]!;
}

/** lib-relative file → lib-relative files it imports (relative specifiers only). */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of walk(LIB, (f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))) {
    const rel = path.relative(LIB, file).split(path.sep).join('/');
    const { importedFiles } = ts.preProcessFile(fs.readFileSync(file, 'utf8'), true, true);
    const targets: string[] = [];
    for (const { fileName } of importedFiles) {
      if (!fileName.startsWith('.')) continue;
      const base = path.join(path.dirname(file), fileName);
      const target = [`${base}.ts`, path.join(base, 'index.ts')].find((c) => fs.existsSync(c));
      if (target === undefined) throw new Error(`${rel} imports '${fileName}', which is no .ts file`);
      targets.push(path.relative(LIB, target).split(path.sep).join('/'));
    }
    graph.set(rel, [...new Set(targets)]);
  }
  return graph;
}

/** Cycles of a graph, one per strongly connected component with more than one node (or a self-loop). */
function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) {
        low.set(v, Math.min(low.get(v)!, idx.get(w)!));
      }
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(scc.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!idx.has(v)) visit(v);
  return out;
}

const files = importGraph();
const folders = new Map<string, string[]>();
const arrows = new Map<string, string[]>(); // 'from -> to' → the imports that make it
for (const [file, targets] of files) {
  const from = layerOf(file);
  for (const target of targets) {
    const to = layerOf(target);
    if (to === from) continue;
    folders.set(from, [...new Set([...(folders.get(from) ?? []), to])]);
    const key = `${from} -> ${to}`;
    arrows.set(key, [...(arrows.get(key) ?? []), `lib/${file} imports lib/${target}`]);
  }
  if (!folders.has(from)) folders.set(from, []);
}

t.test('the sources are found and read', async (t) => {
  t.ok(files.size > 80, `${files.size} files under lib/`);
  t.ok(arrows.size > 30, `${arrows.size} arrows between layers`);
});

t.test('no file imports itself through others (no file cycle)', async (t) => {
  t.same(cycles(files), [], 'every file cycle, as its member files');
});

t.test('no folder imports itself through others (no folder cycle)', async (t) => {
  t.same(cycles(folders), [], 'every folder cycle, as its member layers');
});

t.test('every layer of lib/ has a row in the table, and the table has no cycle', async (t) => {
  for (const layer of folders.keys()) t.ok(ALLOWED[layer] !== undefined, `lib/${layer}: add its row to ALLOWED (and to ARCHITECTURE.md)`);
  const table = new Map(Object.entries(ALLOWED).map(([k, v]) => [k, [...v]]));
  t.same(cycles(table), [], 'the allowed arrows, as a graph, have no cycle');
  for (const [from, tos] of table) for (const to of tos) t.ok(ALLOWED[to] !== undefined, `${from} -> ${to}: ${to} has a row`);
});

t.test('every import follows an allowed arrow', async (t) => {
  const broken = [...arrows].filter(([key]) => {
    const [from, to] = key.split(' -> ') as [string, string];
    return !(ALLOWED[from] ?? []).includes(to);
  });
  t.same(broken.map(([key, why]) => `${key}: ${why.join('; ')}`), [], 'imports against the layering');
});

t.test('every allowed arrow is used (the table is the code, not a wish)', async (t) => {
  const unused = Object.entries(ALLOWED).flatMap(([from, tos]) => tos.filter((to) => !arrows.has(`${from} -> ${to}`)).map((to) => `${from} -> ${to}`));
  t.same(unused, [], 'arrows no import needs: remove them from ALLOWED');
});

t.test('the runner loads nothing of the host side', async (t) => {
  const reached = new Set<string>();
  const visit = (f: string) => {
    if (reached.has(f)) return;
    reached.add(f);
    for (const g of files.get(f) ?? []) visit(g);
  };
  t.ok(files.has(RUNNER_ENTRY), `lib/${RUNNER_ENTRY} exists`);
  visit(RUNNER_ENTRY);
  t.ok(reached.size > 3, `it reaches ${reached.size} files`);
  t.same([...reached].filter((f) => !RUNNER_MAY_REACH.has(layerOf(f))).map((f) => `lib/${f}`), [], 'host-side files the runner would load');
  const inRunner = [...files.keys()].filter((f) => layerOf(f) === 'runner');
  t.same(inRunner.filter((f) => !reached.has(f)).map((f) => `lib/${f}`), [], 'files in lib/runner/ that the runner never loads (host side: they belong elsewhere)');
});

t.test('the host loads nothing of the runner: what it takes from lib/runner/ is types only', async (t) => {
  let seen = 0;
  for (const [file, targets] of files) {
    if (layerOf(file) === 'runner' || !targets.some((f) => layerOf(f) === 'runner')) continue;
    const src = ts.createSourceFile(file, fs.readFileSync(path.join(LIB, file), 'utf8'), ts.ScriptTarget.ES2022);
    for (const st of src.statements) {
      if (!(ts.isImportDeclaration(st) || ts.isExportDeclaration(st)) || st.moduleSpecifier === undefined) continue;
      const spec = (st.moduleSpecifier as ts.StringLiteral).text;
      if (!/(^|\/)runner\//.test(spec)) continue;
      seen++;
      const typeOnly = ts.isImportDeclaration(st) ? st.importClause?.isTypeOnly === true : st.isTypeOnly;
      t.ok(typeOnly, `lib/${file}: '${spec}' is imported as types only (erased at compile)`);
    }
  }
  t.ok(seen > 0, `${seen} type-only uses found (the public HostApi type)`);
});

const sources = [
  ...walk(LIB, (f) => f.endsWith('.ts')),
  ...walk(path.join(root, 'native'), (f) => /\.(cc|h|c)$/.test(f)),
].map((f) => path.relative(root, f).split(path.sep).join('/')).sort();
const lines = (f: string) => {
  const text = fs.readFileSync(path.join(root, f), 'utf8');
  return text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
};
const over = sources.filter((f) => lines(f) > MAX_LINES);

t.test(`no file in lib/ or native/ over ${MAX_LINES} lines`, async (t) => {
  t.ok(sources.length > 100, `${sources.length} files measured`);
  t.same(over.map((f) => `${f}: ${lines(f)} lines`), [], `files over ${MAX_LINES} lines: split them by concern`);
});

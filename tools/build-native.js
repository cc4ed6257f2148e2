#!/usr/bin/env node
'use strict';
// Builds the native addon from source (native/binding.gyp, with node-gyp) and installs it as
// prebuilds/<platform>-<arch>/warden.node, stripped: the file the package ships and loads
// (lib/native-file.ts). `npm run build:native`; `--out FILE` writes FILE instead (CI compares it
// with the committed binary). Needs python3, make and a C++17 compiler.
//
// native/prebuild-sources.sha256 records the digest of the sources each committed binary was built
// from. `--if-stale` (npm test's pretest) builds only when the binary for this platform is missing
// or the sources changed since: a fresh clone tests the committed binary without compiling, and a
// change to native/ is never tested against an old binary. `--check` only says whether it is stale.
//
// The build is reproducible: the same sources and toolchain give the same bytes (no build paths,
// no build id, no timestamps; see binding.gyp), so CI rebuilds the committed linux-x64 binary and
// compares (.ci/prebuild.sh). On linux-x64 with glibc, the result is checked to load on glibc 2.28
// with no libstdc++ of the host (tools/check-glibc.sh).
const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.join(__dirname, '..');
const isLinux = process.platform === 'linux';
const glibc = isLinux && Boolean(process.report.getReport().header.glibcVersionRuntime);
const tag = `${process.platform}-${process.arch}${isLinux && !glibc ? '-musl' : ''}`;
const outArg = process.argv.indexOf('--out');
const out = outArg > 0 && process.argv[outArg + 1] ? path.resolve(process.argv[outArg + 1]) : path.join(root, 'prebuilds', tag, 'warden.node');

const stampFile = path.join(root, 'native', 'prebuild-sources.sha256');

/** The digest of everything the binary is built from: native/ (sources, binding.gyp, exports.map) and this script. */
function sourcesDigest() {
  const hash = crypto.createHash('sha256');
  const files = fs.readdirSync(path.join(root, 'native'))
    .filter((f) => /\.(cc|h|gyp|map)$/.test(f)).sort()
    .map((f) => path.join('native', f)).concat(path.join('tools', 'build-native.js'));
  for (const f of files) hash.update(`${f}\0`).update(fs.readFileSync(path.join(root, f))).update('\0');
  return hash.digest('hex');
}

function readStamps() {
  const stamps = new Map();
  if (!fs.existsSync(stampFile)) return stamps;
  for (const line of fs.readFileSync(stampFile, 'utf8').split('\n')) {
    const m = /^([0-9a-f]{64})  (\S+)$/.exec(line);
    if (m) stamps.set(m[2], m[1]);
  }
  return stamps;
}

const digest = sourcesDigest();
const fresh = fs.existsSync(out) && readStamps().get(tag) === digest;
if (process.argv.includes('--check')) {
  // CI: the committed stamp must name the current sources (else npm test would rebuild).
  console.log(`build-native: native/prebuild-sources.sha256 ${fresh ? 'matches' : 'does NOT match'} the sources of prebuilds/${tag}`);
  process.exit(fresh ? 0 : 1);
}
if (process.argv.includes('--if-stale')) {
  if (fresh) {
    console.log(`build-native: prebuilds/${tag}/warden.node is built from the current native/ sources`);
    process.exit(0);
  }
  console.log(`build-native: prebuilds/${tag}/warden.node is ${fs.existsSync(out) ? 'older than native/' : 'missing'}: building it`);
}

const env = { ...process.env, LC_ALL: 'C', SOURCE_DATE_EPOCH: '0' };
// Node's own headers when the running node ships them (no download); else node-gyp fetches them.
if (!env.npm_config_nodedir) {
  const prefix = path.dirname(path.dirname(process.execPath));
  if (fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) env.npm_config_nodedir = prefix;
}
const gyp = require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] });
const jobs = String(Math.max(1, Math.min(os.availableParallelism?.() ?? os.cpus().length, 4)));
execFileSync(process.execPath, [gyp, 'rebuild', '-j', jobs, '--directory', path.join(root, 'native')], {
  env, stdio: ['ignore', 'inherit', 'inherit'],
});

fs.mkdirSync(path.dirname(out), { recursive: true });
const built = path.join(root, 'native', 'build', 'Release', 'warden.node');
// Without the symbol table and debug info: smaller, and nothing of the build machine in it.
execFileSync('strip', ['--strip-all', '-R', '.comment', '-o', `${out}.tmp`, built], { stdio: 'inherit' });
fs.renameSync(`${out}.tmp`, out);
if (tag === 'linux-x64') execFileSync(path.join(root, 'tools', 'check-glibc.sh'), [out], { stdio: 'inherit' });
if (outArg < 0) {
  const stamps = readStamps();
  stamps.set(tag, digest);
  fs.writeFileSync(stampFile, [...stamps].sort().map(([t, d]) => `${d}  ${t}\n`).join(''));
}
const bytes = fs.readFileSync(out);
const sha = crypto.createHash('sha256').update(bytes).digest('hex');
console.log(`build-native: ${out} (${tag}): ${bytes.length} bytes, sha256 ${sha}`);

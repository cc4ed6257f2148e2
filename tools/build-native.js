#!/usr/bin/env node
'use strict';
// Builds the native addon from source (native/binding.gyp, with node-gyp) and installs it as
// prebuilds/<platform>-<arch>/warden.node, stripped: the file the package ships and loads
// (lib/native-file.ts). `npm run build:native`; `--out FILE` writes FILE instead (CI compares it
// with the committed binary). Needs python3, make and a C++17 compiler.
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
const bytes = fs.readFileSync(out);
const sha = crypto.createHash('sha256').update(bytes).digest('hex');
console.log(`build-native: ${out} (${tag}): ${bytes.length} bytes, sha256 ${sha}`);

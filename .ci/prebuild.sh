#!/usr/bin/env bash
# The shipped binary: rebuilds prebuilds/linux-x64/warden.node from the sources with the committed
# build command and fails unless the bytes are identical (the build is reproducible: no paths, no
# build id, no timestamps), then checks the committed binary loads on glibc 2.28 with no libstdc++.
# After changing native/: npm run build:native, and commit prebuilds/linux-x64/warden.node.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
committed=prebuilds/linux-x64/warden.node
tools/check-glibc.sh "$committed"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
node tools/build-native.js --out "$work/warden.node" > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
tail -1 "$work/build.log"
if ! cmp -s "$committed" "$work/warden.node"; then
  echo "prebuild: $committed ($(sha256sum < "$committed" | cut -c1-16)) differs from a rebuild of the sources" \
    "($(sha256sum < "$work/warden.node" | cut -c1-16)): run npm run build:native and commit it" >&2
  exit 1
fi
node tools/build-native.js --check || { echo "prebuild: run npm run build:native and commit native/prebuild-sources.sha256" >&2; exit 1; }
echo "prebuild: $committed is reproduced byte for byte from the sources ($((SECONDS - start)) s)"

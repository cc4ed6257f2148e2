#!/usr/bin/env bash
# Build the VM's root file system as a compressed initramfs: busybox, node and the shared libraries
# it links, and the built package (package.json, dist/, bin/, prebuilds/linux-x64/warden.node, the
# node_modules the tests load at run time), with test/vm/init as /init and the test list.
# Usage: build-initramfs.sh [OUTPUT]   (default build/vm/initramfs.cpio.zst; prints the path)
# Needs: npm ci done (dist/ compiled, the addon prebuilt or built), busybox-static, cpio, zstd.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$repo/build/vm/initramfs.cpio.zst}"

die() { echo "build-initramfs: $*" >&2; exit 1; }
busybox="$(command -v busybox || true)"
[ -n "$busybox" ] || die "busybox not found (apt-get install busybox-static)"
# the initramfs carries no libraries for busybox: it must be the static build
if ldd "$busybox" >/dev/null 2>&1; then die "$busybox is not static (apt-get install busybox-static)"; fi
command -v cpio >/dev/null || die "cpio not found (apt-get install cpio)"
command -v zstd >/dev/null || die "zstd not found (apt-get install zstd)"
node="$(readlink -f "$(command -v node)")"
addon="$repo/prebuilds/linux-x64/warden.node"
[ -f "$addon" ] || die "$addon missing: run npm run build:native"
[ -d "$repo/dist/test" ] || die "dist/test missing: run npx tsc -p ."

mkdir -p "$(dirname "$out")"
root="$(mktemp -d "$(dirname "$out")/root.XXXXXX")"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root,warden}
chmod 1777 "$root/tmp"

# busybox and its applets (sh, mount, poweroff, unshare, env, ...)
cp "$busybox" "$root/bin/busybox"
"$busybox" --list-full | while read -r applet; do
  [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done

# node and the libraries it and the addon link, at the paths ldd reports
cp "$node" "$root/usr/bin/node"
# its symbol table is 10+ MB the VM never reads (strip comes with binutils; optional)
if command -v strip >/dev/null; then strip --strip-unneeded "$root/usr/bin/node"; fi
copy_libs() {
  ldd "$1" | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}' | while read -r lib; do
    [ -e "$root$lib" ] && continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}
copy_libs "$node"
copy_libs "$addon"
# glibc wants these for getpwuid (os.userInfo) and name lookups
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >> "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
echo 'passwd: files' > "$root/etc/nsswitch.conf"; echo 'group: files' >> "$root/etc/nsswitch.conf"
echo '127.0.0.1 localhost' > "$root/etc/hosts"

# the package
w="$root/warden"
cp "$repo/package.json" "$w/"
cp -r "$repo/dist" "$repo/bin" "$w/"
mkdir -p "$w/prebuilds/linux-x64" "$w/test/vm"
cp "$addon" "$w/prebuilds/linux-x64/"
cp "$here/runner.js" "$w/test/vm/"
node "$here/trace-modules.js" "$repo" > "$root/modules.txt"
while read -r pkg; do
  [ -n "$pkg" ] || continue
  mkdir -p "$w/$(dirname "$pkg")"
  cp -r "$repo/$pkg" "$w/$(dirname "$pkg")/"
done < "$root/modules.txt"
rm "$root/modules.txt"
# type declarations, source maps and docs are of no use at run time
find "$w/node_modules" -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' \
  -o -name '*.md' -o -name '*.markdown' -o -name 'LICENSE*' \) -delete 2>/dev/null || true

# the test list: one path or glob per line, relative to the repository; test/x.test.ts and
# test/x.test.js both mean dist/test/x.test.js
: > "$w/test/vm/tests.resolved"
shopt -s nullglob
while read -r line; do
  line="${line%%#*}"; line="$(echo "$line" | xargs)"
  [ -n "$line" ] || continue
  case "$line" in dist/*) ;; *) line="dist/${line%.ts}"; line="${line%.js}.js" ;; esac
  matches=( $(cd "$repo" && eval "echo $line") )
  if [ "${#matches[@]}" -eq 0 ] || { [ "${#matches[@]}" -eq 1 ] && [ ! -f "$repo/${matches[0]}" ]; }; then
    case "$line" in *'*'*|*'?'*|*'['*) continue ;; esac # a glob that matches nothing yet is fine
    die "test/vm/tests.txt names $line, which does not exist (did tsc run?)"
  fi
  for m in "${matches[@]}"; do grep -qxF "$m" "$w/test/vm/tests.resolved" || echo "$m" >> "$w/test/vm/tests.resolved"; done
done < "$here/tests.txt"
[ -s "$w/test/vm/tests.resolved" ] || die "test/vm/tests.txt lists no existing test file"

cp "$here/init" "$root/init"
chmod 755 "$root/init"

(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) |
  zstd -q -T0 -"${WARDEN_VM_ZSTD_LEVEL:-3}" -f -o "$out"
echo "build-initramfs: $(du -sh "$root" | cut -f1) unpacked, $(du -h "$out" | cut -f1) compressed, $(wc -l < "$w/test/vm/tests.resolved") test files" >&2
echo "$out"

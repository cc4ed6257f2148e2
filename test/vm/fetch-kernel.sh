#!/usr/bin/env bash
# Fetch the Debian cloud kernel (pure cgroup v2 capable, virtio + serial built in) without
# installing it: `apt-get download` the .deb and unpack it into a cache directory.
# Prints the path of the vmlinuz on stdout. Cached: a second run costs nothing.
set -euo pipefail

cache="${WARDEN_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/warden-vm}"
meta="${WARDEN_VM_KERNEL_META:-linux-image-cloud-amd64}"
mkdir -p "$cache"

# The meta package depends on the versioned image package, e.g. linux-image-6.1.0-26-cloud-amd64.
pkg="$(apt-cache depends "$meta" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1)"
if [ -z "$pkg" ]; then
  # No apt metadata (e.g. before `apt-get update`): fall back to the newest kernel already cached.
  found="$(ls -1d "$cache"/linux-image-*/ 2>/dev/null | sort -V | tail -n1 || true)"
  if [ -n "$found" ]; then
    vmlinuz="$(ls -1 "$found"boot/vmlinuz-* | head -n1)"
    echo "fetch-kernel: apt does not know $meta; using cached $vmlinuz" >&2
    echo "$vmlinuz"; exit 0
  fi
  echo "fetch-kernel: cannot resolve the image package of $meta (run apt-get update?)" >&2
  exit 1
fi

dest="$cache/$pkg"
if [ ! -f "$dest/.done" ]; then
  echo "fetch-kernel: downloading $pkg into $cache" >&2
  tmp="$(mktemp -d "$cache/dl.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  # As root, apt drops to the _apt user, which cannot write into a private home directory; the
  # download is a plain file fetch verified by apt, so let it run as root.
  sandbox=()
  [ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
  (cd "$tmp" && apt-get download -qq "${sandbox[@]}" "$pkg" >&2) || { echo "fetch-kernel: apt-get download $pkg failed" >&2; exit 1; }
  rm -rf "$dest"
  mkdir -p "$dest"
  dpkg-deb -x "$tmp"/"$pkg"_*.deb "$dest"
  # The initramfs is the root file system and everything the tests need is built in: keep /boot only.
  rm -rf "$dest/lib" "$dest/usr"
  touch "$dest/.done"
fi
vmlinuz="$(ls -1 "$dest"/boot/vmlinuz-* | head -n1)"
[ -r "$vmlinuz" ] || { echo "fetch-kernel: no vmlinuz in $dest/boot" >&2; exit 1; }
echo "$vmlinuz"

#!/usr/bin/env bash
# Checks that a linux-x64 addon binary loads wherever official Node builds run (glibc 2.28 and later:
# RHEL 8, Ubuntu 20.04, Debian 11) and needs no libstdc++ or libgcc_s of the host: it reads the
# symbol versions the binary requires (objdump -T) and fails on any GLIBC_ version above 2.28, on any
# GLIBCXX_, CXXABI_ or GCC_ requirement, on a shared library other than libc's own, and on a binary
# that still carries its symbol table or debug info (the shipped one is stripped).
# Usage: tools/check-glibc.sh [FILE]   (default prebuilds/linux-x64/warden.node)
set -euo pipefail
cd "$(dirname "$0")/.."
file="${1:-prebuilds/linux-x64/warden.node}"
max=2.28
[ -f "$file" ] || { echo "check-glibc: $file not found (npm run build:native makes it)" >&2; exit 1; }
command -v objdump >/dev/null && command -v readelf >/dev/null || { echo "check-glibc: objdump/readelf not found (apt-get install binutils)" >&2; exit 1; }

fail=0
versions="$(objdump -T "$file" | grep -o '(\?\(GLIBC\|GLIBCXX\|CXXABI\|GCC\)_[0-9.]*)\?' | tr -d '()' | sort -u -V)"
newest="$(printf '%s\n' "$versions" | sed -n 's/^GLIBC_//p' | sort -V | tail -1)"
for v in $versions; do
  case "$v" in
    GLIBC_*)
      n="${v#GLIBC_}"
      if [ "$(printf '%s\n%s\n' "$n" "$max" | sort -V | tail -1)" != "$max" ]; then
        echo "check-glibc: $file needs $v (newer than GLIBC_$max):" >&2
        objdump -T "$file" | grep -F "($v)" | awk '{print "  " $NF}' | head -5 >&2
        echo "  pin it in native/glibc_compat.cc (and binding.gyp's --wrap list) or avoid the call" >&2
        fail=1
      fi ;;
    *)
      echo "check-glibc: $file needs $v (the host's libstdc++/libgcc_s; link them statically):" >&2
      objdump -T "$file" | grep -F "($v)" | awk '{print "  " $NF}' | head -5 >&2
      fail=1 ;;
  esac
done
needed="$(objdump -p "$file" | awk '/NEEDED/{print $2}' | sort | tr '\n' ' ')"
for lib in $needed; do
  case "$lib" in
    libc.so.6|libm.so.6|libdl.so.2|libpthread.so.0|ld-linux-x86-64.so.2) ;;
    *) echo "check-glibc: $file links $lib, which a host may not have" >&2; fail=1 ;;
  esac
done
if readelf -S -W "$file" | grep -qE ' \.(symtab|debug_[a-z]+) '; then
  echo "check-glibc: $file is not stripped (symbol table or debug info present)" >&2
  fail=1
fi
[ "$fail" = 0 ] || exit 1
echo "check-glibc: $file: newest GLIBC_$newest (limit $max), no GLIBCXX/CXXABI/GCC, needs: $needed, $(stat -c %s "$file") bytes"

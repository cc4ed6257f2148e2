#!/usr/bin/env bash
# npm run test:vm [-- test/x.test.ts ...]
# Boot the Debian cloud kernel under qemu (TCG: no KVM needed) with an initramfs holding node, the
# built package and the tests of test/vm/tests.txt; the VM mounts cgroup2 alone and runs them twice
# (root cgroup, then system.slice/warden-test). Streams the console, parses the summary the VM
# prints, and exits non-zero when a test fails, when nothing ran or when the VM does not finish.
#
# Environment: WARDEN_VM_TIMEOUT (overall seconds, default 900), WARDEN_VM_FILE_TIMEOUT (per test
# file and phase inside the VM, default 300), WARDEN_VM_PHASES (default root,systemd),
# WARDEN_VM_CACHE (kernel cache dir), WARDEN_VM_MEMORY (MB, default 2048), WARDEN_VM_CPUS (default 2),
# WARDEN_VM_LOG (console log file, default build/vm/console.log).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

limit="${WARDEN_VM_TIMEOUT:-900}"
log="${WARDEN_VM_LOG:-$repo/build/vm/console.log}"
start=$SECONDS

command -v qemu-system-x86_64 >/dev/null || { echo "test:vm: qemu-system-x86_64 not found (apt-get install qemu-system-x86)" >&2; exit 2; }
kernel="$("$here/fetch-kernel.sh")"
initrd="$("$here/build-initramfs.sh")"
echo "test:vm: kernel and initramfs ready in $((SECONDS - start))s" >&2

# Only the given tests (by name), comma-separated on the kernel command line.
only=""
for a in "$@"; do a="${a#./}"; a="${a#test/}"; a="${a#dist/test/}"; only+="${only:+,}${a%.ts}"; done
append="console=ttyS0 panic=-1 loglevel=1 edd=off cgroup_no_v1=all"
append+=" warden.phases=${WARDEN_VM_PHASES:-root,systemd} warden.file_timeout=${WARDEN_VM_FILE_TIMEOUT:-300}"
[ -n "$only" ] && append+=" warden.tests=$only"

mkdir -p "$(dirname "$log")"
pidfile="$(mktemp)"
cleanup() {
  local pid
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "test:vm: booting $(basename "$kernel") (tcg, ${WARDEN_VM_CPUS:-2} cpus, ${WARDEN_VM_MEMORY:-2048} MB), limit ${limit}s" >&2
# stdin is /dev/null: qemu leaves the terminal alone and Ctrl-C reaches it as a signal.
set +e
timeout -k 10 "$limit" qemu-system-x86_64 \
  -accel tcg -cpu max -m "${WARDEN_VM_MEMORY:-2048}" -smp "${WARDEN_VM_CPUS:-2}" \
  -nographic -no-reboot -nodefaults -serial stdio -monitor none \
  -kernel "$kernel" -initrd "$initrd" -append "$append" \
  -pidfile "$pidfile" </dev/null 2>&1 | sed -u 's/\r$//' | tee "$log"
status=("${PIPESTATUS[@]}")
set -e
elapsed=$((SECONDS - start))

summary="$(grep -a '^# warden-vm summary:' "$log" | tail -n1 || true)"
if [ "${status[0]}" = 124 ] || [ "${status[0]}" = 137 ]; then
  echo "test:vm: FAIL: the VM did not finish within ${limit}s (WARDEN_VM_TIMEOUT); console log: $log" >&2
  exit 1
fi
if [ -z "$summary" ]; then
  echo "test:vm: FAIL: the VM printed no summary (qemu exit ${status[0]}); console log: $log" >&2
  exit 1
fi
failed=$(grep -a '^not ok ' "$log" | sed 's/^/  /' || true)
echo "test:vm: ${summary#\# warden-vm summary: } (${elapsed}s)" >&2
[ -n "$failed" ] && printf 'test:vm: failed:\n%s\n' "$failed" >&2
case "$summary" in
  *" result=ok") exit 0 ;;
  *" pass=0 "*) echo "test:vm: FAIL: no test ran" >&2; exit 1 ;;
  *) exit 1 ;;
esac

#!/usr/bin/env bash
# Builds and runs the channel decoder fuzzer. Extra arguments go to libFuzzer
# (e.g. -max_total_time=60). Exits non-zero when the fuzzer finds a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/fuzz
mkdir -p "$out/corpus"
clang++ -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  fuzz/channel_decoder_fuzz.cc native/channel_frame.cc -o "$out/channel_decoder_fuzz"
exec "$out/channel_decoder_fuzz" -artifact_prefix="$out/" "$out/corpus" "$@"

#!/usr/bin/env bash
# Runs the GGUF fuzzer the way ctest does: replays the crash regressions, then fuzzes a fresh temp copy of the
# committed seed corpus (the committed one is never modified) for a bounded time.
# usage: run-gguf-fuzz.sh FUZZER SOURCE_DIR ARTIFACT_DIR SECONDS
# A finding is left in ARTIFACT_DIR; copy it into tests/fuzz/gguf-regressions/ once fixed.
set -euo pipefail
fuzzer=$1 src=$2 artifacts=$3 seconds=$4
corpus=$src/tests/fuzz/gguf-corpus
regressions=$src/tests/fuzz/gguf-regressions
work=$(mktemp -d "${TMPDIR:-/tmp}/gguf-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$artifacts" "$work/corpus"
cp "$corpus"/* "$work/corpus/"
if compgen -G "$regressions/*" > /dev/null; then
  echo "gguf-fuzz: replaying $(ls "$regressions" | wc -l) regression inputs"
  "$fuzzer" -rss_limit_mb=2048 -malloc_limit_mb=64 "$regressions"/*
fi
# Inputs are at most 4 KiB, so any single allocation over 64 MiB means a count was trusted before it was bounded
# by the bytes left: -malloc_limit_mb makes that a finding (the default, rss_limit_mb, would let 2 GiB pass).
"$fuzzer" "$work/corpus" -dict="$src/tests/fuzz/gguf.dict" -max_total_time="$seconds" -rss_limit_mb=2048 \
  -malloc_limit_mb=64 -max_len=4096 -timeout=10 -print_final_stats=1 -artifact_prefix="$artifacts/"

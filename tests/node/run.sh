#!/usr/bin/env bash
# ctest's entry for the openai npm client test: run.sh SERVER_BIN MODEL. Exits 77 (ctest: skipped) when node is not
# installed; fails when node is there but the packages are not (scripts/setup installs them with npm ci).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v node >/dev/null 2>&1; then
  echo "SKIPPED: node is not installed, so the openai npm client test cannot run (scripts/setup installs nodejs)"
  exit 77
fi
if [ ! -f "$here/node_modules/openai/package.json" ]; then
  echo "error: $here/node_modules has no openai package: run 'npm ci' in tests/node (scripts/setup does)" >&2
  exit 1
fi
exec node "$here/openai-client.test.mjs" "$@"

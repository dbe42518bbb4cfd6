#!/usr/bin/env bash
# CPU smoke test of the whole recipe (about 5 minutes on 2 cores): a tiny configuration (dim 64, 2 layers, 4 heads
# over 2 KV heads, so GQA is exercised) trains for 1 minute on the first 2M tokens of the corpus, then finish.sh
# packs, quantizes, checks parity against PyTorch (max |diff| < 1e-3 over all logits), samples with ember-cli and
# measures perplexity and sparsity on a slice of the held-out text.
# Needs the corpus (corpus.sh) and PyTorch for /usr/bin/python3 (Debian: apt-get install python3-torch).
# Usage: models/tiny-relu/smoke.sh [OUT_DIR]      (default build-tiny/tiny-relu-smoke)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-${BUILD_DIR:-$root/build-tiny}/tiny-relu-smoke}"
python="${PYTHON:-/usr/bin/python3}"
data="$here/corpus/tokens"
[ -f "$data/meta.json" ] || { echo "smoke: no corpus at $data: run models/tiny-relu/corpus.sh first" >&2; exit 1; }
rm -rf "$out/weights"
mkdir -p "$out/weights"
"$python" "$here/train.py" --data "$data" --out "$out/weights" --minutes "${MINUTES:-1}" --device cpu \
  --threads "${THREADS:-2}" --dim 64 --layers 2 --heads 4 --kv-heads 2 --batch 8 --lr 3e-3 --warmup 20 \
  --train-tokens 2000000 --eval-every 1e9 --eval-windows 32 --log-every 20
QUICK=1 PYTHON="$python" bash "$here/finish.sh" "$out/weights" "$out"

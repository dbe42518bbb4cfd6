#!/usr/bin/env bash
# After training: turns train.py's output into ember models and measures them, all with ember's own code.
#   1. ember-tiny-pack   manifest.json + weights.NNN.bin -> tiny-relu-f32.gguf (tokenizer from the vocab GGUF)
#   2. ember-quantize    tiny-relu-f32.gguf -> tiny-relu-q8_0.gguf
#   3. parity            ember's logits against PyTorch's for both files (parity.py, when python has torch) and
#                        against reference.json from the training machine (ember-tiny-logits --check, always)
#   4. ember-cli         a greedy sample
#   5. ember-perplexity  on corpus/heldout.txt, -c 256 (the training context)
#   6. ember-sparsity    per-layer FFN sparsity and hottest-20% share on corpus/heldout.txt
# and writes OUT_DIR/finish.json with every number the README's results table asks for.
#
# Usage: models/tiny-relu/finish.sh WEIGHTS_DIR [OUT_DIR]     (OUT_DIR defaults to build-tiny/tiny-relu)
# Environment: VOCAB, BUILD_DIR, JOBS as corpus.sh; HELDOUT (text, default corpus/heldout.txt); PYTHON (with
#              torch, default /usr/bin/python3); QUICK=1 (perplexity and sparsity on a slice only, for smoke tests).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
weights="$(cd "${1:?usage: finish.sh WEIGHTS_DIR [OUT_DIR]}" && pwd)"
build="${BUILD_DIR:-$root/build-tiny}"
out="${2:-$build/tiny-relu}"
vocab="${VOCAB:-$root/../shared/testdata/tokenizer/ggml-vocab-llama-spm.gguf}"
[ -f "$vocab" ] || vocab="$root/models/ggml-vocab-llama-spm.gguf"
heldout="${HELDOUT:-$here/corpus/heldout.txt}"
python="${PYTHON:-/usr/bin/python3}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DEMBER_CUDA=OFF -DEMBER_FUZZ=OFF >/dev/null
fi
cmake --build "$build" -j"${JOBS:-1}" --target ember-tiny-pack ember-tiny-logits ember-quantize ember-cli \
  ember-perplexity ember-sparsity >/dev/null
bin="$build/bin"
f32="$out/tiny-relu-f32.gguf"
q8="$out/tiny-relu-q8_0.gguf"

echo "== pack and quantize" >&2
"$bin/ember-tiny-pack" -w "$weights" -v "$vocab" -o "$f32"
"$bin/ember-quantize" "$f32" "$q8" Q8_0 2>"$out/quantize.log" || { cat "$out/quantize.log" >&2; exit 1; }
ls -l "$f32" "$q8" >&2

echo "== parity" >&2
for v in f32 q8_0; do
  m="$f32"; [ "$v" = q8_0 ] && m="$q8"
  "$bin/ember-tiny-logits" -m "$m" --check "$weights/reference.json" --variant "$v" > "$out/reference-$v.txt" || true
  tail -n 1 "$out/reference-$v.txt" >&2
done
if "$python" -c "import torch" 2>/dev/null; then
  "$python" "$here/parity.py" --weights "$weights" --f32 "$f32" --q8 "$q8" --bin "$bin" > "$out/parity.txt" || true
  tail -n 1 "$out/parity.txt" >&2
else
  echo "finish: $python has no torch: PyTorch-side parity skipped (reference.json checked above)" >&2
  echo '{"skipped": "no torch"}' > "$out/parity.txt"
fi

echo "== sample" >&2
"$bin/ember-cli" -m "$q8" -p "In the beginning" -n 32 --temp 0 2>/dev/null > "$out/sample.txt"
cat "$out/sample.txt" >&2; echo >&2

if [ -f "$heldout" ]; then
  ppl_args=(); sp_args=()
  if [ "${QUICK:-0}" = 1 ]; then ppl_args=(--chunks 8); sp_args=(--tokens 4096); fi
  echo "== perplexity on $heldout (-c 256)" >&2
  "$bin/ember-perplexity" -m "$q8" -f "$heldout" -c 256 "${ppl_args[@]}" 2>/dev/null > "$out/perplexity.txt"
  grep "Final estimate" "$out/perplexity.txt" >&2
  echo "== FFN sparsity on $heldout" >&2
  "$bin/ember-sparsity" -m "$q8" -f "$heldout" -c 256 "${sp_args[@]}" 2>/dev/null | tee "$out/sparsity.txt" >&2
  "$bin/ember-sparsity" -m "$q8" -f "$heldout" -c 256 "${sp_args[@]}" --json 2>/dev/null > "$out/sparsity.json"
else
  echo "finish: no held-out text at $heldout: perplexity and sparsity skipped" >&2
fi

"$python" - "$weights" "$out" "$q8" <<'EOF'
import json, os, re, sys
weights, out, q8 = sys.argv[1:4]
m = json.load(open(os.path.join(weights, "manifest.json")))
r = m["results"]
def read(name):
    p = os.path.join(out, name)
    return open(p).read() if os.path.exists(p) else ""
ppl = re.search(r"PPL = ([0-9.]+) \+/- ([0-9.]+)", read("perplexity.txt"))
sp = json.loads(read("sparsity.json")) if read("sparsity.json") else {}
ref = {v: json.loads(read("reference-%s.txt" % v).strip().split("\n")[-1]) for v in ("f32", "q8_0")}
parity = read("parity.txt").strip().split("\n")[-1]
summary = {
    "name": m.get("name"), "params": r["params"], "q8_0_bytes": os.path.getsize(q8),
    "corpus_train_tokens": r["train_tokens"], "corpus_heldout_tokens": r["heldout_tokens"],
    "steps": r["steps"], "exported_step": r.get("exported_step"), "epochs": r["epochs"],
    "train_loss": r["train_loss"], "heldout_loss_train_py": r["heldout_loss"], "heldout_ppl_train_py": r["heldout_ppl"],
    "heldout_ppl_ember_q8_0": float(ppl.group(1)) if ppl else None,
    "heldout_ppl_ember_q8_0_err": float(ppl.group(2)) if ppl else None,
    "ffn_sparsity": sp.get("sparsity"), "ffn_hot20_share": sp.get("hot_share"),
    "ffn_sparsity_all": sp.get("sparsity_all"), "ffn_hot20_share_all": sp.get("hot_share_all"),
    "reference_parity": ref, "torch_parity": json.loads(parity) if parity.startswith("{") else parity,
    "device": r.get("device"), "torch": r.get("torch"), "train_minutes": r.get("train_minutes"),
}
json.dump(summary, open(os.path.join(out, "finish.json"), "w"), indent=1)
print(json.dumps(summary))
ok = all(v.get("pass") for v in ref.values())
tp = summary["torch_parity"]
if isinstance(tp, dict) and "pass" in tp:
    ok = ok and tp["pass"]
sys.exit(0 if ok else 1)
EOF

#!/usr/bin/env bash
# Builds the training corpus of models/tiny-relu from English text that Debian ships (see README.md for the
# sources and their licences): installs the packages, extracts plain text, splits off ~1% of the documents as
# held-out text, and tokenizes both sides with ember's own tokenizer (the 32,000-token Llama SentencePiece vocab).
#
# Writes into $CORPUS_DIR (default models/tiny-relu/corpus/, ignored by git):
#   train.txt, heldout.txt   plain text, documents separated by two empty lines
#   extract.json             per-source document and character counts
#   tokens/train.bin         uint16 little-endian token ids, BOS before every document
#   tokens/heldout.bin       the same for the held-out documents
#   tokens/meta.json         token counts, sources, the reference prompt's token ids (what train.py reads)
# tokens/ is what the GPU run needs: carry models/tiny-relu/corpus/tokens.
#
# Environment: VOCAB (the vocab GGUF), BUILD_DIR (default build-tiny), JOBS (build parallelism, default 1),
#              BUDGET_CHARS (training characters, default 68e6), MAX_TRAIN_TOKENS (default 19.8e6),
#              SKIP_APT=1 (do not install packages), ONLY=kjv,devil (a subset of sources, for tests).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${CORPUS_DIR:-$here/corpus}"
vocab="${VOCAB:-$root/../shared/testdata/tokenizer/ggml-vocab-llama-spm.gguf}"
[ -f "$vocab" ] || vocab="$root/models/ggml-vocab-llama-spm.gguf"
build="${BUILD_DIR:-$root/build-tiny}"
python="${PYTHON:-python3}"
prompt="In the beginning God created the heaven and the earth. And the earth was without form, and void"

packages=(bible-kjv bible-kjv-text dict-gcide dict-devil dict-jargon linux-doc-6.1 python3.11-doc
  postgresql-doc-15 debian-handbook debian-reference-en developers-reference perl-doc git-doc)
if [ "${SKIP_APT:-0}" != 1 ]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "corpus: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DEMBER_CUDA=OFF -DEMBER_FUZZ=OFF >/dev/null
fi
cmake --build "$build" -j"${JOBS:-1}" --target ember-tokenize-corpus ember-tokenize >/dev/null

mkdir -p "$out/tokens"
"$python" "$here/extract.py" --out "$out" --budget-chars "${BUDGET_CHARS:-68000000}" ${ONLY:+--only "$ONLY"}
"$build/bin/ember-tokenize-corpus" -m "$vocab" -i "$out/train.txt" -o "$out/tokens/train.bin" -t "${JOBS:-2}" \
  --max-tokens "${MAX_TRAIN_TOKENS:-19800000}" > "$out/tokenize-train.json"
"$build/bin/ember-tokenize-corpus" -m "$vocab" -i "$out/heldout.txt" -o "$out/tokens/heldout.bin" -t "${JOBS:-2}" \
  > "$out/tokenize-heldout.json"
"$build/bin/ember-tokenize" -m "$vocab" -p "$prompt" --ids > "$out/prompt-ids.txt"

"$python" - "$out" "$prompt" "$vocab" <<'EOF'
import hashlib, json, os, sys
out, prompt, vocab = sys.argv[1:4]
def load(name):
    with open(os.path.join(out, name)) as f:
        return json.load(f)
extract, tr, ho = load("extract.json"), load("tokenize-train.json"), load("tokenize-heldout.json")
with open(os.path.join(out, "prompt-ids.txt")) as f:
    prompt_ids = json.loads(f.read())
def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
meta = {
    "format": "ember-tiny-relu-corpus", "version": 1,
    "vocab": os.path.basename(vocab), "n_vocab": 32000, "dtype": "uint16", "bos": 1,
    "train": {"file": "train.bin", "documents": tr["documents"], "documents_left_out": tr["documents_left_out"],
              "tokens": tr["tokens"], "text_bytes": tr["bytes_text"],
              "sha256": sha256(os.path.join(out, "tokens/train.bin"))},
    "heldout": {"file": "heldout.bin", "documents": ho["documents"], "tokens": ho["tokens"],
                "text_bytes": ho["bytes_text"], "sha256": sha256(os.path.join(out, "tokens/heldout.bin"))},
    "prompt": prompt, "prompt_tokens": prompt_ids,
    "sources": extract["sources"],
}
with open(os.path.join(out, "tokens/meta.json"), "w") as f:
    json.dump(meta, f, indent=1)
mib = sum(os.path.getsize(os.path.join(out, "tokens", f)) for f in ("train.bin", "heldout.bin")) / 2**20
print("corpus: train %d documents, %d tokens (%d left out by the cap); held out %d documents, %d tokens; "
      "%.1f MiB of tokens"
      % (tr["documents"], tr["tokens"], tr["documents_left_out"], ho["documents"], ho["tokens"], mib), file=sys.stderr)
EOF

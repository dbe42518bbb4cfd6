#!/usr/bin/env bash
# The .tar.gz unpacked in a fresh folder runs from there: the packaged models give the Linux build's 16 greedy
# tokens, ember-synth finds its vocabulary relative to itself, and no file names a build path, user or host.
source "$(dirname "$0")/common.sh"
tgz="$(ls "$PKG_DIR"/ember-*-Linux-*.tar.gz)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
tar xzf "$tgz" -C "$tmp"
root="$(echo "$tmp"/ember-*)"
step "layout of $(basename "$tgz")"
for f in bin/ember-cli bin/ember-server bin/ember-tokenize share/ember/stories260K.gguf share/ember/tiny-relu-q8_0.gguf \
  share/ember/tiny-relu-q8_0.profile.gguf share/ember/ggml-vocab-llama-spm.gguf share/ember/web/index.html \
  share/doc/ember/README.md share/doc/ember/user-guide.md share/doc/ember/copyright share/man/man1/ember-cli.1.gz; do
  [ -f "$root/$f" ] || fail "the archive has no $f"
done
page="$(gzip -dc "$root/share/man/man1/ember-cli.1.gz")"
[[ $page == .TH\ EMBER-CLI\ 1* && $page == *--n-predict* ]] || fail "ember-cli.1.gz is not ember-cli's --help as a man page"
no_build_paths "$root"

cd /  # nothing relative to the build or the source tree
step "ember-cli --version"
want="$("$EMBER_BINARY_DIR/bin/ember-cli" --version)"
got="$("$root/bin/ember-cli" --version)"
expect_same "--version" "$want" "$got"
for m in "${MODELS[@]}"; do
  step "16 greedy tokens of share/ember/$m.gguf"
  want="$(reference "$m")"
  got="$(generate "$root/bin/ember-cli" "$root/share/ember" "$m")"
  expect_same "$m" "$want" "$got"
done
step "sparse, through share/ember/tiny-relu-q8_0.profile.gguf"
want="$(reference tiny-relu-q8_0 --profile "$EMBER_SOURCE_DIR/models/tiny-relu-q8_0.profile.gguf")"
got="$(generate "$root/bin/ember-cli" "$root/share/ember" tiny-relu-q8_0 --profile "$root/share/ember/tiny-relu-q8_0.profile.gguf")"
expect_same "tiny-relu-q8_0 --profile" "$want" "$got"

step "ember-synth's default vocabulary"
log="$("$root/bin/ember-synth" -o "$tmp/synth.gguf" --dim 64 --layers 1 --n-ff 256 --heads 4 --ctx 128 --type F32 \
  --calib-tokens 16 -q 2>&1)" || { echo "$log" >&2; fail "ember-synth failed"; }
[[ $log == *"vocabulary $root/share/ember/ggml-vocab-llama-spm.gguf"* ]] ||
  { echo "$log" >&2; fail "ember-synth did not take the vocabulary from $root/share/ember"; }
echo "ok: ember-synth used $root/share/ember/ggml-vocab-llama-spm.gguf"

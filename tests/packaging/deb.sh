#!/usr/bin/env bash
# The .deb installed on this machine with dpkg -i: /usr/bin/ember-cli runs the models in /usr/share/ember with the
# Linux build's 16 greedy tokens, ember-synth finds /usr/share/ember by itself, and dpkg -r leaves none of the
# package's files or folders behind. Needs root; never touches an ember the machine already has.
source "$(dirname "$0")/common.sh"
[ "$(id -u)" = 0 ] || skip "installing a .deb needs root (CI runs as root)"
command -v dpkg >/dev/null || skip "no dpkg on this machine"
debs=("$PKG_DIR"/ember_*.deb)
[ -f "${debs[0]}" ] || skip "no .deb was made (packaging-cpack needs Debian's dpkg-dev)"
deb="${debs[0]}"
if dpkg-query -W -f='${Status}' ember 2>/dev/null | grep -q " installed$"; then
  skip "package ember is installed on this machine already; the test does not replace it"
fi
# Files of the package that exist already would be overwritten by dpkg -i (and removed by dpkg -r): refuse.
while read -r path; do
  path="${path#.}"
  if [ -n "$path" ] && [ ! -d "$path" ] && [ -e "$path" ]; then skip "$path exists already and would be replaced"; fi
done < <(dpkg-deb --fsys-tarfile "$deb" | tar t)

installed=0
cleanup() { [ $installed = 0 ] || dpkg --purge ember >/dev/null 2>&1 || true; }
trap cleanup EXIT
step "dpkg -i $(basename "$deb")"
dpkg -i "$deb" || fail "dpkg -i failed (are the Depends installed? $(dpkg-deb -f "$deb" Depends))"
installed=1
mapfile -t files < <(dpkg -L ember)
echo "the package installed ${#files[@]} paths"

cd /
step "ember-cli --version"
want="$("$EMBER_BINARY_DIR/bin/ember-cli" --version)"
got="$(/usr/bin/ember-cli --version)"
expect_same "--version" "$want" "$got"
for m in "${MODELS[@]}"; do
  step "16 greedy tokens of /usr/share/ember/$m.gguf"
  want="$(reference "$m")"
  got="$(generate /usr/bin/ember-cli /usr/share/ember "$m")"
  expect_same "$m" "$want" "$got"
done
step "ember-synth's default vocabulary"
tmp="$(mktemp -d)"
log="$(/usr/bin/ember-synth -o "$tmp/synth.gguf" --dim 64 --layers 1 --n-ff 256 --heads 4 --ctx 128 --type F32 \
  --calib-tokens 16 -q 2>&1)" || { echo "$log" >&2; fail "ember-synth failed"; }
rm -rf "$tmp"
[[ $log == *"vocabulary /usr/share/ember/ggml-vocab-llama-spm.gguf"* ]] ||
  { echo "$log" >&2; fail "ember-synth did not take the vocabulary from /usr/share/ember"; }
echo "ok: ember-synth used /usr/share/ember/ggml-vocab-llama-spm.gguf"

step "dpkg -r ember"
dpkg -r ember
installed=0
left=()
for f in "${files[@]}"; do
  if [ -d "$f" ]; then
    # Folders the system has anyway (/usr/bin, /usr/share/man/man1, ...) stay; the package's own must go.
    case "$f" in /usr/share/ember* | /usr/share/doc/ember*) left+=("$f") ;; esac
  elif [ -e "$f" ] || [ -L "$f" ]; then
    left+=("$f")
  fi
done
[ ${#left[@]} = 0 ] || fail "dpkg -r left behind: ${left[*]}"
dpkg --purge ember >/dev/null
if dpkg-query -W -f='${Status}' ember 2>/dev/null | grep -q " installed$"; then fail "dpkg still lists ember"; fi
echo "ok: dpkg -r removed all ${#files[@]} paths of the package"

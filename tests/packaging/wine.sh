#!/usr/bin/env bash
# The Windows packages of packaging-mingw-build, run by Debian's wine64 in a throw-away prefix:
#  - the .zip unpacked: ember-cli.exe gives the Linux build's 16 greedy tokens on the packaged models (text
#    compared without the CRs of Windows' text-mode stdout), ember-server.exe answers /completion with the same
#    text, and ember-tokenize.exe refuses a byte-level BPE vocabulary with the PCRE2 message (a build without it);
#  - the NSIS installer run silently (/S): the installed ember-cli.exe gives the same tokens; its uninstaller removes
#    the whole folder.
source "$(dirname "$0")/common.sh"
WINE="$(command -v wine64 || true)"
[ -n "$WINE" ] || WINE=/usr/lib/wine/wine64  # Debian's wine64 keeps its loader there; wine puts it on PATH
[ -x "$WINE" ] || skip "no wine64 (Debian's wine64; scripts/setup installs it)"
WINESERVER="$(dirname "$(readlink -f "$WINE")")/wineserver"
[ -x "$WINESERVER" ] || WINESERVER="$(command -v wineserver)"

tmp="$(mktemp -d)"
server_pid=""
cleanup() {
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  "$WINESERVER" -k 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
export WINEPREFIX="$tmp/prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
unset DISPLAY
step "wine prefix (the first start takes a while)"
"$WINE" cmd /c ver 2>/dev/null | tr -d '\r' | grep -v '^$' || true

zip="$(ls "$MINGW_DIR"/packages/ember-*-Windows-x86_64.zip)"
(cd "$tmp" && cmake -E tar xf "$zip")
root="$(echo "$tmp"/ember-*-Windows-x86_64)"
no_build_paths "$root"
cd "$root"  # Windows paths relative to the unpacked folder
cli() { "$WINE" bin/ember-cli.exe "$@"; }

step "ember-cli.exe --version"
version="$(cli --version | tr -d '\r')"
linux="$("$EMBER_BINARY_DIR/bin/ember-cli" --version)"
[[ $version == "${linux%% (*}"* && $version == *"blas: none"* ]] ||
  fail "ember-cli.exe --version printed '$version' (expected '${linux%% (*} (... blas: none ...)')"
echo "ok: $version"
for m in "${MODELS[@]}"; do
  step "16 greedy tokens of share/ember/$m.gguf under wine"
  want="$(reference "$m")"
  got="$(generate cli share/ember "$m" | tr -d '\r')"
  expect_same "$m" "$want" "$got"
done

step "threads and file errors through the Windows API"
# The default thread count is the physical cores as Windows reports them; Linux counts them from /sys.
threads() { sed -n 's/.*n_threads = \([0-9]*\).*/\1/p'; }
want="$("$EMBER_BINARY_DIR/bin/ember-cli" -m "$EMBER_SOURCE_DIR/models/stories260K.gguf" -p Once -n 1 2>&1 >/dev/null | threads)"
got="$(cli -m share/ember/stories260K.gguf -p Once -n 1 2>&1 >/dev/null | tr -d '\r' | threads)"
[ -n "$want" ] && [ "$got" = "$want" ] || fail "ember-cli.exe runs $got threads by default, the Linux build $want"
echo "ok: $got threads by default, as on Linux"
# ember-tokenize opens the file with GGUFFile::open itself (CreateFileW; the system's message for the error).
if out="$("$WINE" bin/ember-tokenize.exe -m share/ember/no-such.gguf -p Once 2>&1)"; then
  fail "ember-tokenize.exe opened a missing file"
fi
out="$(echo "$out" | tr -d '\r')"
[[ $out == *"share/ember/no-such.gguf: cannot open: "?* ]] || fail "a missing model gave: $out"
echo "ok: $out"

step "ember-tokenize.exe on a byte-level BPE vocabulary (built without PCRE2)"
cp "$EMBER_SHARED_DIR/testdata/tokenizer/ggml-vocab-gpt-2.gguf" "$tmp/"
if out="$("$WINE" bin/ember-tokenize.exe -m ../ggml-vocab-gpt-2.gguf -p "Hello world" 2>&1)"; then
  fail "ember-tokenize.exe accepted a BPE vocabulary without PCRE2: $out"
fi
[[ $out == *"byte-level BPE pre-tokenizers need PCRE2"*"EMBER_PCRE2=OFF"* ]] ||
  fail "ember-tokenize.exe failed without the PCRE2 message: $out"
echo "ok: $(echo "$out" | tr -d '\r')"

step "ember-server.exe: POST /completion"
: >"$tmp/server.log"  # exists before the first read below: the background redirection may come after it
"$WINE" bin/ember-server.exe -m share/ember/stories260K.gguf --port 0 2>"$tmp/server.log" &
server_pid=$!
port=""
for _ in $(seq 600); do  # up to 60 s
  port="$(sed -n 's|.*listening on http://[^:]*:\([0-9]*\).*|\1|p' "$tmp/server.log")"
  [ -z "$port" ] || break
  kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/server.log" >&2; fail "ember-server.exe exited"; }
  sleep 0.1
done
[ -n "$port" ] || { cat "$tmp/server.log" >&2; fail "ember-server.exe did not log its port within 60 s"; }
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  sleep 0.2
done
reply="$(curl -sf "http://127.0.0.1:$port/completion" \
  -d "{\"prompt\":\"$PROMPT\",\"n_predict\":16,\"temperature\":0}")" || fail "POST /completion failed"
want="$(reference stories260K)"
[[ $reply == *"\"content\":\"$want\""* && $reply == *'"predicted_n":16'* ]] ||
  fail "ember-server.exe answered $reply (expected content '$want' and 16 tokens)"
echo "ok: ember-server.exe: \"content\":\"$want\""
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=""

installer="$(ls "$MINGW_DIR"/packages/ember-*-Windows-x86_64.exe)"
step "$(basename "$installer") /S /D=C:\\ember"
"$WINE" "$installer" /S '/D=C:\ember'
"$WINESERVER" -w
dir="$WINEPREFIX/drive_c/ember"
for f in bin/ember-cli.exe bin/ember-server.exe share/ember/stories260K.gguf share/doc/ember/README.md Uninstall.exe; do
  [ -f "$dir/$f" ] || fail "the installer did not install $f into C:\\ember"
done
cd "$dir"
for m in "${MODELS[@]}"; do
  step "16 greedy tokens of the installed share/ember/$m.gguf"
  want="$(reference "$m")"
  got="$(generate cli share/ember "$m" | tr -d '\r')"
  expect_same "installed $m" "$want" "$got"
done
cd "$tmp"
step "C:\\ember\\Uninstall.exe /S"
"$WINE" 'C:\ember\Uninstall.exe' /S
"$WINESERVER" -w
[ ! -e "$dir" ] || fail "the uninstaller left $(find "$dir" | head -20 | tr '\n' ' ')"
echo "ok: the uninstaller removed C:\\ember"

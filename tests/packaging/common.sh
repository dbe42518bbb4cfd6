# Shared by the tests/packaging/*.sh scripts (sourced). Each script gets, from tests/packaging.cmake:
#   EMBER_SOURCE_DIR  the source tree          EMBER_BINARY_DIR  the Linux build tree (its bin/ is the reference)
#   EMBER_SHARED_DIR  shared/ with testdata/   PKG_DIR           where the packages are made and looked for
set -euo pipefail

SKIP_CODE=77  # tests/packaging.cmake sets SKIP_RETURN_CODE to this
skip() { echo "SKIP: $*"; exit "$SKIP_CODE"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

PROMPT="Once upon a time"
# The models every package must run: the default one, and ember's ReLU model (also sparse, through its profile).
MODELS=(stories260K tiny-relu-q8_0)

# generate CLI MODELS_DIR MODEL [extra ember-cli flags]: 16 greedy tokens, the generated text alone on stdout.
# Checks the log for 16 sampled tokens.
generate() {
  local cli=$1 dir=$2 model=$3 log
  shift 3
  log="$(mktemp)"
  if ! "$cli" -m "$dir/$model.gguf" -p "$PROMPT" -n 16 --temp 0 --no-display-prompt "$@" 2>"$log"; then
    cat "$log" >&2
    rm -f "$log"
    fail "$cli on $dir/$model.gguf exited non-zero"
  fi
  grep -Eq '/ +16 runs' "$log" || { cat "$log" >&2; rm -f "$log"; fail "$cli did not sample 16 tokens"; }
  rm -f "$log"
}

# reference MODEL [flags]: the Linux build tree's text for the same generation, from the source tree's models/.
reference() {
  local model=$1
  shift
  generate "$EMBER_BINARY_DIR/bin/ember-cli" "$EMBER_SOURCE_DIR/models" "$model" "$@"
}

# expect_same WHAT EXPECTED FOUND
expect_same() {
  if [ "$2" != "$3" ]; then
    printf 'expected: %q\nfound:    %q\n' "$2" "$3" >&2
    fail "$1: the text differs from the Linux build's"
  fi
  echo "ok: $1: '${3//$'\n'/\\n}'"
}

# no_build_paths ROOT: no file under ROOT names the source or build tree or the home folder, and no program names
# this host or user (names of 4+ characters other than root, as whole words: shorter ones match by chance).
no_build_paths() {
  local root=$1 s hits
  for s in "$EMBER_SOURCE_DIR" "$EMBER_BINARY_DIR" ${HOME:+"$HOME"}; do
    case "$s" in / | /root | "") continue ;; esac
    hits="$(grep -rlaF -- "$s" "$root" || true)"
    [ -z "$hits" ] || fail "the package names '$s' in: $hits"
  done
  for s in "$(hostname 2>/dev/null || true)" "$(id -un 2>/dev/null || true)"; do
    [ ${#s} -ge 4 ] && [ "$s" != root ] || continue
    hits="$(grep -rlawF -- "$s" "$root/bin" || true)"
    [ -z "$hits" ] || fail "a program of the package names '$s': $hits"
  done
  echo "ok: no build path, user or host name under $root"
}

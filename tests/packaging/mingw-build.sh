#!/usr/bin/env bash
# Fixture of packaging-wine: the CPU-only core, ember-cli, ember-server and ember-tokenize cross-compiled for
# 64-bit Windows with Debian's MinGW-w64 (cmake/mingw-w64-x86_64.cmake) into MINGW_DIR, then the NSIS installer and
# the .zip made by CPack (makensis runs here). Building is the proof that the core has no Linux-only call outside
# its guarded files: the toolchain sees no Linux header and no host library.
source "$(dirname "$0")/common.sh"
command -v x86_64-w64-mingw32-g++-posix >/dev/null ||
  skip "no x86_64-w64-mingw32-g++-posix (Debian's g++-mingw-w64-x86-64-posix; scripts/setup installs it)"
command -v makensis >/dev/null || skip "no makensis (Debian's nsis; scripts/setup installs it)"

mkdir -p "$(dirname "$MINGW_DIR")"
step "configure $MINGW_DIR"
cmake -S "$EMBER_SOURCE_DIR" -B "$MINGW_DIR" -DCMAKE_TOOLCHAIN_FILE="$EMBER_SOURCE_DIR/cmake/mingw-w64-x86_64.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DEMBER_CUDA=OFF -DEMBER_WERROR="$EMBER_WERROR" \
  >"$MINGW_DIR.configure.log" 2>&1 || { cat "$MINGW_DIR.configure.log" >&2; fail "configuring the MinGW build failed"; }
grep "ember: CUDA=" "$MINGW_DIR.configure.log"
step "build (-j${EMBER_MINGW_JOBS:-1})"
cmake --build "$MINGW_DIR" -j"${EMBER_MINGW_JOBS:-1}" >"$MINGW_DIR.build.log" 2>&1 ||
  { tail -50 "$MINGW_DIR.build.log" >&2; fail "the MinGW build failed (log: $MINGW_DIR.build.log)"; }

# A 64-bit Windows executable: 'MZ', and at the offset held at 0x3c, 'PE\0\0' and machine 0x8664 (x86-64).
is_pe64() {
  local off
  [ "$(head -c 2 "$1")" = MZ ] || return 1
  off=$(od -An -t u4 -j 60 -N 4 "$1" | tr -d ' ')
  [ "$(od -An -t x1 -j "$off" -N 6 "$1" | tr -d ' \n')" = 504500006486 ]
}
for exe in ember-cli ember-server ember-tokenize; do
  is_pe64 "$MINGW_DIR/bin/$exe.exe" || fail "$MINGW_DIR/bin/$exe.exe is not a 64-bit Windows executable"
  echo "ok: bin/$exe.exe ($(stat -c %s "$MINGW_DIR/bin/$exe.exe") bytes)"
done

step "cpack -G 'NSIS;ZIP'"
rm -rf "$MINGW_DIR/packages"
(cd "$MINGW_DIR" && cpack -G "NSIS;ZIP" -B "$MINGW_DIR/packages") >"$MINGW_DIR.cpack.log" 2>&1 ||
  { cat "$MINGW_DIR.cpack.log" >&2; fail "cpack NSIS/ZIP failed"; }
installer="$(ls "$MINGW_DIR"/packages/ember-*-Windows-x86_64.exe)"
is_pe64 "$installer" || fail "$installer is not a 64-bit Windows executable"
ls -l "$installer" "$MINGW_DIR"/packages/ember-*-Windows-x86_64.zip

#!/usr/bin/env bash
# Fixture of packaging-tgz and packaging-deb: CPack makes the .tar.gz and (where dpkg-deb exists) the .deb of the
# build tree into PKG_DIR, and the .deb declares its Debian dependencies.
source "$(dirname "$0")/common.sh"
rm -rf "$PKG_DIR" && mkdir -p "$PKG_DIR"
generators="TGZ"
if command -v dpkg-deb >/dev/null && command -v dpkg-shlibdeps >/dev/null; then
  generators="TGZ;DEB"
else
  echo "note: no dpkg-deb/dpkg-shlibdeps (Debian's dpkg-dev): making the .tar.gz only"
fi
step "cpack -G '$generators'"
cpack --config "$EMBER_BINARY_DIR/CPackConfig.cmake" -B "$PKG_DIR" -G "$generators" >"$PKG_DIR/cpack.log" 2>&1 ||
  { cat "$PKG_DIR/cpack.log" >&2; fail "cpack failed"; }
ls -l "$PKG_DIR"/ember*.tar.gz
if [[ $generators == *DEB* ]]; then
  deb="$(ls "$PKG_DIR"/ember_*.deb)"
  ls -l "$deb"
  depends="$(dpkg-deb -f "$deb" Depends)"
  echo "Depends: $depends"
  # dpkg-shlibdeps found the libraries the programs link: the C and C++ runtimes at least.
  [[ $depends == *libc6* && $depends == *libstdc++6* ]] || fail "the .deb's Depends lacks libc6/libstdc++6: '$depends'"
fi

# Packages (label packaging; scripts in tests/packaging/, 77 = skipped):
#   packaging-cpack        makes the .tar.gz and .deb of this build tree (fixture of the next two)
#   packaging-tgz          the .tar.gz unpacked elsewhere runs the packaged models with this build's tokens
#   packaging-deb          dpkg -i, the same run from /usr, dpkg -r leaves nothing (root only; never replaces an
#                          installed ember)
#   packaging-mingw-build  the Windows cross build (MinGW-w64) of the core and ember-cli/-server/-tokenize, and
#                          its NSIS installer and .zip (fixture of the next one)
#   packaging-wine         the Windows programs, from the .zip and from the installer, under wine64
# The cross build is a test rather than a step of scripts/test so that `ctest` alone checks everything and runs
# it beside the other tests (-j), in a tree of its own that later runs rebuild incrementally.
if(CMAKE_CROSSCOMPILING OR NOT UNIX)
  return()
endif()
set(_pkg ${CMAKE_CURRENT_BINARY_DIR}/packaging)
set(_env EMBER_SOURCE_DIR=${PROJECT_SOURCE_DIR} EMBER_BINARY_DIR=${CMAKE_BINARY_DIR}
         EMBER_SHARED_DIR=${EMBER_SHARED_DIR} PKG_DIR=${_pkg}/linux MINGW_DIR=${_pkg}/mingw
         EMBER_WERROR=${EMBER_WERROR})
function(ember_packaging_test name script timeout)
  add_test(NAME ${name} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/packaging/${script})
  set_tests_properties(${name} PROPERTIES LABELS packaging SKIP_RETURN_CODE 77 TIMEOUT ${timeout}
                                          ENVIRONMENT "${_env}" ${ARGN})
endfunction()
ember_packaging_test(packaging-cpack cpack.sh 300 FIXTURES_SETUP ember-linux-packages)
ember_packaging_test(packaging-tgz tgz.sh 300 FIXTURES_REQUIRED ember-linux-packages)
ember_packaging_test(packaging-deb deb.sh 300 FIXTURES_REQUIRED ember-linux-packages)
ember_packaging_test(packaging-mingw-build mingw-build.sh 900 FIXTURES_SETUP ember-windows-packages)
ember_packaging_test(packaging-wine wine.sh 300 FIXTURES_REQUIRED ember-windows-packages)

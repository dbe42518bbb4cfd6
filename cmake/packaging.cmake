# What `cmake --install` puts where, and the packages CPack makes of it (scripts/package drives both).
# Layout, relative to the install prefix (/usr in the .deb, the top folder of the .tar.gz and .zip, the folder the
# NSIS installer asks for):
#   bin/ember-*                  the programs
#   share/ember/                 the shipped models (EMBER_PACKAGE_MODELS), their README and the chat page
#   share/doc/ember/             README, the user guide and the other docs, copyright
#   share/man/man1/ember-*.1.gz  each program's --help as a man page (Linux and macOS builds)
# Nothing refers to the prefix: ember-synth finds share/ember from its own path (models/synth.h), ember-server
# carries its page inside, and the models are given with -m. A package holds no build path, user or host name
# (tests/packaging checks the files).
include(GNUInstallDirs)

# The programs: every apps/<name> folder's ember-<name>. Windows builds make and ship only the chat pair and the
# tokenizer (the portable core is what the cross build proves), the others are left out of `all` there.
set(EMBER_WINDOWS_APPS ember-cli ember-server ember-tokenize)
set(_ember_apps)
file(GLOB _app_dirs LIST_DIRECTORIES true ${PROJECT_SOURCE_DIR}/apps/*)
foreach(_dir ${_app_dirs})
  get_filename_component(_name ${_dir} NAME)
  if(TARGET ember-${_name})
    if(WIN32 AND NOT ember-${_name} IN_LIST EMBER_WINDOWS_APPS)
      set_target_properties(ember-${_name} PROPERTIES EXCLUDE_FROM_ALL ON)
    else()
      list(APPEND _ember_apps ember-${_name})
    endif()
  endif()
endforeach()
install(TARGETS ${_ember_apps} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# Models: the default one, ember's ReLU model with its profile, and ember-synth's default vocabulary.
set(EMBER_PACKAGE_MODELS stories260K.gguf tiny-relu-q8_0.gguf tiny-relu-q8_0.profile.gguf ggml-vocab-llama-spm.gguf
    CACHE STRING "files of models/ that packages install into share/ember")
set(_models)
foreach(_m ${EMBER_PACKAGE_MODELS})
  list(APPEND _models ${PROJECT_SOURCE_DIR}/models/${_m})
endforeach()
install(FILES ${_models} ${PROJECT_SOURCE_DIR}/models/README.md DESTINATION ${CMAKE_INSTALL_DATADIR}/ember)
if(EXISTS ${PROJECT_SOURCE_DIR}/apps/server/web/index.html)
  install(FILES ${PROJECT_SOURCE_DIR}/apps/server/web/index.html DESTINATION ${CMAKE_INSTALL_DATADIR}/ember/web)
endif()
file(GLOB _docs ${PROJECT_SOURCE_DIR}/docs/*.md)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${_docs} ${PROJECT_SOURCE_DIR}/cmake/copyright
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

# Man pages from --help, where the build can run what it built; the NAME lines follow README's table of tools.
set(_what_cli "generate text or chat with a GGUF model")
set(_what_server "OpenAI-compatible HTTP server with a web chat page")
set(_what_tokenize "print the tokens of a text")
set(_what_perplexity "perplexity of a text file, llama.cpp's method")
set(_what_quantize "convert a GGUF model to F32, F16, BF16, Q8_0 or Q4_0")
set(_what_bench "prompt and generation speed, with the memory-bandwidth bound")
set(_what_sparsity "per-layer FFN activation sparsity of a ReLU model")
set(_what_profile "neuron firing frequencies and activation predictors of a ReLU model")
set(_what_synth "write a synthetic ReLU model of any size")
if(UNIX AND NOT CMAKE_CROSSCOMPILING)
  set(_pages)
  foreach(_app ${_ember_apps})
    string(REPLACE "ember-" "" _short ${_app})
    set(_what "${_what_${_short}}")
    if(NOT _what)
      set(_what "an ember program")
    endif()
    set(_page ${CMAKE_BINARY_DIR}/man/${_app}.1.gz)
    add_custom_command(
      OUTPUT ${_page}
      COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:${_app}> -DNAME=${_app} "-DWHAT=${_what}"
              -DVERSION=${PROJECT_VERSION} -DOUTPUT=${_page} -P ${PROJECT_SOURCE_DIR}/cmake/help-to-man.cmake
      DEPENDS ${_app} ${PROJECT_SOURCE_DIR}/cmake/help-to-man.cmake
      COMMENT "Writing the man page of ${_app}" VERBATIM)
    list(APPEND _pages ${_page})
  endforeach()
  add_custom_target(ember-man ALL DEPENDS ${_pages})
  install(FILES ${_pages} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
endif()

# CPack: the same files in each generator's form.
set(CPACK_PACKAGE_NAME ember)
set(CPACK_PACKAGE_VENDOR "ember")
set(CPACK_PACKAGE_CONTACT "ember developers <noreply@ember.invalid>" CACHE STRING "package maintainer")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "LLM inference on one PC, sparse on ReLU models (GGUF, llama.cpp's flags)")
string(CONCAT CPACK_PACKAGE_DESCRIPTION
       "ember runs GGUF language models on the CPU (and on NVIDIA GPUs where built with CUDA). With a profile of\n"
       "a ReLU-fied model it computes only the FFN neurons its predictors expect to fire. Programs: ember-cli,\n"
       "ember-server (OpenAI-compatible HTTP API and chat page), ember-tokenize, ember-perplexity,\n"
       "ember-quantize, ember-bench, ember-sparsity, ember-profile, ember-synth; the small default model,\n"
       "stories260K.gguf, and ember's tiny ReLU model are in share/ember.")
set(CPACK_PACKAGE_INSTALL_DIRECTORY ember)
set(CPACK_RESOURCE_FILE_README ${PROJECT_SOURCE_DIR}/README.md)
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/cmake/copyright)
set(CPACK_STRIP_FILES ON)
set(CPACK_SOURCE_IGNORE_FILES "/build[^/]*/" "/\\\\.git/" "/node_modules/")
# Archives unpack to one folder, ember-<version>-<system>-<processor>, with bin/ and share/ inside.
set(CPACK_SYSTEM_NAME ${CMAKE_SYSTEM_NAME}-${CMAKE_SYSTEM_PROCESSOR})
if(WIN32)
  set(CPACK_GENERATOR NSIS ZIP)
  set(CPACK_NSIS_PACKAGE_NAME "ember ${PROJECT_VERSION}")
  set(CPACK_NSIS_DISPLAY_NAME "ember ${PROJECT_VERSION}")
  # A 64-bit installer (Debian's nsis has the amd64-unicode stubs), installing into the 64-bit Program Files.
  if(CMAKE_HOST_UNIX)
    set(CPACK_NSIS_EXECUTABLE ${PROJECT_SOURCE_DIR}/cmake/windows/makensis-amd64)
  endif()
  set(CPACK_NSIS_INSTALL_ROOT "$PROGRAMFILES64")
  set(CPACK_NSIS_MODIFY_PATH ON)  # offers to put bin\ on PATH: the programs are console tools
  set(CPACK_NSIS_ENABLE_UNINSTALL_BEFORE_INSTALL ON)
  set(CPACK_NSIS_MENU_LINKS "share/doc/ember/README.md" "ember README" "share/doc/ember/user-guide.md"
      "ember user guide")
elseif(APPLE)
  # Untested: no macOS machine here. The DragNDrop image holds the same bin/ and share/ tree as the archive.
  set(CPACK_GENERATOR TGZ DragNDrop)
  set(CPACK_DMG_VOLUME_NAME "ember ${PROJECT_VERSION}")
else()
  set(CPACK_GENERATOR TGZ)
  # The .deb where Debian's tools are (dpkg-dev): its Depends come from dpkg-shlibdeps.
  find_program(EMBER_DPKG_DEB dpkg-deb)
  find_program(EMBER_DPKG_SHLIBDEPS dpkg-shlibdeps)
  if(EMBER_DPKG_DEB AND EMBER_DPKG_SHLIBDEPS)
    list(APPEND CPACK_GENERATOR DEB)
  endif()
endif()
# Debian: dependencies from the binaries' shared libraries (dpkg-shlibdeps; a library no Debian package owns, such
# as NVIDIA's CUDA runtime in a CUDA build, is left out of them), files under /usr (CPack's default for DEB).
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
include(CPack)

# A build tree outside the source tree compiles the source path into ember-synth (apps/CMakeLists.txt); a package
# made from it would carry that path.
get_filename_component(_build_parent ${CMAKE_BINARY_DIR} DIRECTORY)
if(NOT _build_parent STREQUAL PROJECT_SOURCE_DIR)
  message(STATUS "ember: ${CMAKE_BINARY_DIR} is not directly inside the source tree: its ember-synth keeps the "
                 "source path, so packages made from it are not clean of build paths")
endif()

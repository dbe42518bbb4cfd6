# ember-server: its generation engine (Generator's step API, slots decoded together, the queue, cancellation; label
# unit) and the built server end to end (label e2e): every endpoint and bad input, the API key, a full queue, a
# client gone mid-stream, 16 clients streaming at once, and the official openai npm client (skipped without node).
ember_gtest(test-server-slots SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/server-slots-test.cpp LABELS unit)

ember_gtest(test-server-e2e SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/server-e2e-test.cpp LABELS e2e LIBS ember-server-core)
target_compile_definitions(test-server-e2e PRIVATE EMBER_SERVER_BIN="$<TARGET_FILE:ember-server>")
add_dependencies(test-server-e2e ember-server)

# The openai package (tests/node/package-lock.json, installed by scripts/setup with npm ci) against ember-server.
add_test(NAME server-openai-node
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/node/run.sh $<TARGET_FILE:ember-server>
                 ${EMBER_SHARED_DIR}/testdata/stories260K.gguf)
set_tests_properties(server-openai-node PROPERTIES LABELS e2e SKIP_RETURN_CODE 77 TIMEOUT 120)

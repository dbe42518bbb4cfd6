# The chat page of ember-server (apps/server/web/index.html) in headless Chromium, driven by playwright-core from
# tests/web/node_modules (scripts/setup runs npm ci there), against a real ember-server on stories260K (label "web").
# The script exits 77 (skipped) without /usr/bin/chromium or playwright-core; without node the cases only say so.
set(EMBER_WEB_CASES chat markdown escape api-key)
find_program(EMBER_NODE node)
foreach(case ${EMBER_WEB_CASES})
  if(NOT EMBER_NODE)
    add_test(NAME web-chat-${case} COMMAND ${CMAKE_COMMAND} -E echo "SKIP: node not found (apt-get install nodejs)")
    set_tests_properties(web-chat-${case} PROPERTIES LABELS web SKIP_REGULAR_EXPRESSION "SKIP: ")
  elseif(NOT TARGET ember-server)
    add_test(NAME web-chat-${case} COMMAND ${CMAKE_COMMAND} -E echo "SKIP: this tree has no ember-server target")
    set_tests_properties(web-chat-${case} PROPERTIES LABELS web SKIP_REGULAR_EXPRESSION "SKIP: ")
  else()
    add_test(NAME web-chat-${case}
             COMMAND ${EMBER_NODE} ${CMAKE_CURRENT_SOURCE_DIR}/web/chat-page-test.js
                     --server $<TARGET_FILE:ember-server>
                     --model ${PROJECT_SOURCE_DIR}/models/stories260K.gguf
                     --page ${PROJECT_SOURCE_DIR}/apps/server/web/index.html
                     --out ${CMAKE_BINARY_DIR}/web ${case})
    # One Chromium at a time: the streaming case watches timing and the machine may be small.
    set_tests_properties(web-chat-${case} PROPERTIES LABELS web SKIP_RETURN_CODE 77 TIMEOUT 180
                         RESOURCE_LOCK ember-web-chromium)
  endif()
endforeach()

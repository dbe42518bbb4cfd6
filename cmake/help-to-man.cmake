# Writes a program's --help as a section-1 man page, gzipped (cmake -P; used by cmake/packaging.cmake).
# -DEXE=program -DNAME=ember-x -DWHAT="one-line description" -DVERSION=0.1.0 -DOUTPUT=ember-x.1.gz
# --help starts "usage: NAME ...", optionally followed by a summary paragraph; the rest is kept as printed.
cmake_minimum_required(VERSION 3.25)
execute_process(COMMAND ${EXE} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc ERROR_QUIET)
if(NOT rc EQUAL 0 OR NOT help MATCHES "^usage: ")
  message(FATAL_ERROR "${NAME} --help exited with ${rc} and printed '${help}' (expected 'usage: ...')")
endif()
string(REPLACE "\\" "\\e" help "${help}")
string(STRIP "${help}" help)
string(APPEND help "\n")
set(synopsis "")
set(summary "")
set(body "")
set(part usage)  # usage, summary, body
# Line by line without CMake lists, which would split at ';' and group at '['.
while(NOT help STREQUAL "")
  string(FIND "${help}" "\n" eol)
  string(SUBSTRING "${help}" 0 ${eol} line)
  math(EXPR eol "${eol} + 1")
  string(SUBSTRING "${help}" ${eol} -1 help)
  if(line MATCHES "^[.']")  # a line starting with a control character would be a request
    set(line "\\&${line}")
  endif()
  if(part STREQUAL "usage")
    string(REGEX REPLACE "^usage: [^ ]* ?" "" synopsis "${line}")
    set(part summary)
  elseif(part STREQUAL "summary" AND NOT line STREQUAL "")
    string(APPEND summary "${line}\n")
  else()
    set(part body)
    string(APPEND body "${line}\n")
  endif()
endwhile()
string(REGEX REPLACE "^\n+" "" body "${body}")
if(NOT summary STREQUAL "")
  set(summary ".SH DESCRIPTION\n${summary}")
endif()
string(TOUPPER "${NAME}" upper)
file(WRITE ${OUTPUT}.tmp
  ".TH ${upper} 1 \"\" \"ember ${VERSION}\" \"User Commands\"\n"
  ".SH NAME\n${NAME} \\- ${WHAT}\n"
  ".SH SYNOPSIS\n.B ${NAME}\n${synopsis}\n"
  "${summary}"
  ".SH OPTIONS\n.nf\n${body}.fi\n"
  ".SH SEE ALSO\nThe user guide, share/doc/ember/user-guide.md under the install prefix (/usr for the Debian package).\n")
get_filename_component(dir ${OUTPUT} DIRECTORY)
get_filename_component(page ${OUTPUT} NAME_WLE)
file(RENAME ${OUTPUT}.tmp ${dir}/${page})
file(ARCHIVE_CREATE OUTPUT ${OUTPUT} PATHS ${dir}/${page} FORMAT raw COMPRESSION GZip)
file(REMOVE ${dir}/${page})

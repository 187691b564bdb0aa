# cmake -DREPORTS=<dir> -P check-sanitizer-reports.cmake
#
# Fails when sanitizer reports were written to <dir> (ASAN_OPTIONS/UBSAN_OPTIONS/TSAN_OPTIONS
# log_path, set by the asan and tsan test presets). That is how findings in processes the tests
# start, like director-agent under the end-to-end tests, are noticed: their output goes to logs
# nobody reads when the test itself passes. The reports are printed, then moved to
# <dir>/seen/ so that the next run starts clean.
if(NOT REPORTS)
  message(FATAL_ERROR "usage: cmake -DREPORTS=<dir> -P check-sanitizer-reports.cmake")
endif()
file(GLOB reports LIST_DIRECTORIES false "${REPORTS}/*")
if(NOT reports)
  message(STATUS "no sanitizer reports in ${REPORTS}")
  return()
endif()
list(LENGTH reports count)
file(MAKE_DIRECTORY "${REPORTS}/seen")
foreach(report IN LISTS reports)
  file(READ "${report}" text)
  get_filename_component(name "${report}" NAME)
  message("==== ${report}\n${text}")
  file(RENAME "${report}" "${REPORTS}/seen/${name}")
endforeach()
message(FATAL_ERROR "${count} sanitizer report(s) in ${REPORTS} (printed above, now in ${REPORTS}/seen)")

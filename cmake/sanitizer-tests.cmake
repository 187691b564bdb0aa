# Included from tests/fuzz/CMakeLists.txt: the last test directory, processed after agent/, so
# that director-agent exists and that, in a serial ctest run, the test below comes last.
#
# In AddressSanitizer builds (not the fuzz preset):
# - director-agent gets built-in sanitizer defaults (cmake/sanitizer-defaults.cpp) that write its
#   reports to <build>/sanitizer-reports/director-agent.<pid>. It runs under the conformance and
#   end-to-end tests with a minimal environment and its output in logs nobody reads when those
#   tests pass (HAProxy's degraded mode even routes users while the agent is down), so a leak
#   or a UBSan finding there would otherwise go unnoticed.
# - the test sanitizers/reports fails, printing them, when that directory holds reports.
#   tools/run-tests also checks it after the whole asan run.
if(DIRECTOR_SANITIZE_ADDRESS AND NOT DIRECTOR_FUZZ)
  set(DIRECTOR_SANITIZER_REPORTS ${CMAKE_BINARY_DIR}/sanitizer-reports)
  file(MAKE_DIRECTORY ${DIRECTOR_SANITIZER_REPORTS})  # log_path must name an existing directory
  if(TARGET director-agent)
    target_sources(director-agent PRIVATE ${PROJECT_SOURCE_DIR}/cmake/sanitizer-defaults.cpp)
    target_compile_definitions(director-agent PRIVATE
      DIRECTOR_SANITIZER_LOG_PATH="${DIRECTOR_SANITIZER_REPORTS}/director-agent")
  endif()
  add_test(NAME sanitizers/reports
           COMMAND ${CMAKE_COMMAND} -DREPORTS=${DIRECTOR_SANITIZER_REPORTS}
                   -P ${PROJECT_SOURCE_DIR}/cmake/check-sanitizer-reports.cmake)
  set_tests_properties(sanitizers/reports PROPERTIES LABELS sanitizers)
endif()

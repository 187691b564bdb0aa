// Compiled into director-agent in AddressSanitizer builds (cmake/sanitizer-tests.cmake): the
// sanitizers' built-in defaults, which ASAN_OPTIONS/UBSAN_OPTIONS still override flag by flag.
// The test harnesses start the agent with a minimal environment (tools/stack.py,
// tests/e2e/agent_harness.py), so these defaults are how its reports reach the build's report
// directory, where the test sanitizers/reports and tools/run-tests look for them.
#ifndef DIRECTOR_SANITIZER_LOG_PATH
#error "DIRECTOR_SANITIZER_LOG_PATH must name the report file prefix"
#endif

extern "C" {
// NOLINTBEGIN: names and signatures fixed by the sanitizer runtimes.
const char* __asan_default_options();
const char* __ubsan_default_options();
const char* __asan_default_options() { return "detect_leaks=1:log_path=" DIRECTOR_SANITIZER_LOG_PATH; }
const char* __ubsan_default_options() { return "print_stacktrace=1:log_path=" DIRECTOR_SANITIZER_LOG_PATH; }
// NOLINTEND
}

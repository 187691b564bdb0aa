# Interface targets that every project target links: warnings as a contract, sanitizers opt-in.
add_library(director_warnings INTERFACE)
target_compile_options(director_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wnon-virtual-dtor
  -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wdouble-promotion
  -Wimplicit-fallthrough)

# libFuzzer targets (tests/fuzz, docs/fuzzing.md). Needs clang. Implies ASan+UBSan, and every
# project target is built with libFuzzer's coverage instrumentation (fuzzer-no-link) so that the
# fuzzers see the branches of the libraries they drive.
option(DIRECTOR_FUZZ "Build the libFuzzer targets in tests/fuzz (clang; implies ASan+UBSan)" OFF)
if(DIRECTOR_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "DIRECTOR_FUZZ needs clang (libFuzzer): use the fuzz preset, "
                        "or CXX=clang++ (found ${CMAKE_CXX_COMPILER_ID})")
  endif()
  if(DIRECTOR_SANITIZE_THREAD)
    message(FATAL_ERROR "DIRECTOR_FUZZ builds with AddressSanitizer: it cannot be combined with ThreadSanitizer")
  endif()
  set(DIRECTOR_SANITIZE_ADDRESS ON)
endif()

add_library(director_sanitizers INTERFACE)
if(DIRECTOR_SANITIZE_ADDRESS AND DIRECTOR_SANITIZE_THREAD)
  message(FATAL_ERROR "AddressSanitizer and ThreadSanitizer cannot be combined")
endif()
if(DIRECTOR_SANITIZE_ADDRESS)
  target_compile_options(director_sanitizers INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(director_sanitizers INTERFACE -fsanitize=address,undefined)
endif()
if(DIRECTOR_SANITIZE_THREAD)
  # gcc warns that TSan does not model atomic_thread_fence (Boost.Asio uses it): known, not ours.
  target_compile_options(director_sanitizers INTERFACE -fsanitize=thread -fno-omit-frame-pointer
                         $<$<CXX_COMPILER_ID:GNU>:-Wno-tsan>)
  target_link_options(director_sanitizers INTERFACE -fsanitize=thread)
endif()
if(DIRECTOR_FUZZ)
  target_compile_options(director_sanitizers INTERFACE -fsanitize=fuzzer-no-link)
endif()

add_library(director_options INTERFACE)
target_link_libraries(director_options INTERFACE director_warnings director_sanitizers)

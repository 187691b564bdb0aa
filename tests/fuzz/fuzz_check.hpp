// FUZZ_CHECK, for every libFuzzer target in this directory (docs/fuzzing.md).
#pragma once

#include <cstdio>
#include <cstdlib>

// Aborts (libFuzzer records the input as a crash) when an invariant does not hold. Unlike
// assert(), it stays active in the RelWithDebInfo builds the fuzz preset uses.
#define FUZZ_CHECK(condition)                                                                  \
  do {                                                                                         \
    if (!(condition)) {                                                                        \
      std::fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                            \
    }                                                                                          \
  } while (false)

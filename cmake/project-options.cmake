# Interface targets that every project target links: warnings as a contract, sanitizers opt-in.
add_library(director_warnings INTERFACE)
target_compile_options(director_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wnon-virtual-dtor
  -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wdouble-promotion
  -Wimplicit-fallthrough)

add_library(director_sanitizers INTERFACE)
if(DIRECTOR_SANITIZE_ADDRESS AND DIRECTOR_SANITIZE_THREAD)
  message(FATAL_ERROR "AddressSanitizer and ThreadSanitizer cannot be combined")
endif()
if(DIRECTOR_SANITIZE_ADDRESS)
  target_compile_options(director_sanitizers INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(director_sanitizers INTERFACE -fsanitize=address,undefined)
endif()
if(DIRECTOR_SANITIZE_THREAD)
  target_compile_options(director_sanitizers INTERFACE -fsanitize=thread -fno-omit-frame-pointer)
  target_link_options(director_sanitizers INTERFACE -fsanitize=thread)
endif()

add_library(director_options INTERFACE)
target_link_libraries(director_options INTERFACE director_warnings director_sanitizers)

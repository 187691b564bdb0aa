// A configuration file for one test: written to a new path in the temporary directory, removed
// when the test ends. Shared by the option-table tests of common/ and the spawner.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace director::test {

class TempConfigFile {
 public:
  explicit TempConfigFile(const std::string& text)
      : path_(std::filesystem::temp_directory_path() /
              ("director-config-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++) + ".json")) {
    std::ofstream(path_) << text;
  }
  ~TempConfigFile() { std::filesystem::remove(path_); }
  TempConfigFile(const TempConfigFile&) = delete;
  TempConfigFile& operator=(const TempConfigFile&) = delete;
  std::string path() const { return path_.string(); }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

}  // namespace director::test

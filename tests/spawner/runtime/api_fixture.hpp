// The runtime tests' captured or written API answers: tests/data/<api>/<name>, read whole.
#pragma once

#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

namespace director::test {

// tests/data/<directory>/<name> (e.g. "docker-api", "kube-api"); REQUIREs that it exists.
inline std::string api_fixture(std::string_view directory, std::string_view name) {
  const std::string path = std::string(DIRECTOR_TEST_DATA_DIR) + "/" + std::string(directory) + "/" + std::string(name);
  std::ifstream file(path, std::ios::binary);
  REQUIRE(file.good());
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

}  // namespace director::test

// What both runtimes' calls share (spawner/src/runtime/api_call.hpp).
#include "runtime/api_call.hpp"

#include <catch2/catch.hpp>

#include <string>

namespace runtime = director::spawner::runtime;

TEST_CASE("url_encode keeps RFC 3986's unreserved characters and encodes the rest") {
  CHECK(runtime::url_encode("{\"label\":[\"a=b\"]}") == "%7B%22label%22%3A%5B%22a%3Db%22%5D%7D");
  CHECK(runtime::url_encode("vscode-alice_1.x~") == "vscode-alice_1.x~");
  CHECK(runtime::url_encode("a b/\xC3\xA9") == "a%20b%2F%C3%A9");
}

TEST_CASE("error_message: a JSON answer's message (Docker's, a Kubernetes Status), else one short line") {
  CHECK(runtime::error_message(R"({"cause":"no such container","message":"no container with name or ID \"x\" found","response":404})") ==
        "no container with name or ID \"x\" found");
  CHECK(runtime::error_message(R"({"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"x\" not found","code":404})") ==
        "pods \"x\" not found");
  CHECK(runtime::error_message("plain\ntext") == "plain text");
  CHECK(runtime::error_message(std::string(1000, 'x')).size() == 300);
}

TEST_CASE("unavailable and succeeded") {
  const auto failure = runtime::unavailable("no answer");
  CHECK(failure.error == director::spawner::core::CallError::unavailable);
  CHECK(failure.http_status == 0);
  CHECK(failure.message == "no answer");
  CHECK(runtime::succeeded(200));
  CHECK(runtime::succeeded(201));
  CHECK_FALSE(runtime::succeeded(304));
  CHECK_FALSE(runtime::succeeded(199));
  CHECK_FALSE(runtime::succeeded(404));
}

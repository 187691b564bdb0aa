// The variable contract with haproxy/ (docs/architecture.md, "The SPOE contract").
#include "route/route_handler.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

using director::decision::Answer;
using director::decision::Reason;
using namespace director::spop;

Notify notify_with(std::vector<Message> messages) { return Notify{7, 1, std::move(messages)}; }

const SetVar* find_var(const std::vector<Action>& actions, std::string_view name) {
  for (const auto& action : actions) {
    const auto* set = std::get_if<SetVar>(&action);
    if (set != nullptr && set->name == name) return set;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("the route message's user argument is the username") {
  // The request views into the notify: keep it alive (a temporary made this a use after free).
  const auto notify = notify_with({{"route", {{"user", std::string("jack")}, {"host", std::string("x")}}}});
  const auto request = director::route::find_route_request(notify);
  REQUIRE(request);
  CHECK(request->username == std::optional<std::string_view>("jack"));
}

TEST_CASE("a NULL or non-string user is no username") {
  CHECK_FALSE(director::route::find_route_request(notify_with({{"route", {{"user", Null{}}}}}))->username);
  CHECK_FALSE(director::route::find_route_request(notify_with({{"route", {{"user", std::int32_t{5}}}}}))->username);
  CHECK_FALSE(director::route::find_route_request(notify_with({{"route", {}}}))->username);
}

TEST_CASE("names are matched in full") {
  CHECK_FALSE(director::route::find_route_request(notify_with({{"router", {{"user", std::string("a")}}}})));
  CHECK_FALSE(director::route::find_route_request(notify_with({{"rout", {{"user", std::string("a")}}}})));
  const auto notify =
      notify_with({{"check-client-ip", {}}, {"route", {{"username", std::string("a")}, {"user", std::string("b")}}}});
  const auto request = director::route::find_route_request(notify);
  REQUIRE(request);
  CHECK(request->username == std::optional<std::string_view>("b"));
}

TEST_CASE("an alive answer carries typed address and port") {
  Answer answer;
  answer.alive = true;
  answer.reason = Reason::ok;
  answer.label = "jack";
  answer.host = "vscode-jack";
  answer.address = boost::asio::ip::make_address("127.0.1.5");
  answer.port = 8080;
  answer.age = std::chrono::milliseconds(420);
  const auto actions = director::route::to_actions(answer);
  REQUIRE(find_var(actions, "alive"));
  CHECK(find_var(actions, "alive")->value == Value{true});
  CHECK(find_var(actions, "alive")->scope == Scope::transaction);
  CHECK(find_var(actions, "reason")->value == Value{std::string("ok")});
  CHECK(find_var(actions, "label")->value == Value{std::string("jack")});
  CHECK(find_var(actions, "host")->value == Value{std::string("vscode-jack")});
  CHECK(find_var(actions, "addr")->value == Value{Ipv4{{127, 0, 1, 5}}});
  CHECK(find_var(actions, "port")->value == Value{std::int32_t{8080}});
  CHECK(find_var(actions, "age")->value == Value{std::int32_t{420}});

  answer.age = std::chrono::hours(24 * 30);  // beyond INT32 milliseconds: clamped
  CHECK(find_var(director::route::to_actions(answer), "age")->value == Value{std::int32_t{INT32_MAX}});

  answer.address = boost::asio::ip::make_address("fd00::5");
  const auto v6 = director::route::to_actions(answer);
  REQUIRE(std::holds_alternative<Ipv6>(find_var(v6, "addr")->value));
  CHECK(std::get<Ipv6>(find_var(v6, "addr")->value).bytes[0] == 0xfd);
}

TEST_CASE("a not-alive answer never carries an address or port") {
  Answer answer;
  answer.alive = false;
  answer.reason = Reason::refused;
  answer.label = "jack";
  answer.host = "vscode-jack";
  answer.address = boost::asio::ip::make_address("127.0.1.5");
  answer.port = 8080;
  const auto actions = director::route::to_actions(answer);
  CHECK(find_var(actions, "alive")->value == Value{false});
  CHECK(find_var(actions, "reason")->value == Value{std::string("refused")});
  CHECK(find_var(actions, "host"));
  CHECK_FALSE(find_var(actions, "addr"));
  CHECK_FALSE(find_var(actions, "port"));
  CHECK_FALSE(find_var(actions, "age"));
}

TEST_CASE("an unmappable username carries neither label nor host") {
  Answer answer;
  answer.reason = Reason::invalid_username;
  const auto actions = director::route::to_actions(answer);
  CHECK(find_var(actions, "reason")->value == Value{std::string("invalid-username")});
  CHECK_FALSE(find_var(actions, "label"));
  CHECK_FALSE(find_var(actions, "host"));
}

TEST_CASE("an invalid-username answer shows the refused name, escaped and cut") {
  Answer answer;
  answer.reason = Reason::invalid_username;
  const auto actions = director::route::to_actions(answer, std::string_view("Jack.Doe@Example.com"));
  REQUIRE(find_var(actions, "refused_username"));
  CHECK(find_var(actions, "refused_username")->value == Value{std::string("Jack.Doe@Example.com")});
  CHECK(find_var(actions, "refused_username")->scope == Scope::transaction);
  // Without the request's name (a late answer), or for any other reason: no such variable.
  CHECK_FALSE(find_var(director::route::to_actions(answer), "refused_username"));
  answer.reason = Reason::no_such_host;
  answer.label = "jack";
  answer.host = "vscode-jack";
  CHECK_FALSE(find_var(director::route::to_actions(answer, std::string_view("jack")), "refused_username"));
}

TEST_CASE("shown_username: markup, quotes, backslash, control and non-ASCII bytes hex-escaped (xHH)") {
  using director::route::shown_username;
  CHECK(shown_username("alice") == "alice");
  CHECK(shown_username("Jack Smith") == "Jack Smith");
  CHECK(shown_username("<script>alert(1)</script>") == "\\x3cscript\\x3ealert(1)\\x3c/script\\x3e");
  CHECK(shown_username("a&b\"c'd\\e") == "a\\x26b\\x22c\\x27d\\x5ce");
  CHECK(shown_username(std::string_view("j\0\r\n\t\x7f\x1b", 7)) == "j\\x00\\x0d\\x0a\\x09\\x7f\\x1b");
  CHECK(shown_username("J\xc3\xa4" "ck\xff") == "J\\xc3\\xa4ck\\xff");
  CHECK(shown_username("jack%2e") == "jack%2e");
  CHECK(shown_username("") == "");
  // Every byte value: the result is printable ASCII with none of & < > " ' (nor CR, LF).
  std::string every_byte;
  for (int byte = 0; byte < 256; ++byte) every_byte.push_back(static_cast<char>(byte));
  for (std::size_t start = 0; start < every_byte.size(); start += director::route::kShownUsernameBytes) {
    const std::string shown = shown_username(std::string_view(every_byte).substr(start, director::route::kShownUsernameBytes));
    for (const char c : shown) {
      CAPTURE(shown);
      CHECK(c >= 0x20);
      CHECK(c < 0x7f);
      CHECK(std::string_view("&<>\"'").find(c) == std::string_view::npos);
    }
  }
}

TEST_CASE("shown_username: at most kShownUsernameBytes of the name, then ...") {
  using director::route::kShownUsernameBytes;
  using director::route::shown_username;
  const std::string exact(kShownUsernameBytes, 'a');
  CHECK(shown_username(exact) == exact);
  CHECK(shown_username(exact + "b") == exact + "...");
  CHECK(shown_username(std::string(10'000, '<')).size() == 4 * kShownUsernameBytes + 3);
}

TEST_CASE("retry is true only as the BOOL true") {
  const auto retry_of = [](std::vector<Argument> arguments) {
    const auto notify = notify_with({{"route", std::move(arguments)}});
    return director::route::find_route_request(notify)->retry;
  };
  CHECK(retry_of({{"user", std::string("jack")}, {"retry", true}}));
  CHECK(retry_of({{"retry", true}, {"user", std::string("jack")}}));
  CHECK_FALSE(retry_of({{"user", std::string("jack")}}));
  CHECK_FALSE(retry_of({{"user", std::string("jack")}, {"retry", false}}));
  CHECK_FALSE(retry_of({{"user", std::string("jack")}, {"retry", Null{}}}));
  CHECK_FALSE(retry_of({{"user", std::string("jack")}, {"retry", std::int32_t{1}}}));
  CHECK_FALSE(retry_of({{"user", std::string("jack")}, {"retry", std::string("true")}}));
  CHECK_FALSE(retry_of({{"user", std::string("jack")}, {"retryx", true}}));
  // The username is still found next to it.
  const auto notify = notify_with({{"route", {{"retry", true}, {"user", std::string("jack")}}}});
  CHECK(director::route::find_route_request(notify)->username == std::optional<std::string_view>("jack"));
}

TEST_CASE("hold is sent with an alive answer that HAProxy may reuse, in ms, clamped") {
  Answer answer;
  answer.alive = true;
  answer.label = "jack";
  answer.host = "vscode-jack";
  answer.address = boost::asio::ip::make_address("127.0.1.5");
  answer.port = 8080;
  answer.hold = std::chrono::milliseconds(45'000);
  REQUIRE(find_var(director::route::to_actions(answer), "hold"));
  CHECK(find_var(director::route::to_actions(answer), "hold")->value == Value{std::int32_t{45'000}});
  CHECK(find_var(director::route::to_actions(answer), "hold")->scope == Scope::transaction);

  answer.hold = std::chrono::hours(24 * 30);  // beyond INT32 milliseconds: clamped
  CHECK(find_var(director::route::to_actions(answer), "hold")->value == Value{std::int32_t{INT32_MAX}});

  answer.hold = std::chrono::milliseconds(0);  // HAProxy may not reuse it: omitted
  CHECK_FALSE(find_var(director::route::to_actions(answer), "hold"));
  answer.hold = std::chrono::microseconds(300);  // below one ms: 0 ms, omitted
  CHECK_FALSE(find_var(director::route::to_actions(answer), "hold"));

  answer.hold = std::chrono::milliseconds(500);
  answer.alive = false;  // never for a not-alive answer, whatever hold says
  CHECK_FALSE(find_var(director::route::to_actions(answer), "hold"));
}

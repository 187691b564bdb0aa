#include "core/wake_policy.hpp"

#include <catch2/catch.hpp>

#include <optional>
#include <string_view>

using namespace director::spawner::core;

namespace {

using Header = std::optional<std::string_view>;
constexpr Header none = std::nullopt;

// Accept values as browsers send them.
constexpr std::string_view chrome_navigation_accept =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,"
    "application/signed-exchange;v=b3;q=0.7";
constexpr std::string_view firefox_navigation_accept =
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
constexpr std::string_view chrome_image_accept = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";

struct Case {
  const char* what;
  RequestSignals request;
  WakeVerdict verdict;
};

}  // namespace

TEST_CASE("only page navigations wake: real browser and client header sets", "[wake_policy]") {
  const Case cases[] = {
      {"Chrome navigation (secure origin)", {"GET", "navigate", "document", chrome_navigation_accept, false}, WakeVerdict::wake},
      {"Chrome navigation in an iframe", {"GET", "navigate", "iframe", chrome_navigation_accept, false}, WakeVerdict::wake},
      {"navigation without Sec-Fetch-Dest", {"GET", "navigate", none, chrome_navigation_accept, false}, WakeVerdict::wake},
      {"Safari navigation, HEAD", {"HEAD", "navigate", "document", "text/html", false}, WakeVerdict::wake},
      {"Firefox over plain HTTP (no Sec-Fetch-*)", {"GET", none, none, firefox_navigation_accept, false}, WakeVerdict::wake},
      {"HEAD with an HTML Accept, no Sec-Fetch-*", {"HEAD", none, none, "text/html", false}, WakeVerdict::wake},
      {"media type case and parameters ignored", {"GET", none, none, "TEXT/HTML ; charset=utf-8", false}, WakeVerdict::wake},
      {"fetch()", {"GET", "cors", "empty", "*/*", false}, WakeVerdict::refuse},
      {"fetch() asking for HTML", {"GET", "cors", "empty", "text/html", false}, WakeVerdict::refuse},
      {"XHR for JSON", {"GET", "cors", "empty", "application/json, text/plain, */*", false}, WakeVerdict::refuse},
      {"same-origin fetch", {"GET", "same-origin", "empty", "*/*", false}, WakeVerdict::refuse},
      {"WebSocket upgrade", {"GET", "websocket", "websocket", none, true}, WakeVerdict::refuse},
      {"WebSocket upgrade over plain HTTP", {"GET", none, none, none, true}, WakeVerdict::refuse},
      {"upgrade even on a navigation", {"GET", "navigate", "document", chrome_navigation_accept, true}, WakeVerdict::refuse},
      {"favicon", {"GET", "no-cors", "image", chrome_image_accept, false}, WakeVerdict::refuse},
      {"favicon over plain HTTP", {"GET", none, none, chrome_image_accept, false}, WakeVerdict::refuse},
      {"script", {"GET", "no-cors", "script", "*/*", false}, WakeVerdict::refuse},
      {"stylesheet", {"GET", "no-cors", "style", "text/css,*/*;q=0.1", false}, WakeVerdict::refuse},
      {"image", {"GET", "no-cors", "image", chrome_image_accept, false}, WakeVerdict::refuse},
      {"service worker script", {"GET", "same-origin", "serviceworker", "*/*", false}, WakeVerdict::refuse},
      {"navigation into an <object>", {"GET", "navigate", "object", chrome_navigation_accept, false}, WakeVerdict::refuse},
      {"curl default", {"GET", none, none, "*/*", false}, WakeVerdict::refuse},
      {"uptime monitor without Accept", {"GET", none, none, none, false}, WakeVerdict::refuse},
      {"uptime monitor HEAD */*", {"HEAD", none, none, "*/*", false}, WakeVerdict::refuse},
      {"text/* is not text/html", {"GET", none, none, "text/*", false}, WakeVerdict::refuse},
      {"text/html refused with q=0", {"GET", none, none, "text/html;q=0, */*", false}, WakeVerdict::refuse},
      {"text/html with q=0.000", {"GET", none, none, "text/html; q=0.000", false}, WakeVerdict::refuse},
      {"text/html with q=0.001 still counts", {"GET", none, none, "text/html;q=0.001", false}, WakeVerdict::wake},
      {"Sec-Fetch-Dest without Sec-Fetch-Mode", {"GET", none, "document", "text/html", false}, WakeVerdict::refuse},
      {"form POST navigation", {"POST", "navigate", "document", chrome_navigation_accept, false}, WakeVerdict::refuse},
      {"lower-case method is another method", {"get", none, none, "text/html", false}, WakeVerdict::refuse},
      {"empty Accept", {"GET", none, none, "", false}, WakeVerdict::refuse},
      {"Accept of commas", {"GET", none, none, ",,;,", false}, WakeVerdict::refuse},
      {"only Sec-Fetch-Site, with an HTML Accept (HAProxy refuses it too)",
       {"GET", none, none, "text/html", false, true}, WakeVerdict::refuse},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    CHECK(decide_wake(c.request) == c.verdict);
  }
}

TEST_CASE("a refused request gets JSON when it names JSON and not HTML", "[wake_policy]") {
  CHECK(prefers_json(std::string_view("application/json, text/plain, */*")));
  CHECK(prefers_json(std::string_view("application/problem+json")));
  CHECK(prefers_json(std::string_view("Application/JSON")));
  CHECK(prefers_json(std::string_view("application/json;charset=utf-8")));
  CHECK_FALSE(prefers_json(std::nullopt));
  CHECK_FALSE(prefers_json(std::string_view("*/*")));
  CHECK_FALSE(prefers_json(std::string_view("")));
  CHECK_FALSE(prefers_json(std::string_view("text/html,application/json")));
  CHECK_FALSE(prefers_json(std::string_view(chrome_navigation_accept)));
  CHECK_FALSE(prefers_json(std::string_view("application/json;q=0, */*")));
  CHECK_FALSE(prefers_json(std::string_view("application/jsonx")));
}

#include "feed/feed_url.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace director::feed;

namespace {

FeedUrl parsed(const char* text) {
  auto url = parse_feed_url(text);
  INFO(text);
  REQUIRE(url.has_value());
  return *url;
}

std::string refusal(const char* text) {
  auto url = parse_feed_url(text);
  INFO(text);
  REQUIRE_FALSE(url.has_value());
  return url.error();
}

}  // namespace

TEST_CASE("feed URLs: http://host:port/path", "[feed]") {
  CHECK(parsed("http://127.0.0.1:9181/events") == FeedUrl{"127.0.0.1", 9181, "/events"});
  CHECK(parsed("HTTP://spawner.example:80/") == FeedUrl{"spawner.example", 80, "/"});
  CHECK(parsed("http://director-spawner:9181/events?x=1") == FeedUrl{"director-spawner", 9181, "/events?x=1"});
  CHECK(parsed("http://[::1]:65535/events") == FeedUrl{"::1", 65535, "/events"});
  CHECK(to_string(parsed("http://[::1]:9181/events")) == "http://[::1]:9181/events");
  CHECK(to_string(parsed("Http://localhost:1/a/b")) == "http://localhost:1/a/b");
  CHECK(parsed("http://[::0001]:1/x").host == "::1");  // addresses as Asio prints them
}

TEST_CASE("feed URLs: anything else is refused with a message that says why", "[feed]") {
  CHECK(refusal("127.0.0.1:9181/events") ==
        "event feed URL \"127.0.0.1:9181/events\": no scheme (expected http://host:port/path, e.g. "
        "http://127.0.0.1:9181/events)");
  CHECK(refusal("https://a:1/events").find("https is not supported") != std::string::npos);
  CHECK(refusal("ftp://a:1/events").find("the scheme must be http") != std::string::npos);
  CHECK(refusal("http://user:pw@a:1/events").find("user info") != std::string::npos);
  CHECK(refusal("http://a:1").find("no path") != std::string::npos);
  CHECK(refusal("http://a/events").find("no port") != std::string::npos);
  CHECK(refusal("http://:1/events").find("no host") != std::string::npos);
  CHECK(refusal("http://a:0/events").find("the port must be") != std::string::npos);
  CHECK(refusal("http://a:65536/events").find("the port must be") != std::string::npos);
  CHECK(refusal("http://a:+1/events").find("the port must be") != std::string::npos);
  CHECK(refusal("http://a:/events").find("the port must be") != std::string::npos);
  CHECK(refusal("http://a:1x/events").find("the port must be") != std::string::npos);
  CHECK(refusal("http://a b:1/events").find("the host must be") != std::string::npos);
  CHECK(refusal("http://Spawner:1/events").find("DNS name (lowercase)") != std::string::npos);
  CHECK(refusal("http://a_b:1/events").find("the host must be") != std::string::npos);
  CHECK(refusal("http://-a:1/events").find("the host must be") != std::string::npos);
  CHECK(refusal("http://a..b:1/events").find("the host must be") != std::string::npos);
  CHECK(refusal("http://::1:1/events").find("the host must be") != std::string::npos);
  CHECK(refusal("http://[::1/events").find("closing ']'") != std::string::npos);
  CHECK(refusal("http://[nope]:1/events").find("not an IPv6 address") != std::string::npos);
  CHECK(refusal("http://[::1]/events").find("no port") != std::string::npos);
  CHECK(refusal("http://a:1/ev ents").find("visible ASCII") != std::string::npos);
  CHECK(refusal("http://a:1/events\r\nX: y").find("visible ASCII") != std::string::npos);
  CHECK(refusal("http://a:1/events#top").find("fragment") != std::string::npos);
  CHECK(refusal("").find("no scheme") != std::string::npos);
}

// server::resolver_options: the agent's --dns-server entries become net::Resolver options through
// the one parser of their grammar (the Resolver itself: tests/common/net/resolver_test.cpp).
#include "server/resolver.hpp"

#include "config/config.hpp"

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>

namespace asio = boost::asio;
using namespace std::chrono_literals;

TEST_CASE("the resolver takes exactly the DNS servers --check-config accepts", "[resolver]") {
  // One grammar, one parser (config::parse_dns_server): "[127.0.0.1]:53" passed --check-config
  // and then stopped the agent at startup, "[::1]" the other way round.
  asio::io_context io;
  for (const char* text : {"127.0.0.1", "127.0.0.1:5353", "::1", "[::1]", "[::1]:5353", "[127.0.0.1]:53",
                           "[127.0.0.1]", "::1:53", "127.0.0.1:0", "dns.example:53", "[::1]x"}) {
    INFO("server '" << text << "'");
    const std::string_view arguments[] = {"--check-config", "--dns-server", text};
    const auto checked =
        director::config::parse(arguments, [](std::string_view) { return std::optional<std::string>(); });
    const bool config_accepts = std::holds_alternative<director::config::Invocation>(checked);
    director::config::DnsSettings dns;
    dns.servers = {text};
    if (config_accepts) {
      const auto options = director::server::resolver_options(dns);
      REQUIRE(options.servers.size() == 1);
      CHECK_FALSE(director::net::Resolver::validate(options));
      CHECK_NOTHROW(director::net::Resolver(io.get_executor(), options));
    } else {
      CHECK_THROWS_WITH(director::server::resolver_options(dns), Catch::Contains(text));
    }
  }
}

TEST_CASE("the resolver options carry the configured servers, timeout and tries", "[resolver]") {
  director::config::DnsSettings dns;
  CHECK(director::server::resolver_options(dns).timeout == director::net::default_dns_timeout);
  CHECK(director::server::resolver_options(dns).tries == director::net::default_dns_tries);
  CHECK(director::server::resolver_options(dns).servers.empty());

  dns.servers = {"127.0.0.2", "[::1]:5353"};
  dns.timeout = 400ms;
  dns.tries = 3;
  const auto options = director::server::resolver_options(dns);
  REQUIRE(options.servers.size() == 2);
  CHECK(options.servers[0] == asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.2"), 53));
  CHECK(options.servers[1] == asio::ip::udp::endpoint(asio::ip::make_address("::1"), 5353));
  CHECK(options.timeout == 400ms);
  CHECK(options.tries == 3);
}

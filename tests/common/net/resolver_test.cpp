// Resolver against a real dnsmasq on 127.0.0.1 (dns_fixture.hpp): answers, errors,
// every lookup asking DNS afresh (observed in dnsmasq's query log), sharing of in-flight lookups,
// threads and shutdown.
#include "net/resolver.hpp"

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include "../../server/asio_test_support.hpp"
#include "dns_fixture.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using director::net::DnsOutcome;
using director::net::Resolver;
using director::net::ResolveResult;
using director::net::ResolverOptions;
using Endpoint = boost::asio::ip::udp::endpoint;
using director::test::Dnsmasq;
using director::test::gather;
using director::test::run_until_complete;

namespace Catch {
template <>
struct StringMaker<DnsOutcome> {
  static std::string convert(DnsOutcome outcome) {
    switch (outcome) {
      case DnsOutcome::ok:
        return "ok";
      case DnsOutcome::no_such_host:
        return "no_such_host";
      case DnsOutcome::error:
        return "error";
    }
    return "?";
  }
};
}  // namespace Catch

namespace {

asio::ip::address ip(const char* text) {
  return asio::ip::make_address(text);
}

ResolverOptions options_for(const Endpoint& server) {
  ResolverOptions options;
  options.servers = {server};
  return options;
}

// A UDP socket bound on 127.0.0.1 that never reads: a DNS server that never answers.
struct SilentDnsServer {
  explicit SilentDnsServer(asio::io_context& io)
      : socket(io, asio::ip::udp::endpoint(asio::ip::address_v4::loopback(), 0)) {}
  Endpoint endpoint() const { return socket.local_endpoint(); }
  asio::ip::udp::socket socket;
};

// A loopback port nobody listens on: queries get ICMP port unreachable (connection refused).
Endpoint dead_server() {
  asio::io_context io;
  asio::ip::udp::socket socket(io, asio::ip::udp::endpoint(asio::ip::address_v4::loopback(), 0));
  return socket.local_endpoint();
}

// Resolves, then records as `completed_as` how many lookups had completed (this one included).
asio::awaitable<ResolveResult> resolve_in_order(Resolver& resolver, std::string host,
                                                int& completed, int& completed_as) {
  ResolveResult result = co_await resolver.resolve(std::move(host));
  completed_as = ++completed;
  co_return result;
}

}  // namespace

TEST_CASE("DNS server entries become endpoints through the one parser of their grammar", "[resolver]") {
  using director::net::dns_server_endpoints;
  CHECK(dns_server_endpoints({}).empty());
  CHECK(dns_server_endpoints({"127.0.0.2", "127.0.0.1:5353", "::1", "[::1]", "[::1]:5353", "::1:53"}) ==
        std::vector<Endpoint>{Endpoint(ip("127.0.0.2"), 53), Endpoint(ip("127.0.0.1"), 5353), Endpoint(ip("::1"), 53),
                              Endpoint(ip("::1"), 53), Endpoint(ip("::1"), 5353),
                              Endpoint(ip("::1:53"), 53)});  // an IPv6 address, not ::1 port 53
  for (const char* entry : {"[127.0.0.1]:53", "[127.0.0.1]", "127.0.0.1:0", "dns.example:53", "[::1]x", ""}) {
    INFO("entry '" << entry << "'");
    CHECK_THROWS_AS(dns_server_endpoints({"127.0.0.1", entry}), std::invalid_argument);
    if (*entry != '\0') CHECK_THROWS_WITH(dns_server_endpoints({entry}), Catch::Contains(entry));
  }
}

TEST_CASE("bad options are rejected at startup with a message naming them", "[resolver]") {
  asio::io_context io;
  ResolverOptions options;
  CHECK_FALSE(Resolver::validate(options));

  options.servers = {Endpoint(ip("127.0.0.1"), 53), Endpoint(ip("127.0.0.2"), 0)};
  REQUIRE(Resolver::validate(options));
  CHECK_THAT(*Resolver::validate(options), Catch::Contains("127.0.0.2"));
  CHECK_THROWS_WITH(Resolver(io.get_executor(), options), Catch::Contains("127.0.0.2"));

  options.servers = {Endpoint(ip("0.0.0.0"), 53)};
  CHECK_THROWS_WITH(Resolver(io.get_executor(), options), Catch::Contains("0.0.0.0"));

  options.servers = {Endpoint(ip("::1"), 5353)};
  CHECK_NOTHROW(Resolver(io.get_executor(), options));
  options.timeout = 0ms;
  CHECK_THROWS_AS(Resolver(io.get_executor(), options), std::runtime_error);
  options.timeout = 100ms;
  options.tries = 0;
  CHECK_THROWS_WITH(Resolver(io.get_executor(), options), Catch::Contains("tries"));
}

TEST_CASE("a known host resolves to its address and TTL", "[resolver]") {
  Dnsmasq dns({.local_ttl = 7, .hosts = "127.0.1.5 vscode-jack\n"});
  asio::io_context io;
  Resolver resolver(io.get_executor(), options_for(dns.endpoint()));

  const ResolveResult result = run_until_complete(io, resolver.resolve("vscode-jack"));
  CHECK(result.outcome == DnsOutcome::ok);
  CHECK(result.addresses == std::vector{ip("127.0.1.5")});
  CHECK(result.ttl == 7s);
}

TEST_CASE("IPv4 addresses come first, then IPv6", "[resolver]") {
  Dnsmasq dns({.hosts = "::1 vscode-dual\nfd00::7 vscode-dual\n127.0.1.7 vscode-dual\n"
                        "fd00::8 vscode-six\n"});
  asio::io_context io;
  Resolver resolver(io.get_executor(), options_for(dns.endpoint()));

  const ResolveResult dual = run_until_complete(io, resolver.resolve("vscode-dual"));
  CHECK(dual.outcome == DnsOutcome::ok);
  REQUIRE(dual.addresses.size() == 3);
  CHECK(dual.addresses[0] == ip("127.0.1.7"));
  CHECK(dual.addresses[1].is_v6());
  CHECK(dual.addresses[2].is_v6());

  const ResolveResult six = run_until_complete(io, resolver.resolve("vscode-six"));
  CHECK(six.outcome == DnsOutcome::ok);
  CHECK(six.addresses == std::vector{ip("fd00::8")});
}

TEST_CASE("an unknown host is no_such_host", "[resolver]") {
  Dnsmasq dns({.hosts = "127.0.1.5 vscode-jack\n"});
  asio::io_context io;
  Resolver resolver(io.get_executor(), options_for(dns.endpoint()));

  const ResolveResult result = run_until_complete(io, resolver.resolve("vscode-nobody"));
  CHECK(result.outcome == DnsOutcome::no_such_host);
  CHECK(result.addresses.empty());
  CHECK(result.ttl == 0s);
}

TEST_CASE("a numeric host needs no query", "[resolver]") {
  asio::io_context io;
  Resolver resolver(io.get_executor(), options_for(dead_server()));
  const ResolveResult result = run_until_complete(io, resolver.resolve("127.0.0.9"));
  CHECK(result.outcome == DnsOutcome::ok);
  CHECK(result.addresses == std::vector{ip("127.0.0.9")});
}

TEST_CASE("the system configuration is used when no server is given", "[resolver]") {
  asio::io_context io;
  Resolver resolver(io.get_executor(), ResolverOptions{});
  // Numeric, so that the test never queries a real network server.
  CHECK(run_until_complete(io, resolver.resolve("127.0.0.10")).outcome == DnsOutcome::ok);
}

TEST_CASE("a server that refuses is an error, not no_such_host", "[resolver]") {
  Dnsmasq refusing({.authoritative = false, .hosts = "127.0.1.5 vscode-jack\n"});
  asio::io_context io;
  Resolver resolver(io.get_executor(), options_for(refusing.endpoint()));
  CHECK(run_until_complete(io, resolver.resolve("vscode-nobody")).outcome == DnsOutcome::error);
}

TEST_CASE("every lookup asks DNS: changes are seen at once, whatever the answer's TTL", "[resolver]") {
  Dnsmasq dns({.local_ttl = 600, .hosts = "127.0.1.5 vscode-jack\n"});
  asio::io_context io;
  Resolver resolver(io.get_executor(), options_for(dns.endpoint()));

  const ResolveResult first = run_until_complete(io, resolver.resolve("vscode-jack"));
  CHECK(first.addresses == std::vector{ip("127.0.1.5")});
  CHECK(first.ttl == 600s);  // reported, never used to reuse the answer
  CHECK(dns.wait_for_queries("vscode-jack", 1) == 1);
  dns.set_hosts("127.0.1.6 vscode-jack\n");  // the address went to another container
  CHECK(run_until_complete(io, resolver.resolve("vscode-jack")).addresses == std::vector{ip("127.0.1.6")});
  dns.set_hosts("");
  CHECK(run_until_complete(io, resolver.resolve("vscode-jack")).outcome == DnsOutcome::no_such_host);
  dns.set_hosts("127.0.1.7 vscode-jack\n");
  CHECK(run_until_complete(io, resolver.resolve("vscode-jack")).addresses == std::vector{ip("127.0.1.7")});
  CHECK(dns.wait_for_queries("vscode-jack", 4) == 4);
}

TEST_CASE("concurrent lookups of one host share one query", "[resolver]") {
  Dnsmasq dns({.hosts = "127.0.1.5 vscode-jack\n"});
  asio::io_context io;
  Resolver resolver(io.get_executor(), options_for(dns.endpoint()));

  std::vector<asio::awaitable<ResolveResult>> lookups;
  for (int i = 0; i < 50; ++i) lookups.push_back(resolver.resolve("vscode-jack"));
  const auto results = run_until_complete(io, gather(std::move(lookups)));
  for (const auto& result : results) {
    CHECK(result.outcome == DnsOutcome::ok);
    CHECK(result.addresses == std::vector{ip("127.0.1.5")});
  }
  std::this_thread::sleep_for(100ms);  // let dnsmasq log any stray query
  CHECK(dns.queries("vscode-jack") == 1);
  CHECK(dns.queries("vscode-jack", "AAAA") == 1);
}

TEST_CASE("200 concurrent lookups of different hosts all complete", "[resolver]") {
  std::string hosts;
  for (int i = 0; i < 200; ++i) {
    hosts += "127.0.2." + std::to_string(i) + " vscode-user" + std::to_string(i) + "\n";
  }
  Dnsmasq dns({.hosts = hosts});
  asio::io_context io;
  Resolver resolver(io.get_executor(), options_for(dns.endpoint()));

  std::vector<asio::awaitable<ResolveResult>> lookups;
  for (int i = 0; i < 200; ++i)
    lookups.push_back(resolver.resolve("vscode-user" + std::to_string(i)));
  lookups.push_back(resolver.resolve("vscode-nobody"));
  const auto results = run_until_complete(io, gather(std::move(lookups)));
  for (int i = 0; i < 200; ++i) {
    const auto& result = results[static_cast<std::size_t>(i)];
    INFO("vscode-user" << i);
    CHECK(result.outcome == DnsOutcome::ok);
    CHECK(result.addresses == std::vector{ip(("127.0.2." + std::to_string(i)).c_str())});
  }
  CHECK(results.back().outcome == DnsOutcome::no_such_host);
}

TEST_CASE("a dead server is an error and blocks nothing else", "[resolver]") {
  Dnsmasq dns({.hosts = "127.0.1.5 vscode-jack\n"});
  asio::io_context io;
  SilentDnsServer silent(io);
  const bool never_answers = GENERATE(true, false);
  const Endpoint server = never_answers ? silent.endpoint() : dead_server();
  INFO((never_answers ? "silent server " : "closed port ") << server);

  ResolverOptions dead_options = options_for(server);
  dead_options.timeout = 300ms;
  dead_options.tries = 2;
  Resolver dead(io.get_executor(), dead_options);
  Resolver alive(io.get_executor(), options_for(dns.endpoint()));

  int completed = 0;
  int dead_completed_as = 0;
  int alive_completed_as = 0;
  const auto started = std::chrono::steady_clock::now();
  std::vector<asio::awaitable<ResolveResult>> lookups;
  lookups.push_back(resolve_in_order(dead, "vscode-jack", completed, dead_completed_as));
  lookups.push_back(resolve_in_order(alive, "vscode-jack", completed, alive_completed_as));
  const auto results = run_until_complete(io, gather(std::move(lookups)));

  CHECK(results[0].outcome == DnsOutcome::error);
  CHECK(results[1].outcome == DnsOutcome::ok);
  if (never_answers) {
    CHECK(alive_completed_as == 1);
    CHECK(dead_completed_as == 2);
  }
  // 300 ms, then 600 ms for the second try: well within 5 s.
  CHECK(std::chrono::steady_clock::now() - started < 5s);
}

TEST_CASE("a server that went away is an error", "[resolver]") {
  Dnsmasq dns({.local_ttl = 60, .hosts = "127.0.1.5 vscode-jack\n"});
  asio::io_context io;
  ResolverOptions options = options_for(dns.endpoint());
  options.timeout = 200ms;
  Resolver resolver(io.get_executor(), options);
  CHECK(run_until_complete(io, resolver.resolve("vscode-jack")).outcome == DnsOutcome::ok);
  dns.stop();
  CHECK(run_until_complete(io, resolver.resolve("vscode-jack")).outcome == DnsOutcome::error);
}

TEST_CASE("shutdown completes pending lookups with error", "[resolver]") {
  asio::io_context io;
  SilentDnsServer silent(io);
  ResolverOptions options = options_for(silent.endpoint());
  options.timeout = 10s;  // only shutdown can end these lookups in time
  options.tries = 1;

  SECTION("shutdown()") {
    Resolver resolver(io.get_executor(), options);
    const auto started = std::chrono::steady_clock::now();
    const auto results =
        run_until_complete(io, [&]() -> asio::awaitable<std::vector<ResolveResult>> {
          std::vector<asio::awaitable<ResolveResult>> lookups;
          for (int i = 0; i < 10; ++i)
            lookups.push_back(resolver.resolve("vscode-" + std::to_string(i % 3)));
          asio::steady_timer soon(co_await asio::this_coro::executor, 50ms);
          soon.async_wait([&](boost::system::error_code) { resolver.shutdown(); });
          co_return co_await gather(std::move(lookups));
        }());
    for (const auto& result : results) CHECK(result.outcome == DnsOutcome::error);
    CHECK(std::chrono::steady_clock::now() - started < 5s);
    CHECK(run_until_complete(io, resolver.resolve("127.0.0.1")).outcome == DnsOutcome::error);
  }

  SECTION("destroying the Resolver releases every wait") {
    auto resolver = std::make_unique<Resolver>(io.get_executor(), options);
    std::vector<ResolveResult> results;
    for (int i = 0; i < 10; ++i) {
      asio::co_spawn(io, resolver->resolve("vscode-" + std::to_string(i % 3)),
                     [&](std::exception_ptr, ResolveResult result) { results.push_back(result); });
    }
    io.run_for(50ms);
    CHECK(results.empty());
    resolver.reset();
    silent.socket.close();
    io.restart();
    io.run();  // returns only once no socket wait, timer or lookup is left
    REQUIRE(results.size() == 10);
    for (const auto& result : results) CHECK(result.outcome == DnsOutcome::error);
  }

  SECTION("destroying the execution context with lookups pending leaks nothing") {
    auto context = std::make_unique<asio::io_context>();
    auto resolver = std::make_unique<Resolver>(context->get_executor(), options);
    for (int i = 0; i < 10; ++i) {
      asio::co_spawn(*context, resolver->resolve("vscode-" + std::to_string(i)), asio::detached);
    }
    context->run_for(50ms);
    resolver.reset();
    context.reset();  // LeakSanitizer reports at exit if anything stayed behind
  }
}

TEST_CASE("a cancelled lookup completes at once with error", "[resolver]") {
  using namespace asio::experimental::awaitable_operators;
  asio::io_context io;
  SilentDnsServer silent(io);
  ResolverOptions options = options_for(silent.endpoint());
  options.timeout = 10s;
  options.tries = 1;
  Resolver resolver(io.get_executor(), options);

  const auto started = std::chrono::steady_clock::now();
  const auto winner = run_until_complete(io, [&]() -> asio::awaitable<std::size_t> {
    asio::steady_timer deadline(co_await asio::this_coro::executor, 50ms);
    const auto first =
        co_await (resolver.resolve("vscode-jack") || deadline.async_wait(asio::use_awaitable));
    co_return first.index();
  }());
  CHECK(winner == 1);
  CHECK(std::chrono::steady_clock::now() - started < 5s);
}

TEST_CASE("lookups from other threads complete on the caller's executor", "[resolver]") {
  Dnsmasq dns({.hosts = "127.0.1.5 vscode-jack\n127.0.1.6 vscode-jill\n"});

  // The resolver's strand runs on its own io_context and thread.
  asio::io_context dns_io;
  auto dns_work = asio::make_work_guard(dns_io);
  std::thread dns_thread([&] { dns_io.run(); });
  ResolverOptions options = options_for(dns.endpoint());
  auto resolver = std::make_unique<Resolver>(dns_io.get_executor(), options);

  // Callers: 4 threads, each coroutine on its own strand.
  asio::io_context callers;
  std::atomic<int> ok{0};
  std::atomic<int> on_own_strand{0};
  constexpr int lookup_count = 200;
  for (int i = 0; i < lookup_count; ++i) {
    auto strand = asio::make_strand(callers);
    asio::co_spawn(
        strand,
        [&, strand, i]() -> asio::awaitable<void> {
          const auto result =
              co_await resolver->resolve(i % 2 == 0 ? "vscode-jack" : "vscode-jill");
          if (strand.running_in_this_thread()) ++on_own_strand;
          if (result.outcome == DnsOutcome::ok) ++ok;
        },
        asio::detached);
  }
  std::vector<std::thread> caller_threads;
  for (int i = 0; i < 4; ++i) caller_threads.emplace_back([&] { callers.run(); });
  for (auto& thread : caller_threads) thread.join();  // run() returns once every lookup came back

  CHECK(ok == lookup_count);
  CHECK(on_own_strand == lookup_count);
  resolver.reset();
  dns_work.reset();
  dns_thread.join();
}

// Asynchronous DNS lookups with c-ares, driven by Boost.Asio: the event loop never blocks on DNS.
//
// Threading contract: resolve() may be called from any thread and any executor. The c-ares channel
// (not thread-safe in 1.18) lives on a strand of the executor given to the constructor and is only
// touched there; each result is delivered on the executor of the coroutine that asked for it.
// Lookups of the same host share one query on the wire, positive answers are cached for
// min(answer TTL, max_cache_ttl), and a lookup whose awaiting coroutine is cancelled (e.g. it lost
// an `||` race against a timer) completes at once with DnsOutcome::error.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "decision/director.hpp"

namespace director::server {

struct ResolverOptions {
  // DNS servers as "ip" or "ip:port" (IPv6: "::1" or "[::1]:53"). Empty: the system's
  // /etc/resolv.conf (servers, search domains, ndots; read once, at construction) and /etc/hosts
  // (which c-ares 1.18 reads on every lookup, on the strand). Non-empty: only these servers,
  // names are queried exactly as given (no search domains, no /etc/hosts).
  std::vector<std::string> servers;
  // Time to wait for one answer. c-ares doubles it on every round over the servers, so with
  // unresponsive servers a lookup fails after servers * timeout * (2^tries - 1): 1.2 s with the
  // defaults and one server.
  std::chrono::milliseconds timeout{400};
  int tries{2};  // rounds over the server list before a lookup fails
  // Positive answers are reused for min(answer TTL, max_cache_ttl); 0 disables the cache.
  std::chrono::seconds max_cache_ttl{5};
  std::size_t cache_capacity{100000};  // hosts kept; 0 disables the cache
};

struct ResolveResult {
  decision::DnsOutcome outcome = decision::DnsOutcome::error;
  // Set when outcome is ok, never empty then: IPv4 addresses first, then IPv6, each family in the
  // server's order, without duplicates.
  std::vector<boost::asio::ip::address> addresses;
  // How much longer the answer is valid according to DNS (the smallest record TTL, minus the time
  // spent in the cache). 0 when outcome is not ok.
  std::chrono::seconds ttl{0};
};

// One parsed entry of ResolverOptions::servers.
struct DnsServer {
  boost::asio::ip::address address;
  std::uint16_t port = 53;
};

class Resolver {
 public:
  // Throws std::runtime_error, with a message naming the bad value, when the options are invalid
  // (see validate()) or c-ares cannot be initialised. The only place this class throws.
  Resolver(boost::asio::any_io_executor executor, ResolverOptions options);

  // Same as shutdown(): the lookups still pending complete with DnsOutcome::error. Like any I/O
  // object, a Resolver must be destroyed before the execution context of its executor.
  ~Resolver();

  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;
  Resolver(Resolver&&) = delete;
  Resolver& operator=(Resolver&&) = delete;

  // Parses one server string: "ip", "ip:port", "[ipv6]" or "[ipv6]:port" (port 1-65535).
  // std::nullopt when it is anything else (hostnames are not accepted).
  static std::optional<DnsServer> parse_server(std::string_view text);

  // Why `options` would be rejected by the constructor, or std::nullopt when they are valid.
  static std::optional<std::string> validate(const ResolverOptions& options);

  // Resolves `host` to its IPv4 and IPv6 addresses. ok: at least one address;
  // no_such_host: the server said the name does not exist or has no address (NXDOMAIN, NODATA);
  // error: anything else (timeout, refused, server failure, shutdown, cancellation).
  // `bypass_cache` skips the cache (joining a lookup already on the wire, which is fresh) and the
  // answer refreshes the cache. Failures are values: like any Asio operation it throws only
  // when awaited by a coroutine that was already cancelled. The Resolver must be alive when the
  // returned awaitable is first awaited; it may be destroyed while the lookup is pending, which
  // then completes with error.
  boost::asio::awaitable<ResolveResult> resolve(std::string host, bool bypass_cache = false);

  // Stops the resolver: pending and later lookups complete with DnsOutcome::error, sockets and
  // timers are released. Idempotent, callable from any thread, does not wait.
  void shutdown();

 private:
  class Engine;  // the c-ares channel, its sockets and the cache, confined to the strand
  std::shared_ptr<Engine> engine_;
};

}  // namespace director::server

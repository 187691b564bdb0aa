// Asynchronous DNS lookups with c-ares, driven by Boost.Asio: the event loop never blocks on DNS.
//
// Threading contract: resolve() may be called from any thread and any executor. The c-ares channel
// (not thread-safe in 1.18) lives on a strand of the executor given to the constructor and is only
// touched there; each result is delivered on the executor of the coroutine that asked for it, so
// a coroutine on a strand (the agent's checks, the spawner's readiness wait) resumes on its
// strand. One Resolver serves a whole program (the agent's checks, the spawner's waits).
// Every lookup asks DNS: nothing is cached (a cached address could route a user into the
// container that took that address over: docs/security.md). Lookups of the same host that are
// pending at the same time share one query on the wire, and a lookup whose awaiting coroutine is
// cancelled (e.g. it lost an `||` race against a timer) completes at once with DnsOutcome::error.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/udp.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "net/probe_types.hpp"

namespace director::net {

struct ResolverOptions {
  // DNS servers: address and port (the same port for UDP and TCP), already parsed (the
  // configuration's entries: dns_server_endpoints). Empty: the system's /etc/resolv.conf (servers, search domains,
  // ndots; read once, at construction) and /etc/hosts (which c-ares 1.18 reads on every lookup,
  // on the strand). Non-empty: only these servers, names are queried exactly as given (no search
  // domains, no /etc/hosts).
  std::vector<boost::asio::ip::udp::endpoint> servers;
  // Time to wait for one answer. c-ares doubles it on every round over the servers, so with
  // unresponsive servers a lookup fails after servers * timeout * (2^tries - 1): 750 ms with the
  // defaults and one server.
  std::chrono::milliseconds timeout = default_dns_timeout;
  int tries = default_dns_tries;  // rounds over the server list before a lookup fails
};

struct ResolveResult {
  DnsOutcome outcome = DnsOutcome::error;
  // Set when outcome is ok, never empty then: IPv4 addresses first, then IPv6, each family in the
  // server's order, without duplicates.
  std::vector<boost::asio::ip::address> addresses;
  // How long the answer is valid according to DNS (the smallest record TTL); 0 when outcome is
  // not ok. For information only: nothing here reuses an answer.
  std::chrono::seconds ttl{0};
};

// The servers of DNS server entries in the --dns-server grammar (the agent's --dns-server, the
// spawner's SPAWNER_DNS_SERVER), each read by config_table::parse_dns_server, the one parser of
// that grammar. Throws std::invalid_argument naming an entry it cannot read (for startup: the
// configuration has validated them already).
std::vector<boost::asio::ip::udp::endpoint> dns_server_endpoints(const std::vector<std::string>& entries);

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

  // Why `options` would be rejected by the constructor, or std::nullopt when they are valid.
  static std::optional<std::string> validate(const ResolverOptions& options);

  // Resolves `host` to its IPv4 and IPv6 addresses. ok: at least one address;
  // no_such_host: the server said the name does not exist or has no address (NXDOMAIN, NODATA);
  // error: anything else (timeout, refused, server failure, shutdown, cancellation).
  // A lookup of a host already on the wire is joined: its answer is as fresh. Failures are values: like any Asio operation it throws only
  // when awaited by a coroutine that was already cancelled. The Resolver must be alive when the
  // returned awaitable is first awaited; it may be destroyed while the lookup is pending, which
  // then completes with error.
  boost::asio::awaitable<ResolveResult> resolve(std::string host);

  // Stops the resolver: pending and later lookups complete with DnsOutcome::error, sockets and
  // timers are released. Idempotent, callable from any thread, does not wait.
  void shutdown();

 private:
  class Engine;  // the c-ares channel and its sockets, confined to the strand
  std::shared_ptr<Engine> engine_;
};

}  // namespace director::net

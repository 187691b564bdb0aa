// Liveness probe of one container endpoint: a TCP connect, optionally followed by one HTTP GET
// whose status line decides. Runs on the awaiting coroutine's executor, which must be a strand
// when several threads run its context (it races the connect against its deadline with Asio's
// awaitable operators; the agent's DecisionService runs each check on a strand of its own, the
// spawner's readiness wait runs on its strand). Any number of probes may run concurrently (each
// has its own socket and deadline). Shared by the agent (liveness) and the spawner ("the port
// accepts").
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <optional>
#include <string>

#include "net/probe_types.hpp"

namespace director::net {

struct ProbeOptions {
  // Bound on the whole probe: connect, request and status line.
  std::chrono::milliseconds timeout = default_probe_timeout;
  // Empty: the probe is a TCP connect only. Otherwise the request target of a GET, starting
  // with '/', printable ASCII without spaces (see validate()).
  std::string http_path;
  // Host header of the GET. Empty: the endpoint, "ip:port" ("[ipv6]:port").
  std::string http_host;
};

struct ProbeResult {
  ProbeOutcome outcome = ProbeOutcome::not_run;
  std::chrono::steady_clock::duration latency{};  // from the start to the outcome
};

// Why `options` cannot be used (a message naming the value), or std::nullopt when they can.
// Meant for configuration checks at startup; probe() treats invalid options as a failed probe.
std::optional<std::string> validate(const ProbeOptions& options);

// Probes `endpoint`. Failures are values (it throws only when awaited by an already-cancelled
// coroutine, like any Asio operation); the socket is closed when it returns.
//   ok:      connected (and, with http_path, a status line with status < 500 arrived)
//   refused: the connection was refused (nothing listens on the port)
//   timeout: no connection, or no complete status line, within options.timeout
//   failed:  any other connect error (e.g. host unreachable), or with http_path: status >= 500,
//            a response that is not HTTP, or the connection closed before a status line;
//            also invalid options
boost::asio::awaitable<ProbeResult> probe(boost::asio::ip::tcp::endpoint endpoint,
                                          ProbeOptions options);

}  // namespace director::net

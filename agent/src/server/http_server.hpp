// The HTTP listener for Prometheus and operators: GET /metrics, /healthz, /readyz, /status and
// /users (docs/metrics.md, "HTTP endpoints", is the contract). With the SPOP server, the only code
// that touches sockets.
//
// Deliberately small HTTP/1.1: one request per connection (every response carries
// `Connection: close`), GET only (405 otherwise), a request head (request line and headers) of at
// most HttpLimits::max_request_head_bytes (414 when the request line does not end within it, 431
// when the headers do not), request bodies ignored, one deadline for the whole exchange, and a cap
// on concurrent connections (beyond it: 503, then close). Thread-safe.
#pragma once

#include "config/config.hpp"
#include "metrics/metrics.hpp"
#include "server/checker.hpp"
#include "server/server.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace director::server {

struct HttpLimits {
  std::size_t max_request_head_bytes = 8192;         // request line + headers + the empty line
  std::chrono::milliseconds exchange_timeout{5000};  // to read the request and write the response
  std::size_t max_connections = 32;                  // concurrent exchanges; beyond: 503 and close
  // Readiness: DNS counts as failing while the most recent lookup failed and is at most this old.
  std::chrono::seconds dns_failure_window{60};
};

// What the endpoints report on. Everything referenced must outlive the HttpServer.
struct HttpSources {
  const config::Config& config;
  const metrics::Metrics& metrics;
  const Checker& checker;
  const Server& spop_server;
};

// Why the agent is not ready; empty when it is.
struct Readiness {
  std::vector<std::string> problems;
  bool ready() const noexcept { return problems.empty(); }
};

// The /readyz rule, a pure function. Ready when the SPOP listener accepts connections and DNS is
// not failing: DNS fails while the most recent lookup of any check ended in error and is at most
// `dns_failure_window` old. No lookups at all is no evidence of failure: ready. Cheap: it reads
// what the checks recorded and sends no query of its own.
Readiness evaluate_readiness(bool spop_listening, const Checker::DnsHealth& dns, decision::TimePoint now,
                             std::chrono::seconds dns_failure_window);

class HttpServer {
 public:
  // Binds and listens at once; throws std::runtime_error naming the address when it cannot.
  HttpServer(boost::asio::io_context& context, const boost::asio::ip::tcp::endpoint& listen, HttpSources sources,
             HttpLimits limits = {});
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  ~HttpServer();

  void start();
  // Stops accepting; exchanges in progress finish within their deadline. Safe from any thread.
  void stop();

  boost::asio::ip::tcp::endpoint local_endpoint() const;

 private:
  // What every exchange needs; shared with the exchange coroutines, which may outlive the server
  // when the io_context is stopped with exchanges suspended.
  struct Shared {
    HttpSources sources;
    HttpLimits limits;
    decision::TimePoint started;
    std::atomic<std::size_t> active{0};    // exchanges in progress
    std::atomic<std::size_t> refusing{0};  // connections being answered 503 beyond the cap
  };

  boost::asio::awaitable<void> accept_loop();
  // Reads one request and answers it; or, when `refuse`, answers 503 without reading.
  static boost::asio::awaitable<void> exchange(boost::asio::ip::tcp::socket socket, std::shared_ptr<Shared> shared,
                                               bool refuse);

  boost::asio::io_context& context_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<Shared> shared_;
};

}  // namespace director::server

// director-agent: the SPOE agent that decides, for each request HAProxy offloads, whether the
// user's container is alive (route there) or not (route to the spawner).
#include "config/config.hpp"
#include "metrics/metrics.hpp"
#include "server/decision_service.hpp"
#include "server/http_endpoints.hpp"
#include "log/log.hpp"
#include "process/run_loop.hpp"
#include "net/health_probe.hpp"
#include "server/resolver.hpp"
#include "server/server.hpp"

#include <boost/asio/io_context.hpp>

#include <csignal>
#include <exception>
#include <iostream>
#include <sstream>
#include <vector>

namespace {

using director::config::LogLevel;
using director::log;

constexpr auto stop_grace = std::chrono::milliseconds(2000);
constexpr auto stop_deadline = std::chrono::milliseconds(5000);

// --health: whether the agent running with `config` is ready (its GET /readyz), for container
// health checks. Exit 0 when ready, 1 with the reason on stderr otherwise.
int health(const director::config::Config& config) {
  constexpr auto health_timeout = std::chrono::milliseconds(1000);  // within the HEALTHCHECK's 2 s
  if (config.http_listen.port() == 0) {
    std::cerr << "director-agent: not healthy: http_listen has port 0, so the port the agent bound is unknown; "
                 "give --health the agent's actual DIRECTOR_HTTP_LISTEN\n";
    return 1;
  }
  const auto target = director::net::health_target(config.http_listen);
  if (const auto problem = director::net::readiness_problem(target, health_timeout, "director-agent --health")) {
    std::cerr << "director-agent: not healthy: " << *problem << '\n';
    return 1;
  }
  return 0;
}

// The graceful stop that SIGTERM or SIGINT begins: both listeners close, each SPOP connection
// answers what is pending (for at most stop_grace), says AGENT-DISCONNECT and closes (a peer
// that stops reading meanwhile is closed after ConnectionLimits::closing_write_timeout), then
// the I/O threads end. At stop_deadline they end anyway.
void begin_stop(int signal, director::net::http::HttpServer& http, director::server::Server& server,
                director::process::StopOnce& stop) {
  log(LogLevel::info, "stopping: finishing in-flight work and disconnecting", {{"signal", std::to_string(signal)}});
  http.stop();
  server.stop(stop_grace, [&stop] { stop.finish(); });
  stop.arm(stop_deadline, "connections still open at the stop deadline; exiting anyway");
}

int run(const director::config::Config& config) {
  const auto threads = config.effective_threads();
  boost::asio::io_context context(static_cast<int>(threads));

  director::net::Resolver resolver(context.get_executor(), director::server::resolver_options(config.dns));

  director::metrics::Metrics metrics(director::config::version(), std::chrono::system_clock::now());
  director::server::DecisionService decision_service(context.get_executor(), config, resolver, metrics);
  director::server::ConnectionLimits limits;
  limits.max_frame_size = config.max_frame_size;
  limits.hello_timeout = config.hello_timeout;
  director::server::Server server(context, config.listen, decision_service, metrics, limits);
  director::net::http::HttpServer http(context, config.http_listen, "HTTP",
                                      director::server::http_endpoints({config, metrics, decision_service, server}));
  server.start();
  http.start();

  std::ostringstream spop_endpoint;
  std::ostringstream http_endpoint;
  spop_endpoint << server.local_endpoint();
  http_endpoint << http.local_endpoint();
  log(LogLevel::info, "director-agent started",
      {{"version", director::config::version()},
       {"listen", spop_endpoint.str()},
       {"http_listen", http_endpoint.str()},
       {"threads", std::to_string(threads)},
       {"config", director::config::to_json(config)}});

  director::process::StopOnce stop(context, [&resolver] { resolver.shutdown(); });
  director::process::run_until_stopped(context, threads, "agent",
                                       [&](int signal) { begin_stop(signal, http, server, stop); });
  log(LogLevel::info, "stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string_view> arguments(argv + 1, argv + argc);
  const auto parsed = director::config::parse(arguments, director::config::process_environment());
  if (const auto* error = std::get_if<std::string>(&parsed)) {
    std::cerr << "director-agent: " << *error << '\n';
    return 2;
  }
  const auto& invocation = std::get<director::config::Invocation>(parsed);
  switch (invocation.command) {
    case director::config::Command::help:
      director::config::print_help(std::cout);
      return 0;
    case director::config::Command::help_markdown:
      director::config::print_markdown(std::cout);
      return 0;
    case director::config::Command::version:
      std::cout << "director-agent " << director::config::version() << '\n';
      return 0;
    case director::config::Command::check_config:
      std::cout << director::config::to_json(invocation.config) << '\n';
      return 0;
    case director::config::Command::health:
      return health(invocation.config);
    case director::config::Command::run:
      break;
  }
  director::set_log_level(invocation.config.log_level);
  director::set_log_format(invocation.config.log_format);
  try {
    return run(invocation.config);
  } catch (const std::exception& error) {
    log(LogLevel::error, "director-agent failed", {{"error", error.what()}});
    return 1;
  }
}

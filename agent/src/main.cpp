// director-agent: the SPOE agent that decides, for each request HAProxy offloads, whether the
// user's container is alive (route there) or not (route to the spawner).
#include "config/config.hpp"
#include "metrics/metrics.hpp"
#include "server/decision_service.hpp"
#include "server/http_endpoints.hpp"
#include "log/log.hpp"
#include "process/program.hpp"
#include "process/run_loop.hpp"
#include "server/resolver.hpp"
#include "server/server.hpp"

#include <boost/asio/io_context.hpp>

#include <sstream>
#include <vector>

namespace {

using director::config::LogLevel;
using director::log;

constexpr auto stop_grace = std::chrono::milliseconds(2000);
constexpr auto stop_deadline = std::chrono::milliseconds(5000);

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
  namespace config = director::config;
  const director::process::Program<config::Config> program{
      "director-agent", "DIRECTOR_HTTP_LISTEN", config::parse, config::print_help, config::print_markdown, config::to_json,
      config::version, run};
  return director::process::main(program, argc, argv);
}

// director-spawner: creates, wakes and retires each user's container (docs/spawner.md). HAProxy
// sends it the users whose container is not alive; it shows them the loading page while it
// creates and starts their container through the Docker Engine API (Docker or Podman) or the
// Kubernetes API (a Pod per user).
#include "config/config.hpp"
#include "config/in_cluster.hpp"
#include "log/log.hpp"
#include "metrics/metrics.hpp"
#include "net/awaitable.hpp"
#include "net/http_client.hpp"
#include "net/http_server.hpp"
#include "net/resolver.hpp"
#include "process/program.hpp"
#include "process/run_loop.hpp"
#include "runtime/docker_runtime.hpp"
#include "runtime/kubernetes_runtime.hpp"
#include "server/endpoints.hpp"
#include "server/event_feed.hpp"
#include "server/event_watcher.hpp"
#include "server/idle_retirer.hpp"
#include "server/spawn_service.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <variant>
#include <vector>

namespace {

namespace config = director::spawner::config;
namespace server = director::spawner::server;
using director::LogLevel;
using director::log;

// In-flight operations get this long to finish after SIGTERM; then the I/O threads end and the
// coroutines still suspended are destroyed with the io_context (SpawnService's running count is
// shared with them, so that is safe).
constexpr auto stop_grace = std::chrono::milliseconds(5000);
constexpr auto stop_poll = std::chrono::milliseconds(50);
constexpr std::size_t pages_max_connections = 1024;
constexpr auto startup_probe_time = std::chrono::milliseconds(3000);

std::string endpoint_text(const boost::asio::ip::tcp::endpoint& endpoint) {
  std::ostringstream text;
  text << endpoint;
  return text.str();
}

// The runtime the spawner drives, and how the startup log names it.
struct ChosenRuntime {
  std::unique_ptr<director::spawner::runtime::Runtime> runtime;
  std::string description;  // "unix:///var/run/docker.sock", "kubernetes https://10.96.0.1:443 namespace users"
};

director::net::http::ClientEndpoint docker_endpoint(const config::RuntimeEndpoint& runtime) {
  if (runtime.kind == config::RuntimeEndpoint::Kind::unix_socket) return director::net::http::UnixEndpoint{runtime.path};
  return director::net::http::TcpEndpoint{runtime.host, runtime.port};
}

// The one place that chooses the runtime (SPAWNER_RUNTIME). Kubernetes is in-cluster only: the
// API server, the token, the CA and the namespace as a pod finds them (config/in_cluster.hpp);
// without them the spawner does not start (std::runtime_error: main() logs it and exits 1).
// `metrics` counts what only the runtime sees (Pods stuck Terminating); it must outlive it.
ChosenRuntime choose_runtime(const config::Config& configuration, director::spawner::metrics::Metrics& metrics) {
  namespace runtime = director::spawner::runtime;
  if (configuration.runtime.kind != config::RuntimeEndpoint::Kind::kubernetes) {
    const auto endpoint = docker_endpoint(configuration.runtime);
    return {std::make_unique<runtime::DockerRuntime>(
                runtime::DockerRuntimeSettings{endpoint, configuration.runtime_timeout, configuration.pull_timeout}),
            director::net::http::to_string(endpoint)};
  }
  auto found = config::find_in_cluster(configuration.kubernetes, config::process_environment());
  if (const auto* problem = std::get_if<std::string>(&found)) throw std::runtime_error(*problem);
  auto& cluster = std::get<config::InCluster>(found);
  runtime::KubernetesRuntimeSettings settings;
  settings.api = director::net::http::TlsEndpoint{cluster.api_host, cluster.api_port, cluster.ca_file, {}};
  settings.token_file = cluster.token_file;
  settings.namespace_name = cluster.namespace_name;
  settings.container_port = configuration.container_port;
  settings.volume_size = configuration.kubernetes.volume_size;
  settings.storage_class = configuration.kubernetes.storage_class;
  settings.fs_group = configuration.kubernetes.fs_group;
  settings.restricted = configuration.kubernetes.pod_security == config::KubernetesOptions::PodSecurity::restricted;
  settings.pull_missing_images = configuration.pull_missing_images;
  settings.timeout = configuration.runtime_timeout;
  settings.container_template = configuration.container_template;
  settings.on_stuck_pods = [&metrics](std::size_t count) { metrics.kubernetes_pods_stuck(count); };
  auto description = "kubernetes " + director::net::http::to_string(settings.api) + " namespace " + cluster.namespace_name;
  return {std::make_unique<runtime::KubernetesRuntime>(std::move(settings)), std::move(description)};
}

// Whether `image` has a health check of its own (its containers are then awaited by it, not by
// their port), asked once at startup within startup_probe_time. A runtime that is down or an
// image not there yet counts as "no": port readiness, logged.
bool image_has_health_check(director::spawner::runtime::Runtime& runtime, const std::string& image) {
  boost::asio::io_context context;
  std::optional<bool> answer;
  std::string problem = "no answer within " + std::to_string(startup_probe_time.count()) + " ms";
  boost::asio::co_spawn(
      context,
      [&]() -> boost::asio::awaitable<void> {
        const auto pinged = co_await runtime.ping();
        if (!pinged) {
          problem = pinged.error().message;
          co_return;
        }
        const auto has = co_await runtime.image_has_health_check(image);
        if (!has) {
          problem = has.error().message;
          co_return;
        }
        answer = *has;
      },
      director::net::log_if_thrown("image health check"));
  context.run_for(startup_probe_time);
  if (!answer) {
    log(LogLevel::warn,
        "cannot tell whether the image has a health check: its containers are awaited by their port "
        "unless SPAWNER_HEALTH_CMD sets one",
        {{"image", image}, {"message", problem}});
    return false;
  }
  return *answer;
}

// SIGTERM or SIGINT: the pages listener closes, the watcher, the retirer and the event feed
// stop, the operations in flight finish (for at most stop_grace), then the operator listener
// closes and the I/O threads end. The operator listener stays up until then so that /readyz
// answers 503 ("stopping") for the whole stop, which is what load balancers and orchestrators
// expect, instead of refusing connections (the agent does the same).
class StopSequence {
 public:
  StopSequence(boost::asio::io_context& context, std::vector<std::function<void()>> stoppers,
               director::net::http::HttpServer& operators, server::SpawnService& service,
               director::net::Resolver& resolver)
      : stoppers_(std::move(stoppers)),
        operators_(operators),
        service_(service),
        stop_(context, [&resolver] { resolver.shutdown(); }),
        poll_(context) {}

  // Called once, from the signal handler.
  void begin(int signal) {
    log(LogLevel::info, "stopping: finishing in-flight operations", {{"signal", std::to_string(signal)}});
    for (const auto& stop : stoppers_) stop();
    stop_.arm(stop_grace, "operations still in flight at the end of the stop grace; exiting anyway");
    wait();
  }

 private:
  // Finishes as soon as no operation is in flight.
  void wait() {
    if (service_.operations_in_flight() == 0) {
      operators_.stop();
      stop_.finish();
      return;
    }
    poll_.expires_after(stop_poll);
    poll_.async_wait([this](const boost::system::error_code& error) {
      if (!error) wait();
    });
  }

  std::vector<std::function<void()>> stoppers_;
  director::net::http::HttpServer& operators_;
  server::SpawnService& service_;
  director::process::StopOnce stop_;
  boost::asio::steady_timer poll_;
};

int run(const config::Config& configuration) {
  const auto threads = configuration.effective_threads();
  boost::asio::io_context context(static_cast<int>(threads));

  director::net::ResolverOptions resolver_options;
  resolver_options.servers = director::net::dns_server_endpoints(configuration.dns_servers);
  director::net::Resolver resolver(context.get_executor(), resolver_options);

  director::spawner::metrics::Metrics metrics(config::version());
  const auto chosen = choose_runtime(configuration, metrics);
  auto& runtime = *chosen.runtime;
  // The runtime is awaited from one strand: the service, the watcher and the retirer share it.
  const boost::asio::any_io_executor runtime_strand = boost::asio::make_strand(context);

  director::spawner::core::LifecycleSettings lifecycle;
  lifecycle.container_template = configuration.container_template;
  lifecycle.pull_missing_images = configuration.pull_missing_images;
  lifecycle.ready_timeout = configuration.ready_timeout;
  lifecycle.image_has_health_check = image_has_health_check(runtime, configuration.container_template.image);
  server::SpawnSettings spawn_settings;
  spawn_settings.container_domain = configuration.container_domain;
  spawn_settings.container_port = configuration.container_port;
  spawn_settings.log_lines = configuration.log_lines;
  server::SpawnService service(runtime_strand, lifecycle, spawn_settings, runtime, resolver, metrics);

  const server::FeedLimits feed_limits;
  server::EventFeed feed(feed_limits);
  server::EventWatcher watcher(runtime_strand, runtime, service, feed, metrics);

  server::RetirerSettings retirer_settings;
  retirer_settings.idle = configuration.idle;
  retirer_settings.check_interval = configuration.idle_check_interval;
  retirer_settings.agent_urls = configuration.agent_urls;
  retirer_settings.stop_grace = configuration.stop_grace;
  server::IdleRetirer retirer(runtime_strand, retirer_settings, runtime, resolver, metrics);

  // Every first visit of a crowd comes at once (HAProxy holds one connection per waiting
  // request): the pages listener takes far more than the layer's default 32, each exchange
  // being a few kilobytes answered at once.
  director::net::http::HttpLimits page_limits;
  page_limits.max_connections = pages_max_connections;
  director::net::http::HttpServer pages(context, configuration.listen, "pages",
                                        server::page_endpoints({configuration, service, metrics}), page_limits);
  // One /events stream per agent.
  director::net::http::HttpLimits operator_limits;
  operator_limits.max_streams = feed_limits.max_subscribers;
  director::net::http::HttpServer operators(
      context, configuration.http_listen, "HTTP",
      server::operator_endpoints({configuration, std::string(config::version()), service, watcher, feed, metrics}),
      operator_limits);
  pages.start();
  operators.start();
  watcher.start();
  retirer.start();

  log(LogLevel::info, "director-spawner started",
      {{"version", config::version()},
       {"listen", endpoint_text(pages.local_endpoint())},
       {"http_listen", endpoint_text(operators.local_endpoint())},
       {"runtime", chosen.description},
       {"threads", std::to_string(threads)},
       {"config", config::to_json(configuration)}});

  StopSequence stop(context,
                    {[&] { service.stop(); }, [&] { pages.stop(); }, [&] { watcher.stop(); },
                     [&] { retirer.stop(); }, [&] { feed.close(); }},
                    operators, service, resolver);
  director::process::run_until_stopped(context, threads, "spawner", [&stop](int signal) { stop.begin(signal); });
  log(LogLevel::info, "stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const director::process::Program<config::Config> program{
      "director-spawner", "SPAWNER_HTTP_LISTEN", config::parse, config::print_help, config::print_markdown, config::to_json,
      config::version, run};
  return director::process::main(program, argc, argv);
}

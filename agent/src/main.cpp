// director-agent: the SPOE agent that decides, for each request HAProxy offloads, whether the
// user's container is alive (route there) or not (route to the spawner).
#include "config/config.hpp"
#include "metrics/metrics.hpp"
#include "feed/feed_url.hpp"
#include "server/decision_service.hpp"
#include "server/event_feed.hpp"
#include "server/haproxy_invalidator.hpp"
#include "server/http_endpoints.hpp"
#include "log/log.hpp"
#include "process/program.hpp"
#include "process/run_loop.hpp"
#include "server/resolver.hpp"
#include "server/server.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <functional>
#include <memory>
#include <stdexcept>
#include <sstream>
#include <vector>

namespace {

using director::config::LogLevel;
using director::log;

constexpr auto stop_grace = std::chrono::milliseconds(2000);
constexpr auto stop_deadline = std::chrono::milliseconds(5000);
constexpr auto stop_poll = std::chrono::milliseconds(10);

// Event mode's two channels, each present only when configured: the spawners' event feeds
// (DIRECTOR_EVENT_FEEDS) into the DecisionService, and the DecisionService's invalidations out to
// every HAProxy (DIRECTOR_HAPROXY_SOCKETS). Their callbacks refer to the DecisionService, which
// outlives them; both have stopped and their coroutines returned before the stop finishes.
struct LivenessChannels {
  std::unique_ptr<director::server::EventFeed> event_feed;
  std::unique_ptr<director::server::HaproxyInvalidator> haproxy_invalidator;

  // `accept_spop` runs once every HAProxy's table was revoked (or could not be, within
  // HaproxyInvalidatorSettings::first_revoke_wait): HAProxy must not combine answers it holds
  // from the agent's previous run with this run's. At once without HAProxy sockets.
  void start(std::function<void()> accept_spop) {
    if (event_feed) event_feed->start();
    if (haproxy_invalidator) {
      haproxy_invalidator->start(std::move(accept_spop));
    } else {
      accept_spop();
    }
  }
  void stop() {
    if (event_feed) event_feed->stop();
    if (haproxy_invalidator) haproxy_invalidator->stop();
  }
  bool stopped() const {
    return (!event_feed || event_feed->done()) && (!haproxy_invalidator || !haproxy_invalidator->running());
  }
};

LivenessChannels make_channels(const director::config::Config& config, boost::asio::any_io_executor executor,
                               director::server::DecisionService& decision_service,
                               director::metrics::Metrics& metrics) {
  namespace server = director::server;
  LivenessChannels channels;
  if (!config.haproxy_sockets.empty()) {
    server::HaproxyInvalidatorSettings settings;
    settings.sockets = config.haproxy_sockets;
    server::HaproxyInvalidatorHooks hooks;
    hooks.command = [&metrics](director::metrics::HaproxyCommandResult result) { metrics.haproxy_command(result); };
    hooks.keys_cleared = [&metrics](std::size_t keys) { metrics.haproxy_keys_cleared(keys); };
    hooks.table_cleared = [&metrics] { metrics.haproxy_table_cleared(); };
    hooks.keys_rejected = [&metrics](std::size_t keys) { metrics.haproxy_keys_refused(keys); };
    hooks.on_reachability = [&decision_service](bool all) { decision_service.on_haproxy_reachability(all); };
    channels.haproxy_invalidator = std::make_unique<server::HaproxyInvalidator>(executor, std::move(settings),
                                                                                std::move(hooks));
    auto& invalidator = *channels.haproxy_invalidator;
    decision_service.connect_haproxy({[&invalidator](std::vector<std::string> keys) { invalidator.clear(std::move(keys)); },
                                      [&invalidator] { invalidator.clear_all(); }});
  }
  if (!config.event_feeds.empty()) {
    std::vector<director::feed::FeedUrl> urls;
    urls.reserve(config.event_feeds.size());
    for (const auto& url : config.event_feeds) {
      auto parsed = director::feed::parse_feed_url(url);
      // The configuration refused every URL parse_feed_url refuses: a startup error, not a value.
      if (!parsed) throw std::invalid_argument("event feed " + url + ": " + parsed.error());
      urls.push_back(std::move(*parsed));
    }
    server::EventFeedCallbacks callbacks;
    callbacks.on_snapshot = [&decision_service](director::decision::FeedId feed, director::feed::Containers containers) {
      decision_service.on_feed_snapshot(feed, std::move(containers));
    };
    callbacks.on_event = [&decision_service](director::decision::FeedId feed, std::string_view label,
                                             std::string_view username,
                                             std::optional<director::decision::ContainerState> state) {
      decision_service.on_feed_event(feed, label, username, std::move(state));
    };
    callbacks.on_lost = [&decision_service](director::decision::FeedId feed) { decision_service.on_feed_lost(feed); };
    channels.event_feed = std::make_unique<server::EventFeed>(executor, std::move(urls), std::move(callbacks));
  }
  return channels;
}

// The graceful stop that SIGTERM or SIGINT begins: the SPOP listener closes, the event feeds and
// the HAProxy invalidator stop, each SPOP connection answers what is pending (for at most
// stop_grace), says AGENT-DISCONNECT and closes (a peer that stops reading meanwhile is closed
// after ConnectionLimits::closing_write_timeout), then, once the feeds' and the invalidator's
// coroutines have returned, the HTTP listener closes and the I/O threads end. At stop_deadline
// they end anyway. The HTTP listener stays up until then so that /readyz answers 503 (the SPOP
// listener no longer accepts) for the whole stop, which is what load balancers and
// orchestrators expect, instead of refusing connections.
class StopSequence {
 public:
  StopSequence(boost::asio::io_context& context, director::net::http::HttpServer& http,
               director::server::Server& server, LivenessChannels& channels, director::net::Resolver& resolver)
      : http_(http), server_(server), channels_(channels), stop_(context, [&resolver] { resolver.shutdown(); }),
        poll_(context) {}

  // Called once, from the signal handler.
  void begin(int signal) {
    log(LogLevel::info, "stopping: finishing in-flight work and disconnecting", {{"signal", std::to_string(signal)}});
    channels_.stop();
    server_.stop(stop_grace, [this] { wait_for_channels(); });
    stop_.arm(stop_deadline, "connections still open at the stop deadline; exiting anyway");
  }

 private:
  void wait_for_channels() {
    if (channels_.stopped()) {
      http_.stop();
      stop_.finish();
      return;
    }
    poll_.expires_after(stop_poll);
    poll_.async_wait([this](const boost::system::error_code& error) {
      if (!error) wait_for_channels();
    });
  }

  director::net::http::HttpServer& http_;
  director::server::Server& server_;
  LivenessChannels& channels_;
  director::process::StopOnce stop_;
  boost::asio::steady_timer poll_;
};

int run(const director::config::Config& config) {
  const auto threads = config.effective_threads();
  boost::asio::io_context context(static_cast<int>(threads));

  director::net::Resolver resolver(context.get_executor(), director::server::resolver_options(config.dns));

  director::metrics::Metrics metrics(director::config::version(), std::chrono::system_clock::now());
  director::server::DecisionService decision_service(context.get_executor(), config, resolver, metrics);
  auto channels = make_channels(config, context.get_executor(), decision_service, metrics);
  director::server::ConnectionLimits limits;
  limits.max_frame_size = config.max_frame_size;
  limits.hello_timeout = config.hello_timeout;
  director::server::Server server(context, config.listen, decision_service, metrics, limits);
  director::server::HttpSources sources{config, metrics, decision_service, server};
  sources.event_feed = channels.event_feed.get();
  sources.haproxy_invalidator = channels.haproxy_invalidator.get();
  sources.connections = director::server::OpenConnectionsReader::create(
      director::server::OpenConnectionsSettings{.sockets = config.haproxy_sockets});
  director::net::http::HttpServer http(context, config.http_listen, "HTTP", director::server::http_endpoints(sources));
  // /readyz says "not ready" until the SPOP listener accepts.
  http.start();
  channels.start([&server, &http, &config, threads] {
    server.start();
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
  });

  StopSequence stop(context, http, server, channels, resolver);
  director::process::run_until_stopped(context, threads, "agent", [&stop](int signal) { stop.begin(signal); });
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

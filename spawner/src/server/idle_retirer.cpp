#include "server/idle_retirer.hpp"

#include "config/config.hpp"
#include "log/log.hpp"
#include "net/awaitable.hpp"
#include "net/haproxy_cli.hpp"
#include "net/http_client.hpp"
#include "server/metered.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/http/field.hpp>

#include <utility>
#include <variant>

namespace director::spawner::server {
namespace {

using metrics::RuntimeCall;
using LastRequests = std::map<std::string, core::TimePoint, std::less<>>;
using Connections = std::map<std::string, std::uint64_t, std::less<>>;

constexpr std::size_t agent_page_limit = 1000;

std::string milliseconds_text(std::chrono::milliseconds duration) { return std::to_string(duration.count()) + "ms"; }

}  // namespace

IdleRetirer::IdleRetirer(boost::asio::any_io_executor executor, RetirerSettings settings, runtime::Runtime& runtime,
                         net::Resolver& resolver, metrics::Metrics& metrics)
    : strand_(boost::asio::make_strand(std::move(executor))),
      settings_(std::move(settings)),
      runtime_(runtime),
      resolver_(resolver),
      metrics_(metrics),
      watching_since_(core::Clock::now()),
      timer_(strand_) {}

bool IdleRetirer::enabled() const noexcept {
  return settings_.idle.timeout.count() > 0 && !settings_.agent_urls.empty();
}

void IdleRetirer::start() {
  if (settings_.idle.timeout.count() == 0) {
    log(LogLevel::info, "idle retirement off: the idle timeout is 0");
    return;
  }
  if (settings_.agent_urls.empty()) {
    log(LogLevel::warn, "idle retirement off: no agent to ask who is active (SPAWNER_AGENTS)");
    return;
  }
  if (settings_.haproxy_sockets.empty()) {
    log(LogLevel::warn, "idle retirement sees no open connections: no HAProxy stats socket (SPAWNER_HAPROXY_SOCKETS); "
                        "a user working over one long WebSocket counts as idle");
  }
  boost::asio::co_spawn(strand_, run(), net::log_if_thrown("idle retirer"));
}

void IdleRetirer::stop() {
  stopping_ = true;
  boost::asio::post(strand_, [this] { timer_.cancel(); });
}

boost::asio::awaitable<void> IdleRetirer::run() {
  while (!stopping_) {
    timer_.expires_after(settings_.check_interval);
    co_await timer_.async_wait(net::nothrow_awaitable);
    if (stopping_) break;
    co_await run_once();
  }
}

boost::asio::awaitable<RetirementRound> IdleRetirer::run_once() {
  RetirementRound round;
  auto listed = co_await metered(metrics_, RuntimeCall::list_managed, runtime_.list_managed());
  if (!listed) {
    log(LogLevel::warn, "idle check skipped: cannot list the managed containers", {{"message", listed.error().message}});
    metrics_.idle_source_unreadable(metrics::IdleSource::runtime);
    co_return round;
  }
  core::IdleInputs inputs;
  for (auto& container : *listed) {
    if (container.managed && container.state == core::ContainerState::running && !container.label.empty()) {
      inputs.running.push_back(std::move(container));
    }
  }
  round.running = inputs.running.size();
  if (inputs.running.empty()) {
    unknown_since_.clear();
    round.complete = true;
    co_return round;
  }
  inputs.now = core::Clock::now();
  inputs.watching_since = watching_since_;
  const bool agents_read = co_await read_agents(inputs.last_request, inputs.now);
  Connections by_username;
  const bool tables_read = co_await read_tables(by_username);
  inputs.complete = agents_read && tables_read;
  inputs.unknown_since = core::track_unknown(inputs, unknown_since_);
  unknown_since_ = inputs.unknown_since;
  inputs.open_connections = core::open_connections_by_label(inputs.running, by_username);
  round.complete = inputs.complete;
  if (!inputs.complete) {
    log(LogLevel::warn, "idle check incomplete: nobody is retired this round",
        {{"running", std::to_string(inputs.running.size())}});
    co_return round;
  }
  const auto grace = std::chrono::duration_cast<std::chrono::seconds>(settings_.stop_grace);
  for (const auto& retirement : core::plan_retirements(settings_.idle, inputs)) {
    if (stopping_) break;
    const bool remove = retirement.action == core::IdleAction::remove;
    std::optional<runtime::RuntimeError> failed;
    auto stopped = co_await metered(metrics_, RuntimeCall::stop, runtime_.stop(retirement.id, grace));
    if (!stopped) failed = stopped.error();
    if (!failed && remove) {
      auto removed = co_await metered(metrics_, RuntimeCall::remove, runtime_.remove(retirement.id));
      if (!removed) failed = removed.error();
    }
    const auto idle_seconds = std::to_string(std::chrono::duration_cast<std::chrono::seconds>(retirement.idle_for).count());
    if (failed) {
      log(LogLevel::warn, "cannot retire an idle container",
          {{"label", retirement.label}, {"action", core::to_string(retirement.action)}, {"message", failed->message}});
      continue;
    }
    metrics_.retired(retirement.action);
    log(LogLevel::info, "idle container retired",
        {{"label", retirement.label}, {"action", core::to_string(retirement.action)}, {"idle_seconds", idle_seconds}});
    round.retired.push_back(retirement);
  }
  co_return round;
}

boost::asio::awaitable<bool> IdleRetirer::read_agents(LastRequests& into, core::TimePoint now) {
  bool complete = true;
  for (const auto& url : settings_.agent_urls) {
    const auto entry = config::parse_agent_url(url);
    if (!entry) {
      log(LogLevel::warn, "idle check: not an agent URL (http://IP:PORT or http://NAME:PORT)", {{"agent", url}});
      metrics_.idle_source_unreadable(metrics::IdleSource::agent);
      complete = false;
      continue;
    }
    const auto agents = co_await peers(*entry, url);
    if (!agents) {
      complete = false;
      continue;
    }
    for (const auto& agent : *agents) {
      const auto last_requests = co_await read_agent(url, agent, now);
      if (!last_requests) {
        metrics_.idle_source_unreadable(metrics::IdleSource::agent);
        complete = false;
        continue;
      }
      core::merge_last_request(into, *last_requests);
    }
  }
  co_return complete;
}

boost::asio::awaitable<bool> IdleRetirer::read_tables(Connections& into) {
  bool complete = true;
  for (const auto& entry : settings_.haproxy_sockets) {
    std::vector<std::string> sockets{entry};  // a path or IP:PORT as configured; a name's addresses
    const auto parsed = config_table::parse_stats_socket(entry);
    if (const auto* named = parsed ? std::get_if<config_table::NamedEndpoint>(&*parsed) : nullptr) {
      // A named argument, not a temporary (GCC 12 and temporaries in co_await: read_agent).
      const config_table::EndpointOrName peer = *named;
      const auto haproxys = co_await peers(peer, entry);
      if (!haproxys) {
        complete = false;
        continue;
      }
      sockets.clear();
      for (const auto& haproxy : *haproxys) sockets.push_back(config_table::format_endpoint(haproxy));
    }
    for (const auto& socket : sockets) {
      const auto table = co_await read_table(socket);
      if (!table) {
        metrics_.idle_source_unreadable(metrics::IdleSource::haproxy);
        complete = false;
        continue;
      }
      for (const auto& [username, count] : *table) into[username] += count;
    }
  }
  co_return complete;
}

boost::asio::awaitable<std::optional<std::vector<boost::asio::ip::tcp::endpoint>>> IdleRetirer::peers(
    const config_table::EndpointOrName& entry, const std::string& configured) {
  using Endpoints = std::vector<boost::asio::ip::tcp::endpoint>;
  if (const auto* address = std::get_if<boost::asio::ip::tcp::endpoint>(&entry)) co_return Endpoints{*address};
  const auto& named = std::get<config_table::NamedEndpoint>(entry);
  const auto resolved = co_await resolver_.resolve(named.name);
  if (resolved.outcome != net::DnsOutcome::ok) {
    log(LogLevel::warn, "idle check: a name of the replicas gave no address",
        {{"entry", configured},
         {"outcome", resolved.outcome == net::DnsOutcome::no_such_host ? "no_such_host" : "error"}});
    metrics_.idle_source_unreadable(metrics::IdleSource::dns);
    co_return std::nullopt;
  }
  Endpoints endpoints;
  for (const auto& address : resolved.addresses) endpoints.emplace_back(address, named.port);
  co_return endpoints;
}

boost::asio::awaitable<std::optional<LastRequests>> IdleRetirer::read_agent(const std::string& url,
                                                                             boost::asio::ip::tcp::endpoint address,
                                                                             core::TimePoint now) {
  const auto host = address.address().to_string();
  const auto where = config_table::format_endpoint(address);
  LastRequests last_requests;
  std::uint64_t offset = 0;
  for (std::size_t page = 0; page < settings_.max_agent_pages; ++page) {
    net::http::ClientRequest request(boost::beast::http::verb::get,
                                     "/users?offset=" + std::to_string(offset) + "&limit=" + std::to_string(agent_page_limit), 11);
    request.set(boost::beast::http::field::host, url.substr(std::string_view("http://").size()));
    request.set(boost::beast::http::field::accept, "application/json");
    net::http::ClientLimits limits;
    limits.timeout = settings_.read_timeout;
    limits.body_limit = settings_.max_page_bytes;
    // A named endpoint, not a temporary: GCC 12 destroys a temporary argument of a coroutine
    // called in a co_await expression twice.
    net::http::ClientEndpoint endpoint = net::http::TcpEndpoint{host, address.port()};
    auto response = co_await net::http::request(std::move(endpoint), std::move(request), limits);
    if (!response) {
      log(LogLevel::warn, "idle check: cannot read an agent's users",
          {{"agent", url}, {"address", where}, {"message", response.error().message}});
      co_return std::nullopt;
    }
    if (response->result() != boost::beast::http::status::ok) {
      log(LogLevel::warn, "idle check: an agent refused its users",
          {{"agent", url}, {"address", where}, {"status", std::to_string(response->result_int())}});
      co_return std::nullopt;
    }
    auto parsed = core::parse_agent_users(response->body(), now);
    if (!parsed) {
      log(LogLevel::warn, "idle check: an agent's users are not readable",
          {{"agent", url}, {"address", where}, {"message", parsed.error().message}});
      co_return std::nullopt;
    }
    core::merge_last_request(last_requests, parsed->last_request);
    offset += parsed->rows;
    if (parsed->rows == 0 || offset >= parsed->total) co_return last_requests;
  }
  log(LogLevel::warn, "idle check: an agent has more users than read",
      {{"agent", url}, {"address", where}, {"read", std::to_string(offset)}});
  co_return std::nullopt;
}

boost::asio::awaitable<std::optional<Connections>> IdleRetirer::read_table(const std::string& socket) {
  std::string command = "show table " + settings_.connections_table + "\n";
  auto answer = co_await net::haproxy_command(socket, std::move(command), settings_.max_table_bytes, settings_.read_timeout);
  if (!answer && answer.error().kind == net::HaproxyCliErrorKind::timeout) {
    log(LogLevel::warn, "idle check: HAProxy's stats socket did not answer in time",
        {{"socket", socket}, {"timeout", milliseconds_text(settings_.read_timeout)}});
    co_return std::nullopt;
  }
  if (!answer) {
    log(LogLevel::warn, "idle check: cannot read HAProxy's table", {{"socket", socket}, {"message", answer.error().message}});
    co_return std::nullopt;
  }
  auto table = core::parse_show_table(*answer);
  if (!table.header_seen) {
    // An unknown table (or an error message): HAProxy prints no "# table:" line.
    log(LogLevel::warn, "idle check: HAProxy has no such table",
        {{"socket", socket}, {"table", settings_.connections_table}, {"answer", answer->substr(0, 200)}});
    co_return std::nullopt;
  }
  co_return std::move(table.connections);
}

}  // namespace director::spawner::server

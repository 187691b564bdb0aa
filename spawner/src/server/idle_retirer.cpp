#include "server/idle_retirer.hpp"

#include "config/config.hpp"
#include "log/log.hpp"
#include "net/awaitable.hpp"
#include "net/http_client.hpp"
#include "net/show_table.hpp"
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

constexpr std::size_t agent_page_limit = 1000;          // /users rows a page (the agent's most)

// One GET of an agent's page at `address` (`url` names it: the Host header), bounded by the
// retirer's read_timeout and max_page_bytes.
boost::asio::awaitable<net::http::ClientResult<net::http::ClientResponse>> get_agent_page(
    const std::string& url, boost::asio::ip::tcp::endpoint address, std::string target,
    const RetirerSettings& settings) {
  net::http::ClientRequest request(boost::beast::http::verb::get, target, 11);
  request.set(boost::beast::http::field::host, url.substr(std::string_view("http://").size()));
  request.set(boost::beast::http::field::accept, "application/json");
  net::http::ClientLimits limits;
  limits.timeout = settings.read_timeout;
  limits.body_limit = settings.max_page_bytes;
  // A named endpoint, not a temporary: GCC 12 destroys a temporary argument of a coroutine
  // called in a co_await expression twice.
  net::http::ClientEndpoint endpoint = net::http::TcpEndpoint{address.address().to_string(), address.port()};
  co_return co_await net::http::request(std::move(endpoint), std::move(request), limits);
}

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
  Connections by_username;
  inputs.complete = co_await read_agents(inputs.last_request, by_username, inputs.now);
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

boost::asio::awaitable<bool> IdleRetirer::read_agents(LastRequests& last_requests, Connections& connections,
                                                      core::TimePoint now) {
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
      const auto agent_requests = co_await read_agent(url, agent, now);
      if (!agent_requests) {
        metrics_.idle_source_unreadable(metrics::IdleSource::agent);
        complete = false;
        continue;
      }
      core::merge_last_request(last_requests, *agent_requests);
      const auto agent_connections = co_await read_connections(url, agent);
      if (!agent_connections) {
        complete = false;
        continue;
      }
      core::add_connections(connections, *agent_connections);
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
  const auto where = config_table::format_endpoint(address);
  LastRequests last_requests;
  std::uint64_t offset = 0;
  for (std::size_t page = 0; page < settings_.max_agent_pages; ++page) {
    auto target = "/users?offset=" + std::to_string(offset) + "&limit=" + std::to_string(agent_page_limit);
    auto response = co_await get_agent_page(url, address, std::move(target), settings_);
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

boost::asio::awaitable<std::optional<Connections>> IdleRetirer::read_connections(
    const std::string& url, boost::asio::ip::tcp::endpoint address) {
  const auto where = config_table::format_endpoint(address);
  Connections connections;
  std::string after;
  for (std::size_t page = 0; page < settings_.max_agent_pages; ++page) {
    auto target = "/connections?limit=" + std::to_string(net::max_connections_page);
    if (!after.empty()) target += "&after=" + after;
    auto response = co_await get_agent_page(url, address, std::move(target), settings_);
    if (!response) {
      log(LogLevel::warn, "idle check: cannot read an agent's connections",
          {{"agent", url}, {"address", where}, {"message", response.error().message}});
      metrics_.idle_source_unreadable(metrics::IdleSource::agent);
      co_return std::nullopt;
    }
    if (response->result() == boost::beast::http::status::service_unavailable) {
      // The agent could not read its HAProxy: its body says which socket and why.
      log(LogLevel::warn, "idle check: an agent cannot read its HAProxy's connections",
          {{"agent", url}, {"address", where}, {"answer", response->body().substr(0, 500)}});
      metrics_.idle_source_unreadable(metrics::IdleSource::haproxy);
      co_return std::nullopt;
    }
    if (response->result() != boost::beast::http::status::ok) {
      log(LogLevel::warn, "idle check: an agent refused its connections",
          {{"agent", url}, {"address", where}, {"status", std::to_string(response->result_int())}});
      metrics_.idle_source_unreadable(metrics::IdleSource::agent);
      co_return std::nullopt;
    }
    auto parsed = core::parse_agent_connections(response->body());
    if (!parsed) {
      log(LogLevel::warn, "idle check: an agent's connections are not readable",
          {{"agent", url}, {"address", where}, {"message", parsed.error().message}});
      metrics_.idle_source_unreadable(metrics::IdleSource::agent);
      co_return std::nullopt;
    }
    if (parsed->sockets == 0) {
      // An agent that reads no HAProxy cannot see a user's open WebSocket: its "no connections"
      // would retire such a user. Unreadable, so the round retires nobody; logged once per
      // address until that address reads a socket again (a round a minute would flood the log).
      metrics_.idle_source_unreadable(metrics::IdleSource::haproxy);
      if (agents_without_sockets_.size() >= max_remembered_addresses) agents_without_sockets_.clear();
      if (agents_without_sockets_.insert(where).second) {
        log(LogLevel::warn, "idle check: an agent reads no HAProxy, so nobody is retired; set the agent's "
                            "DIRECTOR_HAPROXY_SOCKETS to its HAProxy's runtime API socket",
            {{"agent", url}, {"address", where}});
      }
      co_return std::nullopt;
    }
    agents_without_sockets_.erase(where);
    core::add_connections(connections, parsed->connections);
    if (parsed->next.empty()) co_return connections;
    after = std::move(parsed->next);
  }
  log(LogLevel::warn, "idle check: an agent has more connections' pages than read",
      {{"agent", url}, {"address", where}, {"pages", std::to_string(settings_.max_agent_pages)}});
  metrics_.idle_source_unreadable(metrics::IdleSource::agent);
  co_return std::nullopt;
}

}  // namespace director::spawner::server

// The idle retirer's I/O (the planner is core/idle.hpp): every check_interval it lists the
// running managed containers, reads every agent's GET /users (all pages) and every HAProxy
// stats socket's `show table <connections_table>`, and stops (or removes) the containers of
// users idle for longer than the idle timeout. An entry naming its peers by DNS (http://NAME:PORT,
// NAME:PORT: the replicas of a headless Service) is resolved at every round, through the
// spawner's one Resolver; every address it yields is one agent or one HAProxy. A source that
// cannot be read, and a name that does not resolve or yields no address, make the round
// incomplete: nobody is retired that round (logged, and counted in
// director_spawner_idle_unreadable_total{source}). Off when the timeout is 0 or no agent is
// configured (without the agents nobody's activity is known).
#pragma once

#include "core/activity.hpp"
#include "core/idle.hpp"
#include "config/values.hpp"
#include "metrics/metrics.hpp"
#include "net/resolver.hpp"
#include "runtime/runtime.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace director::spawner::server {

// The configured members come from config::Config (main.cpp) and have no defaults of their own;
// the limits below are this layer's.
struct RetirerSettings {
  core::IdleSettings idle;
  std::chrono::milliseconds check_interval{};
  std::vector<std::string> agent_urls;       // each as config::parse_agent_url reads it (IP or NAME)
  std::vector<std::string> haproxy_sockets;  // each as config::parse_stats_socket reads it (path, IP or NAME)
  std::string connections_table;
  std::chrono::milliseconds stop_grace{};
  std::chrono::milliseconds read_timeout{5'000};     // one agent page, or one whole `show table`
  std::size_t max_table_bytes = 64 * 1024 * 1024;    // one `show table` answer
  std::size_t max_page_bytes = 8 * 1024 * 1024;      // one /users page
  std::size_t max_agent_pages = 1000;                // of 1000 users each
};

// What one round found and did.
struct RetirementRound {
  bool complete = false;
  std::size_t running = 0;
  std::vector<core::Retirement> retired;  // the ones the runtime stopped or removed
};

class IdleRetirer {
 public:
  // `runtime`, `resolver` (the spawner's one, SPAWNER_DNS_SERVER) and `metrics` must outlive it.
  IdleRetirer(boost::asio::any_io_executor executor, RetirerSettings settings, runtime::Runtime& runtime,
              net::Resolver& resolver, metrics::Metrics& metrics);

  bool enabled() const noexcept;
  // Runs a round every check_interval (when enabled) until stop().
  void start();
  void stop();

  // One round, now.
  boost::asio::awaitable<RetirementRound> run_once();

 private:
  boost::asio::awaitable<void> run();
  // Every agent's last requests (each address of a name is one agent), merged into `into`;
  // false when any entry or address could not be read (logged, counted).
  boost::asio::awaitable<bool> read_agents(std::map<std::string, core::TimePoint, std::less<>>& into,
                                           core::TimePoint now);
  // Every HAProxy's open connections per username (each address of a name is one HAProxy),
  // summed into `into`; false when any entry or address could not be read (logged, counted).
  boost::asio::awaitable<bool> read_tables(std::map<std::string, std::uint64_t, std::less<>>& into);
  // The peers of one configured entry this round: its address, or every address its name
  // resolves to; nullopt (logged, counted) when the name does not resolve.
  boost::asio::awaitable<std::optional<std::vector<boost::asio::ip::tcp::endpoint>>> peers(
      const config_table::EndpointOrName& entry, const std::string& configured);
  // Last request per label over all pages of the agent `url` names at `address`; nullopt
  // (logged) when unreadable.
  boost::asio::awaitable<std::optional<std::map<std::string, core::TimePoint, std::less<>>>> read_agent(
      const std::string& url, boost::asio::ip::tcp::endpoint address, core::TimePoint now);
  // conn_cur per username from one stats socket (a path or IP:PORT); nullopt (logged) when unreadable.
  boost::asio::awaitable<std::optional<std::map<std::string, std::uint64_t, std::less<>>>> read_table(
      const std::string& socket);

  boost::asio::strand<boost::asio::any_io_executor> strand_;
  RetirerSettings settings_;
  runtime::Runtime& runtime_;
  net::Resolver& resolver_;
  metrics::Metrics& metrics_;
  core::TimePoint watching_since_;
  core::UnknownSince unknown_since_;  // across rounds: see core::track_unknown (on the strand)
  boost::asio::steady_timer timer_;
  std::atomic<bool> stopping_{false};
};

}  // namespace director::spawner::server

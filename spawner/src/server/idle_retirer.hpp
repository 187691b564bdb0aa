// The idle retirer's I/O (the planner is core/idle.hpp): every check_interval it lists the
// running managed containers, reads every agent's GET /users (last requests) and GET
// /connections (its own HAProxy's open connections per username, summed over the agents; all
// pages of both), and stops (or removes) the containers of users idle for longer than the idle
// timeout. An entry naming its peers by DNS (http://NAME:PORT: the replicas of a headless
// Service) is resolved at every round, through the spawner's one Resolver; every address it
// yields is one agent (beside its HAProxy). A source that cannot be read (an agent, or the
// HAProxy an agent reads: its 503), and a name that does not resolve or yields no address, make
// the round incomplete: nobody is retired that round (logged, and counted in
// director_spawner_idle_unreadable_total{source}). An agent that reads no HAProxy (no
// DIRECTOR_HAPROXY_SOCKETS: "sockets": []) contributes no connections, logged once as a
// warning: a user working over one long WebSocket through its HAProxy counts as idle. Off when
// the timeout is 0 or no agent is configured (without the agents nobody's activity is known).
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
#include <set>
#include <string>
#include <vector>

namespace director::spawner::server {

// The configured members come from config::Config (main.cpp) and have no defaults of their own;
// the limits below are this layer's.
struct RetirerSettings {
  core::IdleSettings idle;
  std::chrono::milliseconds check_interval{};
  std::vector<std::string> agent_urls;       // each as config::parse_agent_url reads it (IP or NAME)
  std::chrono::milliseconds stop_grace{};
  // One agent page (/users, or /connections: the agent reads its HAProxy within 3 s of it).
  std::chrono::milliseconds read_timeout{5'000};
  std::size_t max_page_bytes = 8 * 1024 * 1024;      // one /users or /connections page
  std::size_t max_agent_pages = 1000;                // of 1000 users (/users) or 10,000 usernames (/connections)
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
  // Every agent's last requests, merged into `last_requests`, and its HAProxy's open connections
  // per username, summed into `connections` (each address of a name is one agent); false when
  // any entry or address could not be read (logged, counted).
  boost::asio::awaitable<bool> read_agents(std::map<std::string, core::TimePoint, std::less<>>& last_requests,
                                           std::map<std::string, std::uint64_t, std::less<>>& connections,
                                           core::TimePoint now);
  // The peers of one configured entry this round: its address, or every address its name
  // resolves to; nullopt (logged, counted) when the name does not resolve.
  boost::asio::awaitable<std::optional<std::vector<boost::asio::ip::tcp::endpoint>>> peers(
      const config_table::EndpointOrName& entry, const std::string& configured);
  // Last request per label over all pages of the agent `url` names at `address`; nullopt
  // (logged) when unreadable.
  boost::asio::awaitable<std::optional<std::map<std::string, core::TimePoint, std::less<>>>> read_agent(
      const std::string& url, boost::asio::ip::tcp::endpoint address, core::TimePoint now);
  // Open connections per username over all pages of the agent's /connections; nullopt (logged,
  // counted: source agent, or haproxy when the agent says its HAProxy is unreadable) when unreadable.
  boost::asio::awaitable<std::optional<std::map<std::string, std::uint64_t, std::less<>>>> read_connections(
      const std::string& url, boost::asio::ip::tcp::endpoint address);

  boost::asio::strand<boost::asio::any_io_executor> strand_;
  RetirerSettings settings_;
  runtime::Runtime& runtime_;
  net::Resolver& resolver_;
  metrics::Metrics& metrics_;
  core::TimePoint watching_since_;
  core::UnknownSince unknown_since_;  // across rounds: see core::track_unknown (on the strand)
  // The addresses of agents found reading no HAProxy, each logged once (on the strand); an
  // address leaves when it reads a socket again. Cleared beyond max_remembered_addresses.
  static constexpr std::size_t max_remembered_addresses = 1024;
  std::set<std::string> agents_without_sockets_;
  boost::asio::steady_timer timer_;
  std::atomic<bool> stopping_{false};
};

}  // namespace director::spawner::server

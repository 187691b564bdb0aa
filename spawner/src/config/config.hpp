// The spawner's effective configuration: defaults, then an optional JSON file (--config,
// SPAWNER_CONFIG), then environment variables, then command-line flags (later sources win),
// read by the option-table machinery the agent shares (common/src/config). Every option is
// described once, in the table in config.cpp.
#pragma once

#include "core/container_template.hpp"
#include "core/idle.hpp"
#include "log/log.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace director::spawner::config {

// Where the container runtime's API is: DOCKER_HOST's grammar, "unix:///path" or "tcp://host:port".
struct RuntimeEndpoint {
  enum class Kind : std::uint8_t { unix_socket, tcp } kind = Kind::unix_socket;
  std::string path = "/var/run/docker.sock";  // kind == unix_socket
  std::string host;                           // kind == tcp
  std::uint16_t port = 0;                     // kind == tcp
};

struct Config {
  // Pages for HAProxy's spawner backend: must be reachable only by HAProxy (loopback in HAProxy's
  // network namespace in compose). Requests without the director's headers are refused.
  boost::asio::ip::tcp::endpoint listen{boost::asio::ip::address_v4::loopback(), 9180};
  // /metrics, /healthz, /readyz, /status, /users, /events (the agents' feed).
  boost::asio::ip::tcp::endpoint http_listen{boost::asio::ip::address_v4::loopback(), 9181};
  unsigned threads = 0;  // 0 = one per core

  // The director's naming, the same values as the agent's and HAProxy's.
  std::string container_host_prefix = "vscode";   // CONTAINER_HOST_PREFIX
  std::uint16_t container_port = 8080;             // CONTAINER_PORT
  std::string container_domain;                    // CONTAINER_DOMAIN; empty: none
  // DNS servers for the port readiness check (same grammar as the agent's); empty: resolv.conf.
  std::vector<std::string> dns_servers;

  RuntimeEndpoint runtime;
  std::chrono::milliseconds runtime_timeout{10'000};  // one runtime API call (not pulls, not the event stream)
  std::chrono::milliseconds pull_timeout{600'000};

  core::ContainerTemplate container_template;  // host_prefix mirrors container_host_prefix
  bool pull_missing_images = true;
  std::chrono::milliseconds ready_timeout{120'000};
  std::chrono::milliseconds stop_grace{10'000};

  // Pages.
  std::chrono::seconds refresh_interval{2};  // the loading page's meta refresh
  unsigned log_lines = 20;                   // container log lines on the error page

  // Idle retirement.
  core::IdleSettings idle;
  std::chrono::milliseconds idle_check_interval{60'000};
  std::vector<std::string> agent_urls;        // http://host:port of each agent's HTTP listener (for /users)
  std::vector<std::string> haproxy_sockets;   // HAProxy stats sockets (unix paths, or ipv4:port) for `show table`
  std::string connections_table = "user_connections";  // the stick table counting conn_cur per username

  LogLevel log_level = LogLevel::info;
  LogFormat log_format = LogFormat::text;
  std::string config_file;
};

}  // namespace director::spawner::config

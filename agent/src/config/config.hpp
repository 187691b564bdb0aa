// The agent's effective configuration: defaults, then an optional JSON file (--config,
// DIRECTOR_CONFIG), then environment variables, then command-line flags (later sources win).
// Every option is described once, in one table (config.cpp), which drives parsing from all three
// sources, validation, --help, the Markdown reference and the effective-configuration print.
#pragma once

#include "config/option_types.hpp"
#include "config/values.hpp"
#include "decision/director.hpp"
#include "log/log.hpp"
#include "net/probe_types.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace director::config {

enum class ProbeMode : std::uint8_t { tcp, http };
using LogLevel = director::LogLevel;
using LogFormat = director::LogFormat;

// Where an option's value came from, and the largest configuration file read: the option-table
// machinery's (common/src/config), which the spawner shares.
using config_table::Source;
using config_table::to_string;
using config_table::max_config_file_size;

// The default_* constants are the one default of each setting, defined with the Resolver and the
// probe (net/probe_types.hpp: why these values).
struct ProbeSettings {
  static constexpr std::chrono::milliseconds default_timeout = net::default_probe_timeout;
  ProbeMode mode = ProbeMode::tcp;
  std::chrono::milliseconds timeout = default_timeout;
  std::string http_path = "/";  // used when mode == http
};

// Every check resolves afresh: there is no DNS cache. A cached answer would let a check probe
// an address the user's container released and another user's container took: the probe
// succeeds and the user is routed into the other user's container
// (tests/e2e/test_address_reuse.py).
struct DnsSettings {
  static constexpr std::chrono::milliseconds default_timeout = net::default_dns_timeout;
  static constexpr int default_tries = net::default_dns_tries;
  std::vector<std::string> servers;  // each as parse_dns_server reads it; empty = the system's resolv.conf
  std::chrono::milliseconds timeout = default_timeout;
  int tries = default_tries;
};

// One DNS server, its grammar and its one parser (common/src/config/values.hpp): --dns-server's
// validation and the resolver both use it.
using config_table::DnsServer;
using config_table::dns_server_grammar;
using config_table::parse_dns_server;

struct Config {
  boost::asio::ip::tcp::endpoint listen{boost::asio::ip::address_v4::loopback(), 12345};
  // HTTP listener for /metrics, /healthz, /readyz, /status and /users.
  boost::asio::ip::tcp::endpoint http_listen{boost::asio::ip::address_v4::loopback(), 9102};
  unsigned threads = 0;  // 0 = one per core
  std::uint32_t max_frame_size = 16380;
  // An SPOP peer that has not completed HAPROXY-HELLO this long after connecting is closed.
  std::chrono::milliseconds hello_timeout{5000};
  decision::Settings decision;
  // The spawners' event feeds (GET /events), each http://HOST:PORT/PATH; empty = no feed: every
  // answer keeps the TTL-mode timing (docs/architecture.md).
  std::vector<std::string> event_feeds;
  // HAProxy runtime API sockets whose fast_path tables the agent clears on invalidations, and whose
  // user_connections tables GET /connections reads, each as parse_stats_socket reads it; empty =
  // no invalidation channel (holds stay TTL-mode) and /connections reads no HAProxy.
  std::vector<std::string> haproxy_sockets;
  ProbeSettings probe;
  DnsSettings dns;
  LogLevel log_level = LogLevel::info;
  LogFormat log_format = LogFormat::text;
  std::string config_file;  // the JSON file read (--config, DIRECTOR_CONFIG); empty = none
  // Where each value came from, by option key; an option absent here has its default.
  config_table::Sources sources;

  // The number of I/O threads to run (threads, or the core count when 0).
  unsigned effective_threads() const noexcept;
};

// What the command line asks for.
// help_markdown prints the option reference as Markdown (print_markdown). health asks the agent
// running with this configuration for its GET /readyz on http_listen (exit 0 when ready).
using Command = config_table::Command;
using Invocation = config_table::Invocation<Config>;

// Looks up an environment variable; std::nullopt when unset.
using config_table::EnvironmentLookup;
using config_table::process_environment;

// Parses arguments (without argv[0]), the environment and the configuration file they name. On
// failure, the message names the offending flag, variable or file key, the value, and what is
// accepted; for a file that cannot be read or parsed, the file and the reason (with the line and
// column of a syntax error). --help, --help-markdown and --version read no file and validate no
// value.
std::variant<Invocation, std::string> parse(std::span<const std::string_view> arguments,
                                            const EnvironmentLookup& environment);

void print_help(std::ostream& out);
// The option reference as a Markdown table (docs/configuration.md embeds it verbatim).
void print_markdown(std::ostream& out);
// The effective configuration as JSON: one key per option (secret options redacted), then
// effective_threads, version, and sources (where each value came from: default, file,
// environment or flag). Without "config", "effective_threads", "version" and "sources" it is a
// valid configuration file.
std::string to_json(const Config& config);
std::string_view version() noexcept;

}  // namespace director::config

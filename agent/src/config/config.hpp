// The agent's effective configuration: defaults, then an optional JSON file (--config,
// DIRECTOR_CONFIG), then environment variables, then command-line flags (later sources win).
// Every option is described once, in one table (config.cpp), which drives parsing from all three
// sources, validation, --help, the Markdown reference and the effective-configuration print.
#pragma once

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

// Where an option's value came from. Later sources win: default < file < environment < flag.
enum class Source : std::uint8_t { default_value, file, environment, flag };
std::string_view to_string(Source source) noexcept;

// The largest configuration file read, in bytes.
inline constexpr std::size_t max_config_file_size = 1024 * 1024;

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

// One DNS server: where --dns-server entries and the resolver's servers point.
struct DnsServer {
  boost::asio::ip::address address;
  std::uint16_t port = 53;
};

// The one grammar of a DNS server entry, as messages name it.
inline constexpr std::string_view dns_server_grammar = "IP, IPv4:PORT, [IPv6] or [IPv6]:PORT (port 1 to 65535, default 53)";

// Parses one DNS server entry: "ipv4", "ipv4:port", "ipv6", "[ipv6]" or "[ipv6]:port", port 1
// to 65535 (53 when absent). std::nullopt for anything else (host names, "[ipv4]", an IPv6
// address with a port but without brackets). The one parser of this grammar: --dns-server's
// validation and the resolver both use it.
std::optional<DnsServer> parse_dns_server(std::string_view text);

struct Config {
  boost::asio::ip::tcp::endpoint listen{boost::asio::ip::address_v4::loopback(), 12345};
  // HTTP listener for /metrics, /healthz, /readyz, /status and /users.
  boost::asio::ip::tcp::endpoint http_listen{boost::asio::ip::address_v4::loopback(), 9102};
  unsigned threads = 0;  // 0 = one per core
  std::uint32_t max_frame_size = 16380;
  // An SPOP peer that has not completed HAPROXY-HELLO this long after connecting is closed.
  std::chrono::milliseconds hello_timeout{5000};
  decision::Settings decision;
  ProbeSettings probe;
  DnsSettings dns;
  LogLevel log_level = LogLevel::info;
  LogFormat log_format = LogFormat::text;
  std::string config_file;  // the JSON file read (--config, DIRECTOR_CONFIG); empty = none
  // Where each value came from, by option key; an option absent here has its default.
  std::map<std::string, Source, std::less<>> sources;

  // The number of I/O threads to run (threads, or the core count when 0).
  unsigned effective_threads() const noexcept;
};

// What the command line asks for.
// help_markdown prints the option reference as Markdown (print_markdown). health asks the agent
// running with this configuration for its GET /readyz on http_listen (exit 0 when ready).
enum class Command : std::uint8_t { run, help, help_markdown, version, check_config, health };

struct Invocation {
  Command command = Command::run;
  Config config;
};

// Looks up an environment variable; std::nullopt when unset.
using EnvironmentLookup = std::function<std::optional<std::string>(std::string_view name)>;
EnvironmentLookup process_environment();

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

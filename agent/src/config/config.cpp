#include "config/config.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <iomanip>
#include <limits>
#include <sstream>
#include <thread>

namespace director::config {
namespace {

// A parse failure: what is accepted, without the name and value (added by the caller).
using Failure = std::optional<std::string>;
constexpr Failure accepted = std::nullopt;

template <typename Integer>
std::optional<Integer> parse_integer(std::string_view text, Integer low, Integer high) {
  Integer value{};
  const auto* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, value);
  if (error != std::errc{} || stop != end || value < low || value > high) return std::nullopt;
  return value;
}

// "250ms", "2s", "1m".
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 9) return std::nullopt;
  const auto count = parse_integer<std::int64_t>(text.substr(0, digits), 0, 999'999'999);
  const auto unit = text.substr(digits);
  if (!count) return std::nullopt;
  if (unit == "ms") return std::chrono::milliseconds(*count);
  if (unit == "s") return std::chrono::seconds(*count);
  if (unit == "m") return std::chrono::minutes(*count);
  return std::nullopt;
}

std::string format_duration(std::chrono::milliseconds value) {
  if (value.count() % 60'000 == 0 && value.count() != 0) return std::to_string(value.count() / 60'000) + "m";
  if (value.count() % 1000 == 0 && value.count() != 0) return std::to_string(value.count() / 1000) + "s";
  return std::to_string(value.count()) + "ms";
}

Failure set_duration(std::chrono::milliseconds& target, std::string_view text,
                     std::chrono::milliseconds low, std::chrono::milliseconds high) {
  const auto value = parse_duration(text);
  if (!value || *value < low || *value > high)
    return "a duration from " + format_duration(low) + " to " + format_duration(high) +
           " (units ms, s, m; e.g. 500ms)";
  target = *value;
  return accepted;
}

Failure set_duration(decision::Duration& target, std::string_view text,
                     std::chrono::milliseconds low, std::chrono::milliseconds high) {
  std::chrono::milliseconds value{};
  if (auto failure = set_duration(value, text, low, high)) return failure;
  target = value;
  return accepted;
}

bool is_dns_label(std::string_view label) {
  if (label.empty() || label.size() > 63) return false;
  const auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(label.front()) || !alnum(label.back())) return false;
  return std::all_of(label.begin(), label.end(), [&](char c) { return alnum(c) || c == '-'; });
}

// "ip:port", "[ipv6]:port".
std::optional<boost::asio::ip::tcp::endpoint> parse_endpoint(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto host = text.substr(0, colon);
  const auto port = parse_integer<std::uint16_t>(text.substr(colon + 1), 1, 65535);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  boost::system::error_code error;
  const auto address = boost::asio::ip::make_address(std::string(host), error);
  if (error || !port) return std::nullopt;
  return boost::asio::ip::tcp::endpoint(address, *port);
}

// "ip" or "ip:port" (IPv6 with a port as "[ip]:port").
bool is_dns_server(std::string_view text) {
  boost::system::error_code error;
  boost::asio::ip::make_address(std::string(text), error);
  return !error || parse_endpoint(text).has_value();
}

struct Option {
  std::string_view key;         // JSON key in --check-config output
  std::string_view environment; // environment variable
  std::string_view flag;        // --flag VALUE
  std::string_view help;
  Failure (*apply)(Config&, std::string_view);
  nlohmann::ordered_json (*show)(const Config&);
};

std::string_view to_string(decision::UsernameMode mode) {
  return mode == decision::UsernameMode::strict ? "strict" : "escape";
}
std::string_view to_string(ProbeMode mode) { return mode == ProbeMode::tcp ? "tcp" : "http"; }
std::string_view to_string(LogLevel level) {
  switch (level) {
    case LogLevel::error: return "error";
    case LogLevel::warn: return "warn";
    case LogLevel::info: return "info";
    case LogLevel::debug: return "debug";
  }
  return "info";
}

const std::vector<Option>& options() {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  static const std::vector<Option> table = {
      {"listen", "DIRECTOR_LISTEN", "--listen", "SPOP listen address, IP:PORT ([IPv6]:PORT). Default 0.0.0.0:12345",
       [](Config& c, std::string_view v) -> Failure {
         const auto endpoint = parse_endpoint(v);
         if (!endpoint) return "IP:PORT with a port from 1 to 65535, e.g. 127.0.0.1:12345";
         c.listen = *endpoint;
         return accepted;
       },
       [](const Config& c) -> nlohmann::ordered_json {
         std::ostringstream out;
         out << c.listen;
         return out.str();
       }},
      {"threads", "DIRECTOR_THREADS", "--threads", "I/O threads; 0 = one per core. Default 0",
       [](Config& c, std::string_view v) -> Failure {
         const auto value = parse_integer<unsigned>(v, 0, 256);
         if (!value) return "an integer from 0 to 256";
         c.threads = *value;
         return accepted;
       },
       [](const Config& c) -> nlohmann::ordered_json { return c.threads; }},
      {"container_host_prefix", "CONTAINER_HOST_PREFIX", "--container-host-prefix",
       "Container host = PREFIX-<label>. Default vscode",
       [](Config& c, std::string_view v) -> Failure {
         if (!is_dns_label(v) || v.size() > 40)
           return "1 to 40 characters of [a-z0-9-], starting and ending with a letter or digit";
         c.decision.host_prefix = v;
         return accepted;
       },
       [](const Config& c) -> nlohmann::ordered_json { return c.decision.host_prefix; }},
      {"container_port", "CONTAINER_PORT", "--container-port", "Port the user containers listen on. Default 8080",
       [](Config& c, std::string_view v) -> Failure {
         const auto value = parse_integer<std::uint16_t>(v, 1, 65535);
         if (!value) return "an integer from 1 to 65535";
         c.decision.container_port = *value;
         return accepted;
       },
       [](const Config& c) -> nlohmann::ordered_json { return c.decision.container_port; }},
      {"container_domain", "CONTAINER_DOMAIN", "--container-domain",
       "Optional domain appended to the container host (PREFIX-<label>.DOMAIN). Default none",
       [](Config& c, std::string_view v) -> Failure {
         if (v.size() > 180) return "a DNS name of at most 180 characters";
         std::string_view rest = v;
         while (!rest.empty()) {
           const auto dot = rest.find('.');
           if (!is_dns_label(rest.substr(0, dot))) return "dot-separated labels of [a-z0-9-], or empty";
           rest = dot == std::string_view::npos ? std::string_view{} : rest.substr(dot + 1);
           if (dot != std::string_view::npos && rest.empty()) return "a DNS name without a trailing dot";
         }
         c.decision.domain_suffix = v;
         return accepted;
       },
       [](const Config& c) -> nlohmann::ordered_json { return c.decision.domain_suffix; }},
      {"username_mode", "DIRECTOR_USERNAME_MODE", "--username-mode",
       "strict (refuse names that are not DNS labels) or escape (map any name to a safe label). Default strict",
       [](Config& c, std::string_view v) -> Failure {
         if (v == "strict") c.decision.username_mode = decision::UsernameMode::strict;
         else if (v == "escape") c.decision.username_mode = decision::UsernameMode::escape;
         else return "strict or escape";
         return accepted;
       },
       [](const Config& c) -> nlohmann::ordered_json { return to_string(c.decision.username_mode); }},
      {"alive_ttl", "DIRECTOR_ALIVE_TTL", "--alive-ttl",
       "How long an alive answer is served without a new check; bounds how fast a stopped container is abandoned. Default 800ms",
       [](Config& c, std::string_view v) -> Failure {
         return set_duration(c.decision.alive_ttl, v, milliseconds(10), seconds(60));
       },
       [](const Config& c) -> nlohmann::ordered_json {
         return format_duration(std::chrono::duration_cast<milliseconds>(c.decision.alive_ttl));
       }},
      {"refresh_after", "DIRECTOR_REFRESH_AFTER", "--refresh-after",
       "Age after which a request served from an alive answer also starts a background check. Default 300ms",
       [](Config& c, std::string_view v) -> Failure {
         return set_duration(c.decision.refresh_after, v, milliseconds(0), seconds(60));
       },
       [](const Config& c) -> nlohmann::ordered_json {
         return format_duration(std::chrono::duration_cast<milliseconds>(c.decision.refresh_after));
       }},
      {"dead_ttl", "DIRECTOR_DEAD_TTL", "--dead-ttl",
       "How long a not-alive answer is served; bounds how fast a started container is found. Default 500ms",
       [](Config& c, std::string_view v) -> Failure {
         return set_duration(c.decision.dead_ttl, v, milliseconds(0), seconds(60));
       },
       [](const Config& c) -> nlohmann::ordered_json {
         return format_duration(std::chrono::duration_cast<milliseconds>(c.decision.dead_ttl));
       }},
      {"cache_capacity", "DIRECTOR_CACHE_CAPACITY", "--cache-capacity",
       "Users kept in the cache; the least recently used beyond this are forgotten. Default 100000",
       [](Config& c, std::string_view v) -> Failure {
         const auto value = parse_integer<std::size_t>(v, 1, 10'000'000);
         if (!value) return "an integer from 1 to 10000000";
         c.decision.capacity = *value;
         return accepted;
       },
       [](const Config& c) -> nlohmann::ordered_json { return c.decision.capacity; }},
      {"probe_mode", "DIRECTOR_PROBE_MODE", "--probe-mode",
       "tcp (connect) or http (GET DIRECTOR_PROBE_PATH, alive when status < 500). Default tcp",
       [](Config& c, std::string_view v) -> Failure {
         if (v == "tcp") c.probe.mode = ProbeMode::tcp;
         else if (v == "http") c.probe.mode = ProbeMode::http;
         else return "tcp or http";
         return accepted;
       },
       [](const Config& c) -> nlohmann::ordered_json { return to_string(c.probe.mode); }},
      {"probe_path", "DIRECTOR_PROBE_PATH", "--probe-path", "Path of the HTTP probe. Default /",
       [](Config& c, std::string_view v) -> Failure {
         const bool printable = std::all_of(v.begin(), v.end(), [](char ch) { return ch > ' ' && ch < 127; });
         if (v.empty() || v.front() != '/' || !printable || v.size() > 1024)
           return "a path starting with / of printable ASCII without spaces, at most 1024 characters";
         c.probe.http_path = v;
         return accepted;
       },
       [](const Config& c) -> nlohmann::ordered_json { return c.probe.http_path; }},
      {"probe_timeout", "DIRECTOR_PROBE_TIMEOUT", "--probe-timeout", "Liveness probe timeout. Default 250ms",
       [](Config& c, std::string_view v) -> Failure {
         return set_duration(c.probe.timeout, v, milliseconds(1), seconds(30));
       },
       [](const Config& c) -> nlohmann::ordered_json { return format_duration(c.probe.timeout); }},
      {"dns_servers", "DIRECTOR_DNS_SERVER", "--dns-server",
       "Comma-separated DNS servers, IP or IP:PORT ([IPv6]:PORT). Default: the system's resolv.conf",
       [](Config& c, std::string_view v) -> Failure {
         std::vector<std::string> servers;
         std::string_view rest = v;
         while (!rest.empty()) {
           const auto comma = rest.find(',');
           const auto server = rest.substr(0, comma);
           if (!is_dns_server(server)) return "IP or IP:PORT entries separated by commas, e.g. 127.0.0.1:5353";
           servers.emplace_back(server);
           rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
         }
         c.dns.servers = std::move(servers);
         return accepted;
       },
       [](const Config& c) -> nlohmann::ordered_json { return c.dns.servers; }},
      {"dns_timeout", "DIRECTOR_DNS_TIMEOUT", "--dns-timeout", "Timeout of the first DNS try (c-ares doubles it on each retry). Default 250ms",
       [](Config& c, std::string_view v) -> Failure {
         return set_duration(c.dns.timeout, v, milliseconds(10), seconds(30));
       },
       [](const Config& c) -> nlohmann::ordered_json { return format_duration(c.dns.timeout); }},
      {"dns_tries", "DIRECTOR_DNS_TRIES", "--dns-tries", "DNS tries per lookup. Default 2",
       [](Config& c, std::string_view v) -> Failure {
         const auto value = parse_integer<int>(v, 1, 10);
         if (!value) return "an integer from 1 to 10";
         c.dns.tries = *value;
         return accepted;
       },
       [](const Config& c) -> nlohmann::ordered_json { return c.dns.tries; }},
      {"dns_max_cache_ttl", "DIRECTOR_DNS_MAX_CACHE_TTL", "--dns-max-cache-ttl",
       "Longest time a DNS answer is reused (bounded by its TTL). Above 0s, a container address reused by another user's container within that time can receive this user's requests. Default 0s",
       [](Config& c, std::string_view v) -> Failure {
         std::chrono::milliseconds value{};
         if (auto failure = set_duration(value, v, milliseconds(0), std::chrono::hours(1))) return failure;
         if (value.count() % 1000 != 0) return "whole seconds, e.g. 5s";
         c.dns.max_cache_ttl = std::chrono::duration_cast<seconds>(value);
         return accepted;
       },
       [](const Config& c) -> nlohmann::ordered_json { return format_duration(c.dns.max_cache_ttl); }},
      {"max_frame_size", "DIRECTOR_MAX_FRAME_SIZE", "--max-frame-size",
       "Largest SPOP frame accepted, in bytes. Default 16380",
       [](Config& c, std::string_view v) -> Failure {
         const auto value = parse_integer<std::uint32_t>(v, 256, 1'048'576);
         if (!value) return "an integer from 256 to 1048576";
         c.max_frame_size = *value;
         return accepted;
       },
       [](const Config& c) -> nlohmann::ordered_json { return c.max_frame_size; }},
      {"log_level", "DIRECTOR_LOG_LEVEL", "--log-level", "error, warn, info or debug. Default info",
       [](Config& c, std::string_view v) -> Failure {
         if (v == "error") c.log_level = LogLevel::error;
         else if (v == "warn") c.log_level = LogLevel::warn;
         else if (v == "info") c.log_level = LogLevel::info;
         else if (v == "debug") c.log_level = LogLevel::debug;
         else return "error, warn, info or debug";
         return accepted;
       },
       [](const Config& c) -> nlohmann::ordered_json { return to_string(c.log_level); }},
  };
  return table;
}

std::string describe_failure(std::string_view source, std::string_view value, std::string_view expected) {
  return "invalid value '" + std::string(value) + "' for " + std::string(source) + ": expected " +
         std::string(expected);
}

// Checks that hold between options.
Failure check_consistency(const Config& c) {
  if (c.decision.refresh_after >= c.decision.alive_ttl)
    return "DIRECTOR_REFRESH_AFTER (--refresh-after) must be shorter than DIRECTOR_ALIVE_TTL (--alive-ttl)";
  return accepted;
}

}  // namespace

unsigned Config::effective_threads() const noexcept {
  if (threads != 0) return threads;
  return std::max(1U, std::thread::hardware_concurrency());
}

EnvironmentLookup process_environment() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* value = std::getenv(std::string(name).c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

std::variant<Invocation, std::string> parse(std::span<const std::string_view> arguments,
                                            const EnvironmentLookup& environment) {
  Invocation invocation;
  for (const auto& option : options()) {
    const auto value = environment(option.environment);
    if (!value) continue;
    if (auto expected = option.apply(invocation.config, *value))
      return describe_failure(option.environment, *value, *expected);
  }
  for (std::size_t i = 0; i < arguments.size(); ++i) {
    const auto argument = arguments[i];
    if (argument == "--help" || argument == "-h") { invocation.command = Command::help; continue; }
    if (argument == "--version") { invocation.command = Command::version; continue; }
    if (argument == "--check-config") { invocation.command = Command::check_config; continue; }
    // --flag VALUE or --flag=VALUE
    const auto equals = argument.find('=');
    const auto name = argument.substr(0, equals);
    const auto option = std::find_if(options().begin(), options().end(),
                                     [&](const Option& o) { return o.flag == name; });
    if (option == options().end())
      return "unknown argument '" + std::string(argument) + "' (see --help)";
    std::string_view value;
    if (equals != std::string_view::npos) {
      value = argument.substr(equals + 1);
    } else if (i + 1 < arguments.size()) {
      value = arguments[++i];
    } else {
      return "missing value for " + std::string(name) + " (see --help)";
    }
    if (auto expected = option->apply(invocation.config, value))
      return describe_failure(option->flag, value, *expected);
  }
  if (auto problem = check_consistency(invocation.config)) return *problem;
  return invocation;
}

void print_help(std::ostream& out) {
  out << "Usage: director-agent [OPTIONS]\n"
         "SPOE agent for HAProxy that routes each user to their own container when it is alive,\n"
         "and to the container spawner otherwise.\n\n"
         "Every option can be set by its environment variable or its flag (the flag wins).\n\n"
         "  --help             print this help and exit\n"
         "  --version          print the version and exit\n"
         "  --check-config     validate the configuration, print it as JSON and exit\n\n";
  for (const auto& option : options()) {
    out << "  " << std::left << std::setw(26) << (std::string(option.flag) + " VALUE")
        << std::setw(28) << option.environment << option.help << '\n';
  }
}

std::string to_json(const Config& config) {
  nlohmann::ordered_json json;
  for (const auto& option : options()) json[std::string(option.key)] = option.show(config);
  json["effective_threads"] = config.effective_threads();
  json["version"] = version();
  return json.dump();
}

std::string_view version() noexcept { return DIRECTOR_VERSION; }

}  // namespace director::config

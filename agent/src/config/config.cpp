#include "config/config.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <limits>
#include <memory>
#include <set>
#include <sstream>
#include <system_error>
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

// The largest unit that shows the value exactly: "1m", "2s", "250ms"; zero is "0s".
std::string format_duration(std::chrono::milliseconds value) {
  if (value.count() == 0) return "0s";
  if (value.count() % 60'000 == 0) return std::to_string(value.count() / 60'000) + "m";
  if (value.count() % 1000 == 0) return std::to_string(value.count() / 1000) + "s";
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

// An IP address and the port text written after it, if any.
struct AddressAndPort {
  boost::asio::ip::address address;
  std::optional<std::string_view> port;  // the digits after ':', unchecked
};

// The one address grammar of every address option (listen, http_listen, dns_servers):
// "ipv4", "ipv4:port", "ipv6", "[ipv6]" or "[ipv6]:port". Brackets hold IPv6 only; an IPv6
// address without brackets has no port (its last group would be ambiguous).
std::optional<AddressAndPort> split_address_and_port(std::string_view text) {
  std::string_view address_text = text;
  std::optional<std::string_view> port;
  const bool bracketed = text.starts_with('[');
  if (bracketed) {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    address_text = text.substr(1, close - 1);
    const auto rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (!rest.starts_with(':')) return std::nullopt;
      port = rest.substr(1);
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    const auto colon = text.find(':');
    address_text = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  boost::system::error_code error;
  const auto address = boost::asio::ip::make_address(std::string(address_text), error);
  if (error || (bracketed && !address.is_v6()) || (!bracketed && port && !address.is_v4())) return std::nullopt;
  return AddressAndPort{address, port};
}

// "ipv4:port", "[ipv6]:port", with a port from `lowest_port` to 65535. Listen addresses take
// port 0 (the kernel picks a free port; the started log line names the one bound).
std::optional<boost::asio::ip::tcp::endpoint> parse_endpoint(std::string_view text, std::uint16_t lowest_port = 1) {
  const auto parsed = split_address_and_port(text);
  if (!parsed || !parsed->port) return std::nullopt;
  const auto port = parse_integer<std::uint16_t>(*parsed->port, lowest_port, 65535);
  if (!port) return std::nullopt;
  return boost::asio::ip::tcp::endpoint(parsed->address, *port);
}

// One option. Every source hands `apply` text: a configuration file's JSON value is converted
// to text first (see file_text), so the file, the environment and the flags share validation.
// A file key takes the JSON type that `show` prints for the default (string, integer, boolean or
// array of strings), so the options in --check-config's output are valid file syntax.
// `apply` returns, on any refusal, the whole of what the option accepts (never only the rule the
// value broke): --help-markdown prints that text as the option's accepted values.
struct Option {
  std::string_view key;         // JSON key in the configuration file and --check-config output
  std::string_view environment; // environment variable
  std::string_view flag;        // --flag VALUE
  std::string_view help;
  Failure (*apply)(Config&, std::string_view);
  nlohmann::ordered_json (*show)(const Config&);
  bool secret = false;          // redacted by to_json when set (no option is secret yet)
};

// The option naming the configuration file; it cannot appear in the file itself.
constexpr std::string_view config_key = "config";

std::string_view to_string(decision::UsernameMode mode) {
  return mode == decision::UsernameMode::strict ? "strict" : "escape";
}
std::string_view to_string(ProbeMode mode) { return mode == ProbeMode::tcp ? "tcp" : "http"; }

const std::vector<Option>& options() {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  static const std::vector<Option> table = {
      {"config", "DIRECTOR_CONFIG", "--config",
       "JSON file of options (keys as printed by --check-config); the environment and flags override it. Default none",
       [](Config& c, std::string_view v) -> Failure {
         const bool control = std::any_of(v.begin(), v.end(), [](char ch) {
           return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f;
         });
         if (control || v.size() > 4096) return "a file path of at most 4096 characters, or empty for none";
         c.config_file = v;
         return accepted;
       },
       [](const Config& c) -> nlohmann::ordered_json { return c.config_file; }},
      {"listen", "DIRECTOR_LISTEN", "--listen", "SPOP listen address, IP:PORT ([IPv6]:PORT). Default 127.0.0.1:12345 (HAProxy on the same host or pod; set an address deliberately otherwise)",
       [](Config& c, std::string_view v) -> Failure {
         const auto endpoint = parse_endpoint(v, 0);
         if (!endpoint) return "IP:PORT with a port from 0 (any free port) to 65535, e.g. 127.0.0.1:12345";
         c.listen = *endpoint;
         return accepted;
       },
       [](const Config& c) -> nlohmann::ordered_json {
         std::ostringstream out;
         out << c.listen;
         return out.str();
       }},
      {"http_listen", "DIRECTOR_HTTP_LISTEN", "--http-listen",
       "HTTP listen address for /metrics, /healthz, /readyz, /status and /users, IP:PORT ([IPv6]:PORT). Default 127.0.0.1:9102",
       [](Config& c, std::string_view v) -> Failure {
         const auto endpoint = parse_endpoint(v, 0);
         if (!endpoint) return "IP:PORT with a port from 0 (any free port) to 65535, e.g. 127.0.0.1:9102";
         c.http_listen = *endpoint;
         return accepted;
       },
       [](const Config& c) -> nlohmann::ordered_json {
         std::ostringstream out;
         out << c.http_listen;
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
         constexpr std::string_view expected =
             "empty for none, or a DNS name of at most 180 characters without a trailing dot: dot-separated "
             "labels of [a-z0-9-], each starting and ending with a letter or digit";
         if (v.size() > 180) return std::string(expected);
         std::string_view rest = v;
         while (!rest.empty()) {
           const auto dot = rest.find('.');
           if (!is_dns_label(rest.substr(0, dot))) return std::string(expected);
           rest = dot == std::string_view::npos ? std::string_view{} : rest.substr(dot + 1);
           if (dot != std::string_view::npos && rest.empty()) return std::string(expected);
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
      {"stale_if_error", "DIRECTOR_STALE_IF_ERROR", "--stale-if-error",
       "While DNS fails, a user last known alive is probed at its last address if the last check that resolved it through DNS completed less than this long ago (0s: never). Default 1m",
       [](Config& c, std::string_view v) -> Failure {
         return set_duration(c.decision.stale_if_error, v, milliseconds(0), std::chrono::hours(1));
       },
       [](const Config& c) -> nlohmann::ordered_json {
         return format_duration(std::chrono::duration_cast<milliseconds>(c.decision.stale_if_error));
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
       "Comma-separated DNS servers: IP, IPv4:PORT, [IPv6] or [IPv6]:PORT (port 53 when absent). Every check asks them afresh (nothing is cached). Default: the system's resolv.conf",
       [](Config& c, std::string_view v) -> Failure {
         std::vector<std::string> servers;
         std::string_view rest = v;
         while (!rest.empty()) {
           const auto comma = rest.find(',');
           const auto server = rest.substr(0, comma);
           if (!parse_dns_server(server))
             return "entries of " + std::string(dns_server_grammar) +
                    " separated by commas, e.g. 127.0.0.1:5353,[::1]:53 (in the file: an array of strings), or empty "
                    "for the system's resolv.conf";
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
      {"max_frame_size", "DIRECTOR_MAX_FRAME_SIZE", "--max-frame-size",
       "Largest SPOP frame accepted, in bytes. Default 16380",
       [](Config& c, std::string_view v) -> Failure {
         const auto value = parse_integer<std::uint32_t>(v, 256, 1'048'576);
         if (!value) return "an integer from 256 to 1048576";
         c.max_frame_size = *value;
         return accepted;
       },
       [](const Config& c) -> nlohmann::ordered_json { return c.max_frame_size; }},
      {"hello_timeout", "DIRECTOR_HELLO_TIMEOUT", "--hello-timeout",
       "An SPOP connection that has not completed its HELLO this long after connecting is closed (AGENT-DISCONNECT, status timeout). Default 5s",
       [](Config& c, std::string_view v) -> Failure {
         return set_duration(c.hello_timeout, v, milliseconds(100), std::chrono::minutes(10));
       },
       [](const Config& c) -> nlohmann::ordered_json { return format_duration(c.hello_timeout); }},
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
      {"log_format", "DIRECTOR_LOG_FORMAT", "--log-format",
       "text (timestamp level message key=value...) or json (one JSON object per line). Default text",
       [](Config& c, std::string_view v) -> Failure {
         if (v == "text") c.log_format = LogFormat::text;
         else if (v == "json") c.log_format = LogFormat::json;
         else return "text or json";
         return accepted;
       },
       [](const Config& c) -> nlohmann::ordered_json { return to_string(c.log_format); }},
  };
  return table;
}

// One value for one option from one source, as text, not yet validated.
struct Assignment {
  const Option* option = nullptr;
  std::string value;   // what apply() validates
  Source source = Source::default_value;
  std::string origin;  // for messages: "--flag", "VARIABLE" or "key in FILE"
  std::string shown;   // the value as messages show it
};

std::string describe_failure(const Assignment& assignment, std::string_view expected) {
  return "invalid value " + assignment.shown + " for " + assignment.origin + ": expected " + std::string(expected);
}

// A value from the environment or the command line, as messages show it: quoted, control bytes
// escaped (a message is one line and sends nothing to the terminal), at most 80 bytes.
std::string in_quotes(std::string_view value) {
  constexpr std::size_t longest = 80;
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "'";
  for (const char c : value.substr(0, longest)) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\\') {
      out += "\\\\";
    } else if (byte < 0x20 || byte == 0x7f) {
      out += "\\x";
      out += hex[byte >> 4];
      out += hex[byte & 0xf];
    } else {
      out += c;
    }
  }
  out += value.size() > longest ? "'..." : "'";
  return out;
}

// A JSON value in a message: compact, escaped to ASCII, and short.
std::string shown(const nlohmann::ordered_json& value) {
  auto text = value.dump(-1, ' ', true, nlohmann::ordered_json::error_handler_t::replace);
  constexpr std::size_t longest = 80;
  if (text.size() > longest) text = text.substr(0, longest) + "...";
  return text;
}

// --- the configuration file ---------------------------------------------------------------------

enum class JsonKind : std::uint8_t { text, integer, boolean, list };

JsonKind json_kind(const Option& option) {
  const auto shape = option.show(Config{});
  if (shape.is_number_integer()) return JsonKind::integer;
  if (shape.is_boolean()) return JsonKind::boolean;
  if (shape.is_array()) return JsonKind::list;
  return JsonKind::text;
}

std::string_view describe(JsonKind kind) {
  switch (kind) {
    case JsonKind::text: return "a string";
    case JsonKind::integer: return "an integer";
    case JsonKind::boolean: return "true or false";
    case JsonKind::list: return "an array of strings";
  }
  return "a string";
}

std::string_view type_name(JsonKind kind) {
  switch (kind) {
    case JsonKind::text: return "string";
    case JsonKind::integer: return "integer";
    case JsonKind::boolean: return "boolean";
    case JsonKind::list: return "array of strings";
  }
  return "string";
}

// The text form of a file value, as the environment variable would spell it: lists joined with
// commas. std::nullopt with `problem` empty: the JSON type is wrong; with `problem` set: the
// value is refused (`problem` says what is accepted).
std::optional<std::string> file_text(const nlohmann::ordered_json& value, JsonKind kind, std::string& problem) {
  switch (kind) {
    case JsonKind::text:
      if (value.is_string()) return value.get<std::string>();
      return std::nullopt;
    case JsonKind::integer:
      if (value.is_number_integer()) return value.dump();
      return std::nullopt;
    case JsonKind::boolean:
      if (value.is_boolean()) return std::string(value.get<bool>() ? "true" : "false");
      return std::nullopt;
    case JsonKind::list: {
      if (!value.is_array()) return std::nullopt;
      std::string joined;
      bool first = true;
      for (const auto& element : value) {
        if (!element.is_string()) return std::nullopt;
        const auto& text = element.get_ref<const std::string&>();
        if (text.empty() || text.find(',') != std::string::npos) {
          problem = "one non-empty entry per array element, without commas";
          return std::nullopt;
        }
        if (!first) joined += ',';
        joined += text;
        first = false;
      }
      return joined;
    }
  }
  return std::nullopt;
}

const Option* find_option(std::string_view key) {
  const auto found = std::find_if(options().begin(), options().end(), [&](const Option& o) { return o.key == key; });
  return found == options().end() ? nullptr : &*found;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const auto above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0U : 1U)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// A hint for an unknown file key: the key it was probably meant to be.
std::string unknown_key_hint(std::string_view key) {
  if (key == "effective_threads" || key == "version" || key == "sources")
    return " (--check-config prints it, but it is not an option)";
  // Spelled as the environment variable or the flag?
  for (const auto& option : options()) {
    if (key == option.environment || key == option.flag || key == option.flag.substr(2))
      return "; did you mean \"" + std::string(option.key) + "\"?";
  }
  std::string normalized;
  for (const char c : key) normalized += c == '-' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const Option* closest = nullptr;
  std::size_t best = std::numeric_limits<std::size_t>::max();
  for (const auto& option : options()) {
    const auto distance = edit_distance(normalized, option.key);
    if (distance < best) { best = distance; closest = &option; }
  }
  if (closest != nullptr && best <= std::max<std::size_t>(2, closest->key.size() / 4))
    return "; did you mean \"" + std::string(closest->key) + "\"?";
  return " (director-agent --help lists the keys)";
}

// The file's text, at most max_config_file_size bytes, or why it cannot be read.
std::optional<std::string> read_bounded(const std::string& path, std::string& error) {
  const auto describe_errno = [&](std::string_view what) {
    error = std::string(what) + " " + path + ": " + std::generic_category().message(errno);
  };
  struct Close {
    void operator()(std::FILE* file) const noexcept { std::fclose(file); }
  };
  const std::unique_ptr<std::FILE, Close> file(std::fopen(path.c_str(), "rb"));
  if (!file) {
    describe_errno("cannot open configuration file");
    return std::nullopt;
  }
  std::string text(max_config_file_size + 1, '\0');
  const auto size = std::fread(text.data(), 1, text.size(), file.get());
  if (std::ferror(file.get()) != 0) {
    describe_errno("cannot read configuration file");
    return std::nullopt;
  }
  if (size > max_config_file_size) {
    error = "configuration file " + path + " is larger than " + std::to_string(max_config_file_size) + " bytes";
    return std::nullopt;
  }
  text.resize(size);
  return text;
}

// nlohmann's message without its "[json.exception.parse_error.101] " prefix.
std::string_view exception_message(const char* what) {
  std::string_view message(what);
  if (!message.empty() && message.front() == '[') {
    const auto end = message.find("] ");
    if (end != std::string_view::npos) message.remove_prefix(end + 2);
  }
  return message;
}

// The file's options, in file order, converted to text; or what is wrong with the file.
std::variant<std::vector<Assignment>, std::string> read_config_file(const std::string& path) {
  using Json = nlohmann::ordered_json;
  std::string error;
  const auto text = read_bounded(path, error);
  if (!text) return error;
  if (text->find_first_not_of(" \t\r\n") == std::string::npos)
    return "configuration file " + path + " is empty: it must hold one JSON object, e.g. {\"container_port\": 8080}";
  Json document;
  std::set<std::string, std::less<>> seen;
  std::string duplicate;
  try {
    document = Json::parse(*text, [&](int depth, Json::parse_event_t event, Json& parsed) {
      if (depth == 1 && event == Json::parse_event_t::key && parsed.is_string()) {
        if (!seen.insert(parsed.get<std::string>()).second && duplicate.empty()) duplicate = shown(parsed);
      }
      return true;
    });
  } catch (const Json::exception& failure) {
    return "malformed configuration file " + path + ": " + std::string(exception_message(failure.what()));
  }
  if (!document.is_object())
    return "configuration file " + path + " must hold one JSON object, e.g. {\"container_port\": 8080}";
  if (!duplicate.empty()) return "duplicate key " + duplicate + " in " + path;

  std::vector<Assignment> assignments;
  for (const auto& [key, value] : document.items()) {
    const auto* option = find_option(key);
    if (option == nullptr) return "unknown key " + shown(Json(key)) + " in " + path + unknown_key_hint(key);
    if (option->key == config_key)
      return "key \"config\" in " + path + ": a configuration file cannot name another one";
    const auto kind = json_kind(*option);
    std::string problem;
    auto converted = file_text(value, kind, problem);
    Assignment assignment{option, {}, Source::file, std::string(option->key) + " in " + path, shown(value)};
    if (!converted && !problem.empty()) return describe_failure(assignment, problem);
    if (!converted)
      return "wrong type for " + assignment.origin + ": expected " + std::string(describe(kind)) + ", got " +
             value.type_name() + " " + assignment.shown;
    assignment.value = std::move(*converted);
    assignments.push_back(std::move(assignment));
  }
  return assignments;
}

// "key (VARIABLE, --flag) is VALUE (SOURCE)", for messages about two options at once.
std::string described(const Config& c, std::string_view key) {
  const auto* option = find_option(key);
  if (option == nullptr) return std::string(key);
  const auto source = c.sources.find(key);
  const auto from = source == c.sources.end() ? Source::default_value : source->second;
  return std::string(key) + " (" + std::string(option->environment) + ", " + std::string(option->flag) + ") is " +
         shown(option->show(c)) + " (" + std::string(to_string(from)) + ")";
}

// Whether listening on `a` keeps `b` from being bound (Linux, dual-stack IPv6 sockets). Port 0
// never collides: the kernel gives each listener a free port of its own.
bool overlaps(const boost::asio::ip::tcp::endpoint& a, const boost::asio::ip::tcp::endpoint& b) {
  if (a.port() != b.port() || a.port() == 0) return false;
  const auto covers = [](const boost::asio::ip::address& wide, const boost::asio::ip::address& other) {
    return wide.is_unspecified() && (wide.is_v6() || other.is_v4());
  };
  return a.address() == b.address() || covers(a.address(), b.address()) || covers(b.address(), a.address());
}

// Checks that hold between options.
Failure check_consistency(const Config& c) {
  if (c.decision.refresh_after >= c.decision.alive_ttl)
    return "inconsistent options: " + described(c, "refresh_after") + ", " + described(c, "alive_ttl") +
           "; refresh_after must be shorter than alive_ttl";
  if (overlaps(c.listen, c.http_listen))
    return "inconsistent options: " + described(c, "listen") + ", " + described(c, "http_listen") +
           "; they must be addresses that can both be bound (different ports, or different specific addresses)";
  return accepted;
}

// The commands, which take no value.
constexpr std::string_view command_flags[] = {"--help", "--help-markdown", "--version", "--check-config", "--health"};

// A hint for an unknown argument (`name` is the part before any '='): the flag it was probably
// meant to be, spelled as a flag, a variable, a key, or close to one.
std::string unknown_argument_hint(std::string_view name) {
  std::string normalized;
  const auto start = name.find_first_not_of('-');
  if (start != std::string_view::npos) {
    for (const char c : name.substr(start))
      normalized += c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  std::vector<std::string_view> candidates(std::begin(command_flags), std::end(command_flags));
  for (const auto& option : options()) {
    if (name == option.environment || name == option.key) return "; did you mean " + std::string(option.flag) + "?";
    candidates.push_back(option.flag);
  }
  std::string_view closest;
  std::size_t best = std::numeric_limits<std::size_t>::max();
  for (const auto candidate : candidates) {
    const auto distance = edit_distance(normalized, candidate.substr(2));
    if (distance < best) {
      best = distance;
      closest = candidate;
    }
  }
  if (!normalized.empty() && best <= std::max<std::size_t>(2, closest.size() / 4))
    return "; did you mean " + std::string(closest) + "?";
  return " (see --help)";
}

// What an option accepts, in its parser's own words: the failure it reports for a value that no
// option accepts. Keeps --help-style references in step with validation.
std::string accepted_values(const Option& option) {
  Config scratch;
  const auto failure = option.apply(scratch, "\x01");
  return failure ? *failure : std::string("any text");
}

// A Markdown table cell: pipes escaped, no line breaks, and no HTML ("PREFIX-<label>" would
// otherwise be read as a <label> element and vanish).
std::string cell(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += ' ';
    else if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else out += c;
  }
  return out;
}

}  // namespace

std::string_view to_string(Source source) noexcept {
  switch (source) {
    case Source::default_value: return "default";
    case Source::file: return "file";
    case Source::environment: return "environment";
    case Source::flag: return "flag";
  }
  return "default";
}

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
  std::vector<Assignment> from_environment;
  std::vector<Assignment> from_flags;
  for (const auto& option : options()) {
    auto value = environment(option.environment);
    if (!value) continue;
    auto shown_value = in_quotes(*value);
    from_environment.push_back(
        {&option, std::move(*value), Source::environment, std::string(option.environment), std::move(shown_value)});
  }
  for (std::size_t i = 0; i < arguments.size(); ++i) {
    const auto argument = arguments[i];
    if (argument == "--help" || argument == "-h") { invocation.command = Command::help; continue; }
    if (argument == "--help-markdown") { invocation.command = Command::help_markdown; continue; }
    if (argument == "--version") { invocation.command = Command::version; continue; }
    if (argument == "--check-config") { invocation.command = Command::check_config; continue; }
    if (argument == "--health") { invocation.command = Command::health; continue; }
    // --flag VALUE or --flag=VALUE
    const auto equals = argument.find('=');
    const auto name = argument.substr(0, equals);
    const auto option = std::find_if(options().begin(), options().end(),
                                     [&](const Option& o) { return o.flag == name; });
    if (option == options().end())
      return "unknown argument " + in_quotes(argument) + unknown_argument_hint(name);
    std::string_view value;
    if (equals != std::string_view::npos) {
      value = argument.substr(equals + 1);
    } else if (i + 1 < arguments.size()) {
      value = arguments[++i];
    } else {
      return "missing value for " + std::string(name) + ": expected " + accepted_values(*option) + " (see --help)";
    }
    from_flags.push_back({&*option, std::string(value), Source::flag, std::string(option->flag), in_quotes(value)});
  }
  if (invocation.command == Command::help || invocation.command == Command::help_markdown ||
      invocation.command == Command::version)
    return invocation;

  // The file named by the last --config, else by DIRECTOR_CONFIG; read before anything applies,
  // applied first, so the environment and the flags override it.
  std::vector<Assignment> from_file;
  std::string path;
  for (const auto* list : {&from_environment, &from_flags}) {
    for (const auto& assignment : *list) {
      if (assignment.option->key != config_key) continue;
      Config scratch;
      if (auto expected = assignment.option->apply(scratch, assignment.value))
        return describe_failure(assignment, *expected);
      path = assignment.value;
    }
  }
  if (!path.empty()) {
    auto read = read_config_file(path);
    if (auto* error = std::get_if<std::string>(&read)) return std::move(*error);
    from_file = std::get<std::vector<Assignment>>(std::move(read));
  }

  auto& config = invocation.config;
  for (const auto* list : {&from_file, &from_environment, &from_flags}) {
    for (const auto& assignment : *list) {
      if (auto expected = assignment.option->apply(config, assignment.value))
        return describe_failure(assignment, *expected);
      config.sources.insert_or_assign(std::string(assignment.option->key), assignment.source);
    }
  }
  if (auto problem = check_consistency(config)) return *problem;
  return invocation;
}

void print_help(std::ostream& out) {
  out << "Usage: director-agent [OPTIONS]\n"
         "SPOE agent for HAProxy that routes each user to their own container when it is alive,\n"
         "and to the container spawner otherwise.\n\n"
         "Every option has a flag (--flag VALUE or --flag=VALUE), an environment variable and a\n"
         "key in the JSON file named by --config. Precedence, lowest first: default, file,\n"
         "environment, flag.\n\n"
         "  --help             print this help and exit\n"
         "  --help-markdown    print the option reference as a Markdown table and exit\n"
         "  --version          print the version and exit\n"
         "  --check-config     validate the configuration, print it as JSON (with the source of\n"
         "                     each value) and exit\n"
         "  --health           ask the agent running with this configuration for GET /readyz on\n"
         "                     http_listen (loopback when it is 0.0.0.0 or ::); exit 0 when it is\n"
         "                     ready, 1 otherwise with the reason on stderr (container health checks)\n\n";
  for (const auto& option : options()) {
    out << "  " << std::left << std::setw(30) << (std::string(option.flag) + " VALUE ") << std::setw(28)
        << option.environment;
    if (option.key == config_key) out << "(not in the file)";
    else out << '"' << option.key << "\": " << type_name(json_kind(option));
    out << "\n      " << option.help << '\n';
  }
}

void print_markdown(std::ostream& out) {
  out << "| JSON key | environment variable | flag | JSON type | default | accepted values | meaning |\n"
         "|---|---|---|---|---|---|---|\n";
  const Config defaults;
  for (const auto& option : options()) {
    const bool in_file = option.key != config_key;
    out << "| " << (in_file ? "`" + std::string(option.key) + "`" : std::string("(not in the file)")) << " | `"
        << option.environment << "` | `" << option.flag << "` | "
        << (in_file ? type_name(json_kind(option)) : std::string_view("string")) << " | `"
        << cell(shown(option.show(defaults))) << "` | " << cell(accepted_values(option)) << " | " << cell(option.help)
        << " |\n";
  }
}

std::string to_json(const Config& config) {
  nlohmann::ordered_json json;
  nlohmann::ordered_json sources;
  for (const auto& option : options()) {
    const std::string key(option.key);
    const auto source = config.sources.find(key);
    const bool set = source != config.sources.end();
    json[key] = option.secret && set ? nlohmann::ordered_json("(redacted)") : option.show(config);
    sources[key] = to_string(set ? source->second : Source::default_value);
  }
  json["effective_threads"] = config.effective_threads();
  json["version"] = version();
  json["sources"] = std::move(sources);
  return json.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string_view version() noexcept { return DIRECTOR_VERSION; }

std::optional<DnsServer> parse_dns_server(std::string_view text) {
  const auto parsed = split_address_and_port(text);
  if (!parsed) return std::nullopt;
  DnsServer server{parsed->address, 53};
  if (parsed->port) {
    const auto port = parse_integer<std::uint16_t>(*parsed->port, 1, 65535);
    if (!port) return std::nullopt;
    server.port = *port;
  }
  return server;
}

}  // namespace director::config

#include "config/config.hpp"

#include "config/option_table.hpp"
#include "feed/feed_url.hpp"

namespace director::config {
namespace {

using config_table::accepted;
using config_table::Failure;
using config_table::format_duration;
using config_table::ListSeparators;
using config_table::parse_integer;
using config_table::set_duration;
using Option = config_table::Option<Config>;
using Table = config_table::OptionTable<Config>;

// The option naming the configuration file; it cannot appear in the file itself.
constexpr std::string_view config_key = "config";

std::string_view to_string(decision::UsernameMode mode) {
  return mode == decision::UsernameMode::strict ? "strict" : "escape";
}
std::string_view to_string(ProbeMode mode) { return mode == ProbeMode::tcp ? "tcp" : "http"; }

bool is_feed_url(std::string_view text) { return feed::parse_feed_url(text).has_value(); }

std::vector<Option> options() {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  return {
      {"config", "DIRECTOR_CONFIG", "--config",
       "JSON file of options (keys as printed by --check-config); the environment and flags override it. Default none",
       [](Config& c, std::string_view v) { return config_table::set_config_path(c.config_file, v); },
       [](const Config& c) -> nlohmann::ordered_json { return c.config_file; }},
      {"listen", "DIRECTOR_LISTEN", "--listen", "SPOP listen address, IP:PORT ([IPv6]:PORT). Default 127.0.0.1:12345 (HAProxy on the same host or pod; set an address deliberately otherwise)",
       [](Config& c, std::string_view v) { return config_table::set_listen_address(c.listen, v, "127.0.0.1:12345"); },
       [](const Config& c) -> nlohmann::ordered_json { return config_table::format_endpoint(c.listen); }},
      {"http_listen", "DIRECTOR_HTTP_LISTEN", "--http-listen",
       "HTTP listen address for /metrics, /healthz, /readyz, /status and /users, IP:PORT ([IPv6]:PORT). Default 127.0.0.1:9102",
       [](Config& c, std::string_view v) { return config_table::set_listen_address(c.http_listen, v, "127.0.0.1:9102"); },
       [](const Config& c) -> nlohmann::ordered_json { return config_table::format_endpoint(c.http_listen); }},
      {"threads", "DIRECTOR_THREADS", "--threads", "I/O threads; 0 = one per core. Default 0",
       [](Config& c, std::string_view v) { return config_table::set_threads(c.threads, v); },
       [](const Config& c) -> nlohmann::ordered_json { return c.threads; }},
      {"container_host_prefix", "CONTAINER_HOST_PREFIX", "--container-host-prefix",
       "Container host = PREFIX-<label>. Default vscode",
       [](Config& c, std::string_view v) { return config_table::set_container_host_prefix(c.decision.host_prefix, v); },
       [](const Config& c) -> nlohmann::ordered_json { return c.decision.host_prefix; }},
      {"container_port", "CONTAINER_PORT", "--container-port", "Port the user containers listen on. Default 8080",
       [](Config& c, std::string_view v) { return config_table::set_port(c.decision.container_port, v); },
       [](const Config& c) -> nlohmann::ordered_json { return c.decision.container_port; }},
      {"container_domain", "CONTAINER_DOMAIN", "--container-domain",
       "Optional domain appended to the container host (PREFIX-<label>.DOMAIN). Default none",
       [](Config& c, std::string_view v) { return config_table::set_container_domain(c.decision.domain_suffix, v); },
       [](const Config& c) -> nlohmann::ordered_json { return c.decision.domain_suffix; }},
      {"username_mode", "DIRECTOR_USERNAME_MODE", "--username-mode",
       "escape (a name that is a DNS label is its own label, any other maps to a safe label) or strict (refuse names that are not DNS labels). Default escape",
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
      {"event_feeds", "DIRECTOR_EVENT_FEEDS", "--event-feeds",
       "The spawners' event feeds (GET /events), http://HOST:PORT/PATH, separated by spaces or commas. An alive "
       "answer for a container a connected feed reports running and not unhealthy is served for "
       "DIRECTOR_EVENT_BACKSTOP and replaced as soon as a feed reports a change. Default none: TTL mode only",
       [](Config& c, std::string_view v) {
         return config_table::set_list(
             c.event_feeds, v, ListSeparators::spaces_or_commas, is_feed_url,
             "entries of http://HOST:PORT/PATH separated by spaces or commas, e.g. http://127.0.0.1:9181/events (in "
             "the file: an array of strings), or empty for none");
       },
       [](const Config& c) -> nlohmann::ordered_json { return c.event_feeds; }},
      {"event_backstop", "DIRECTOR_EVENT_BACKSTOP", "--event-backstop",
       "How long an alive answer covered by an event feed is served without a new check (a request starts a "
       "background re-check from 5/8 to 3/4 of it, a point fixed per user; HAProxy holds it 2 minutes at most, "
       "then asks again). "
       "Default 1m",
       [](Config& c, std::string_view v) -> Failure {
         return set_duration(c.decision.event_alive_ttl, v, seconds(1), std::chrono::hours(1));
       },
       [](const Config& c) -> nlohmann::ordered_json {
         return format_duration(std::chrono::duration_cast<milliseconds>(c.decision.event_alive_ttl));
       }},
      {"fast_path_hold", "DIRECTOR_FAST_PATH_HOLD", "--fast-path-hold",
       "How long after a check HAProxy may reuse an alive answer without asking the agent, unless the answer is "
       "covered by an event feed and every HAProxy socket is reachable; at most DIRECTOR_ALIVE_TTL, 0s: never. "
       "Default 500ms",
       [](Config& c, std::string_view v) -> Failure {
         return set_duration(c.decision.fast_path_hold, v, milliseconds(0), seconds(60));
       },
       [](const Config& c) -> nlohmann::ordered_json {
         return format_duration(std::chrono::duration_cast<milliseconds>(c.decision.fast_path_hold));
       }},
      {"haproxy_sockets", "DIRECTOR_HAPROXY_SOCKETS", "--haproxy-sockets",
       "HAProxy runtime API sockets, separated by spaces or commas, whose fast_path tables the agent clears when "
       "an answer is invalidated, and whose user_connections tables GET /connections reads for the spawner's idle "
       "retirement. While every one is reachable, HAProxy may hold an answer covered by an event "
       "feed for up to 3/4 of DIRECTOR_EVENT_BACKSTOP (2 minutes at most). Default none",
       [](Config& c, std::string_view v) {
         return config_table::set_stats_sockets(c.haproxy_sockets, v, ListSeparators::spaces_or_commas);
       },
       [](const Config& c) -> nlohmann::ordered_json { return c.haproxy_sockets; }},
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
       [](Config& c, std::string_view v) { return config_table::set_dns_servers(c.dns.servers, v); },
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
       [](Config& c, std::string_view v) { return config_table::set_log_level(c.log_level, v); },
       [](const Config& c) -> nlohmann::ordered_json { return to_string(c.log_level); }},
      {"log_format", "DIRECTOR_LOG_FORMAT", "--log-format",
       "text (timestamp level message key=value...) or json (one JSON object per line). Default text",
       [](Config& c, std::string_view v) { return config_table::set_log_format(c.log_format, v); },
       [](const Config& c) -> nlohmann::ordered_json { return to_string(c.log_format); }},
  };
}

const Table& table() {
  static const Table table(config_table::Program{.name = "director-agent",
                                                 .description = "SPOE agent for HAProxy that routes each user to their own container when it is alive,\n"
                         "and to the container spawner otherwise.",
                                                 .commands = config_table::standard_commands("agent"),
                                                 .config_key = config_key},
                           options());
  return table;
}

// "key (VARIABLE, --flag) is VALUE (SOURCE)", for messages about two options at once.
std::string described(const Config& c, std::string_view key) { return table().described(c, key); }


// Checks that hold between options.
Failure check_consistency(const Config& c) {
  if (c.decision.refresh_after >= c.decision.alive_ttl)
    return "inconsistent options: " + described(c, "refresh_after") + ", " + described(c, "alive_ttl") +
           "; refresh_after must be shorter than alive_ttl";
  if (c.decision.fast_path_hold > c.decision.alive_ttl)
    return "inconsistent options: " + described(c, "fast_path_hold") + ", " + described(c, "alive_ttl") +
           "; fast_path_hold must not be longer than alive_ttl (HAProxy would reuse answers the agent no longer "
           "serves)";
  return table().check_bindable(c, "listen", c.listen, "http_listen", c.http_listen);
}

}  // namespace

unsigned Config::effective_threads() const noexcept { return config_table::effective_threads(threads); }

std::variant<Invocation, std::string> parse(std::span<const std::string_view> arguments,
                                            const EnvironmentLookup& environment) {
  return table().parse(arguments, environment, check_consistency);
}

void print_help(std::ostream& out) { table().print_help(out); }

void print_markdown(std::ostream& out) { table().print_markdown(out); }

std::string to_json(const Config& config) { return table().to_json(config, version()); }

std::string_view version() noexcept { return DIRECTOR_VERSION; }

}  // namespace director::config

// The value grammars of the configuration, one parser each, shared by the agent's and the
// spawner's option tables (and by the code that uses the values: the resolver parses its DNS
// servers with parse_dns_server). Pure: no I/O.
#pragma once

#include "config/option_types.hpp"
#include "log/log.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>
#include <vector>

namespace director::config_table {

// A decimal integer from `low` to `high`, digits only (no sign for unsigned, no spaces).
template <typename Integer>
std::optional<Integer> parse_integer(std::string_view text, Integer low, Integer high) {
  Integer value{};
  const auto* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, value);
  if (error != std::errc{} || stop != end || value < low || value > high) return std::nullopt;
  return value;
}

// "250ms", "2s", "1m": at most 9 digits and one unit.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

// The largest unit that shows the value exactly: "1m", "2s", "250ms"; zero is "0s".
std::string format_duration(std::chrono::milliseconds value);

// What a duration option from `low` to `high` accepts, as messages and --help-markdown say it.
std::string duration_accepted(std::chrono::milliseconds low, std::chrono::milliseconds high);

// Sets `target` to a duration from `low` to `high`, or says what is accepted.
template <typename Rep, typename Period>
Failure set_duration(std::chrono::duration<Rep, Period>& target, std::string_view text,
                     std::chrono::milliseconds low, std::chrono::milliseconds high) {
  const auto value = parse_duration(text);
  if (!value || *value < low || *value > high) return duration_accepted(low, high);
  target = std::chrono::duration_cast<std::chrono::duration<Rep, Period>>(*value);
  return accepted;
}

// "true" or "false" (a file's JSON booleans arrive as this text).
std::optional<bool> parse_boolean(std::string_view text);

// A DNS label: 1 to 63 characters of [a-z0-9-], starting and ending with a letter or digit.
bool is_dns_label(std::string_view text);

// A DNS name without a trailing dot: dot-separated DNS labels (the empty text is not one).
bool is_dns_name(std::string_view text);

// What separates the entries of a list option, as an environment variable or a flag spells it
// (a file's array of strings arrives joined with commas). Each option keeps the separators it
// was published with: an operator's value never changes meaning.
enum class ListSeparators : std::uint8_t {
  // "a,b" is two entries; an empty entry between two commas reaches the entry's parser as "".
  commas,
  // Any run of spaces and commas separates two entries: " a, b,,c " is three entries.
  spaces_or_commas,
};

// "commas", "spaces or commas": the separators as messages name them.
std::string_view separated_by(ListSeparators separators);

// The entries of a list ("" is no entry under either separators), each checked by the option's
// own parser afterwards.
std::vector<std::string_view> split_list(std::string_view text, ListSeparators separators = ListSeparators::commas);

// The one list setter of both programs: sets `target` to the entries of `text` when `valid`
// accepts every one; otherwise leaves `target` as it is and returns `accepted_values`, the
// whole of what the option accepts.
Failure set_list(std::vector<std::string>& target, std::string_view text, ListSeparators separators,
                 bool (*valid)(std::string_view), std::string_view accepted_values);

// Text that is safe to print and store as a path: no control characters, at most `longest` bytes.
bool is_plain_text(std::string_view text, std::size_t longest);

// An IP address and the port text written after it, if any.
struct AddressAndPort {
  boost::asio::ip::address address;
  std::optional<std::string_view> port;  // the digits after ':', unchecked
};

// The one address grammar of every address option (listen addresses, DNS servers, HAProxy
// sockets, agents): "ipv4", "ipv4:port", "ipv6", "[ipv6]" or "[ipv6]:port". Brackets hold IPv6
// only; an IPv6 address without brackets has no port (its last group would be ambiguous).
std::optional<AddressAndPort> split_address_and_port(std::string_view text);

// "ipv4:port", "[ipv6]:port", with a port from `lowest_port` to 65535. Listen addresses take
// port 0 (the kernel picks a free port; the started log line names the one bound).
std::optional<boost::asio::ip::tcp::endpoint> parse_endpoint(std::string_view text, std::uint16_t lowest_port = 1);

// "127.0.0.1:9180", "[::1]:9180": the text parse_endpoint reads back.
std::string format_endpoint(const boost::asio::ip::tcp::endpoint& endpoint);

// Whether listening on `a` keeps `b` from being bound (Linux, dual-stack IPv6 sockets). Port 0
// never collides: the kernel gives each listener a free port of its own.
bool overlaps(const boost::asio::ip::tcp::endpoint& a, const boost::asio::ip::tcp::endpoint& b);

// An absolute unix socket path: at most 107 bytes (sun_path holds 108 with the NUL), no control
// characters, no comma (lists are comma-separated).
bool is_socket_path(std::string_view path);

// A TCP peer named by DNS: whoever connects resolves `name` each time it needs the peers, and
// every address the name yields is one peer (a headless Service's A records: one per Pod).
struct NamedEndpoint {
  std::string name;  // as parse_endpoint_or_name takes it: never an IPv4 address
  std::uint16_t port = 0;
  friend bool operator==(const NamedEndpoint&, const NamedEndpoint&) = default;
};

// A TCP peer by address, or by a DNS name resolved at each use.
using EndpointOrName = std::variant<boost::asio::ip::tcp::endpoint, NamedEndpoint>;

// The one grammar of a TCP peer that may be named: parse_endpoint's "ipv4:port" and
// "[ipv6]:port" (port 1 to 65535), or "NAME:PORT" with NAME a DNS name of at most 253
// characters (is_dns_name: lowercase, no trailing dot) whose last label is not all digits, so
// that "300.1.1.1:80" is a bad address, never a name. std::nullopt for anything else.
std::optional<EndpointOrName> parse_endpoint_or_name(std::string_view text);

// An HAProxy stats socket (runtime API): a unix socket path or a TCP address. Never a DNS name:
// the agent talks to the HAProxy beside it.
using StatsSocket = std::variant<std::string, boost::asio::ip::tcp::endpoint>;
// The one parser of a stats socket entry (the agent's DIRECTOR_HAPROXY_SOCKETS,
// net::haproxy_command): an absolute unix socket path (is_socket_path) or IP:PORT ([IPv6]:PORT).
// std::nullopt for anything else.
std::optional<StatsSocket> parse_stats_socket(std::string_view text);

// Sets `target` to a list of stats sockets (parse_stats_socket), or says what is accepted: the
// agent's haproxy_sockets (spaces or commas).
Failure set_stats_sockets(std::vector<std::string>& target, std::string_view text, ListSeparators separators);

// One DNS server: where --dns-server entries and the resolver's servers point.
struct DnsServer {
  boost::asio::ip::address address;
  std::uint16_t port = 53;
};

// The one grammar of a DNS server entry, as messages name it.
inline constexpr std::string_view dns_server_grammar = "IP, IPv4:PORT, [IPv6] or [IPv6]:PORT (port 1 to 65535, default 53)";

// Parses one DNS server entry: "ipv4", "ipv4:port", "ipv6", "[ipv6]" or "[ipv6]:port", port 1
// to 65535 (53 when absent). std::nullopt for anything else (host names, "[ipv4]", an IPv6
// address with a port but without brackets). The one parser of this grammar: the DNS server
// options of both programs and the resolver use it.
std::optional<DnsServer> parse_dns_server(std::string_view text);

// What a DNS server list option accepts (the agent's --dns-server, the spawner's).
std::string dns_server_list_accepted();

// Sets `target` to the entries of a comma-separated DNS server list, or says what is accepted.
Failure set_dns_servers(std::vector<std::string>& target, std::string_view text);

// --- setters of the options both programs have, with their one message each ------------------

// The configuration file's path: no control characters, at most 4096 bytes; empty: none.
Failure set_config_path(std::string& target, std::string_view text);
// A listen address: IP:PORT ([IPv6]:PORT), port 0 = any free port. `example` ends the message.
Failure set_listen_address(boost::asio::ip::tcp::endpoint& target, std::string_view text, std::string_view example);
// I/O threads, 0 (one per core) to 256.
Failure set_threads(unsigned& target, std::string_view text);
// CONTAINER_HOST_PREFIX: a DNS label of at most 40 characters.
Failure set_container_host_prefix(std::string& target, std::string_view text);
// A TCP port, 1 to 65535 (CONTAINER_PORT).
Failure set_port(std::uint16_t& target, std::string_view text);
// CONTAINER_DOMAIN: empty, or a DNS name of at most 180 characters.
Failure set_container_domain(std::string& target, std::string_view text);
Failure set_log_level(LogLevel& target, std::string_view text);
Failure set_log_format(LogFormat& target, std::string_view text);

}  // namespace director::config_table

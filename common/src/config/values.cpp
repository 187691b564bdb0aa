#include "config/values.hpp"

#include <sstream>

namespace director::config_table {

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
  if (value.count() == 0) return "0s";
  if (value.count() % 60'000 == 0) return std::to_string(value.count() / 60'000) + "m";
  if (value.count() % 1000 == 0) return std::to_string(value.count() / 1000) + "s";
  return std::to_string(value.count()) + "ms";
}

std::string duration_accepted(std::chrono::milliseconds low, std::chrono::milliseconds high) {
  return "a duration from " + format_duration(low) + " to " + format_duration(high) + " (units ms, s, m; e.g. 500ms)";
}

std::optional<bool> parse_boolean(std::string_view text) {
  if (text == "true") return true;
  if (text == "false") return false;
  return std::nullopt;
}

bool is_dns_label(std::string_view label) {
  if (label.empty() || label.size() > 63) return false;
  const auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(label.front()) || !alnum(label.back())) return false;
  return std::all_of(label.begin(), label.end(), [&](char c) { return alnum(c) || c == '-'; });
}

bool is_dns_name(std::string_view text) {
  if (text.empty()) return false;
  std::string_view rest = text;
  while (!rest.empty()) {
    const auto dot = rest.find('.');
    if (!is_dns_label(rest.substr(0, dot))) return false;
    rest = dot == std::string_view::npos ? std::string_view{} : rest.substr(dot + 1);
    if (dot != std::string_view::npos && rest.empty()) return false;
  }
  return true;
}

std::string_view separated_by(ListSeparators separators) {
  return separators == ListSeparators::commas ? "commas" : "spaces or commas";
}

std::vector<std::string_view> split_list(std::string_view text, ListSeparators separators) {
  std::vector<std::string_view> entries;
  if (separators == ListSeparators::commas) {
    std::string_view rest = text;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      entries.push_back(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    }
    return entries;
  }
  constexpr std::string_view spaces_and_commas = " ,";
  for (auto start = text.find_first_not_of(spaces_and_commas); start != std::string_view::npos;
       start = text.find_first_not_of(spaces_and_commas, start)) {
    const auto end = std::min(text.find_first_of(spaces_and_commas, start), text.size());
    entries.push_back(text.substr(start, end - start));
    start = end;
  }
  return entries;
}

Failure set_list(std::vector<std::string>& target, std::string_view text, ListSeparators separators,
                 bool (*valid)(std::string_view), std::string_view accepted_values) {
  std::vector<std::string> entries;
  for (const auto entry : split_list(text, separators)) {
    if (!valid(entry)) return std::string(accepted_values);
    entries.emplace_back(entry);
  }
  target = std::move(entries);
  return accepted;
}

bool is_plain_text(std::string_view text, std::size_t longest) {
  const bool control = std::any_of(text.begin(), text.end(), [](char ch) {
    return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f;
  });
  return !control && text.size() <= longest;
}

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

std::optional<boost::asio::ip::tcp::endpoint> parse_endpoint(std::string_view text, std::uint16_t lowest_port) {
  const auto parsed = split_address_and_port(text);
  if (!parsed || !parsed->port) return std::nullopt;
  const auto port = parse_integer<std::uint16_t>(*parsed->port, lowest_port, 65535);
  if (!port) return std::nullopt;
  return boost::asio::ip::tcp::endpoint(parsed->address, *port);
}

std::string format_endpoint(const boost::asio::ip::tcp::endpoint& endpoint) {
  std::ostringstream out;
  out << endpoint;
  return out.str();
}

bool overlaps(const boost::asio::ip::tcp::endpoint& a, const boost::asio::ip::tcp::endpoint& b) {
  if (a.port() != b.port() || a.port() == 0) return false;
  const auto covers = [](const boost::asio::ip::address& wide, const boost::asio::ip::address& other) {
    return wide.is_unspecified() && (wide.is_v6() || other.is_v4());
  };
  return a.address() == b.address() || covers(a.address(), b.address()) || covers(b.address(), a.address());
}

bool is_socket_path(std::string_view path) {
  constexpr std::size_t longest_socket_path = 107;
  return path.starts_with('/') && is_plain_text(path, longest_socket_path) && path.find(',') == std::string_view::npos;
}

std::optional<EndpointOrName> parse_endpoint_or_name(std::string_view text) {
  if (const auto endpoint = parse_endpoint(text)) return EndpointOrName(*endpoint);
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const auto name = text.substr(0, colon);
  const auto last_label = name.substr(name.rfind('.') + 1);
  const bool numeric = std::all_of(last_label.begin(), last_label.end(), [](char c) { return c >= '0' && c <= '9'; });
  const auto port = parse_integer<std::uint16_t>(text.substr(colon + 1), 1, 65535);
  constexpr std::size_t longest_name = 253;  // RFC 1035's 255 bytes on the wire
  if (name.size() > longest_name || !is_dns_name(name) || numeric || !port) return std::nullopt;
  return EndpointOrName(NamedEndpoint{std::string(name), *port});
}

std::optional<StatsSocket> parse_stats_socket(std::string_view text) {
  if (is_socket_path(text)) return StatsSocket(std::string(text));
  if (const auto endpoint = parse_endpoint(text)) return StatsSocket(*endpoint);
  return std::nullopt;
}

Failure set_stats_sockets(std::vector<std::string>& target, std::string_view text, ListSeparators separators) {
  const auto is_stats_socket = [](std::string_view entry) { return parse_stats_socket(entry).has_value(); };
  return set_list(target, text, separators, is_stats_socket,
                  "entries separated by " + std::string(separated_by(separators)) +
                      ", each an absolute unix socket path (at most 107 characters) or IP:PORT ([IPv6]:PORT), e.g. "
                      "/run/haproxy/admin.sock (in the file: an array of strings), or empty for none");
}

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

std::string dns_server_list_accepted() {
  return "entries of " + std::string(dns_server_grammar) +
         " separated by commas, e.g. 127.0.0.1:5353,[::1]:53 (in the file: an array of strings), or empty "
         "for the system's resolv.conf";
}

Failure set_dns_servers(std::vector<std::string>& target, std::string_view text) {
  const auto is_dns_server = [](std::string_view entry) { return parse_dns_server(entry).has_value(); };
  return set_list(target, text, ListSeparators::commas, is_dns_server, dns_server_list_accepted());
}

Failure set_config_path(std::string& target, std::string_view text) {
  if (!is_plain_text(text, 4096)) return "a file path of at most 4096 characters, or empty for none";
  target = text;
  return accepted;
}

Failure set_listen_address(boost::asio::ip::tcp::endpoint& target, std::string_view text, std::string_view example) {
  const auto endpoint = parse_endpoint(text, 0);
  if (!endpoint) return "IP:PORT with a port from 0 (any free port) to 65535, e.g. " + std::string(example);
  target = *endpoint;
  return accepted;
}

Failure set_threads(unsigned& target, std::string_view text) {
  const auto value = parse_integer<unsigned>(text, 0, 256);
  if (!value) return "an integer from 0 to 256";
  target = *value;
  return accepted;
}

Failure set_container_host_prefix(std::string& target, std::string_view text) {
  if (!is_dns_label(text) || text.size() > 40)
    return "1 to 40 characters of [a-z0-9-], starting and ending with a letter or digit";
  target = text;
  return accepted;
}

Failure set_port(std::uint16_t& target, std::string_view text) {
  const auto value = parse_integer<std::uint16_t>(text, 1, 65535);
  if (!value) return "an integer from 1 to 65535";
  target = *value;
  return accepted;
}

Failure set_container_domain(std::string& target, std::string_view text) {
  if (text.size() > 180 || (!text.empty() && !is_dns_name(text)))
    return "empty for none, or a DNS name of at most 180 characters without a trailing dot: dot-separated "
           "labels of [a-z0-9-], each starting and ending with a letter or digit";
  target = text;
  return accepted;
}

Failure set_log_level(LogLevel& target, std::string_view text) {
  for (const auto level : {LogLevel::error, LogLevel::warn, LogLevel::info, LogLevel::debug}) {
    if (text == to_string(level)) {
      target = level;
      return accepted;
    }
  }
  return "error, warn, info or debug";
}

Failure set_log_format(LogFormat& target, std::string_view text) {
  for (const auto format : {LogFormat::text, LogFormat::json}) {
    if (text == to_string(format)) {
      target = format;
      return accepted;
    }
  }
  return "text or json";
}

}  // namespace director::config_table

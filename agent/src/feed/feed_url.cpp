#include "feed/feed_url.hpp"

#include "config/values.hpp"

#include <algorithm>
#include <cctype>

namespace director::feed {
namespace {

using UrlResult = boost::system::result<FeedUrl, std::string>;

UrlResult refuse(std::string_view text, std::string_view why) {
  return UrlResult(boost::system::in_place_error,
                   "event feed URL \"" + std::string(text) + "\": " + std::string(why) +
                       " (expected http://host:port/path, e.g. http://127.0.0.1:9181/events)");
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool path_char(char c) { return c > ' ' && c < 0x7f && c != '#'; }

}  // namespace

std::string to_string(const FeedUrl& url) {
  const bool v6 = url.host.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + url.host + "]" : url.host) + ":" + std::to_string(url.port) + url.path;
}

UrlResult parse_feed_url(std::string_view text) {
  const auto scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) return refuse(text, "no scheme");
  const auto scheme = text.substr(0, scheme_end);
  if (iequals(scheme, "https")) return refuse(text, "https is not supported (the feed is plain HTTP)");
  if (!iequals(scheme, "http")) return refuse(text, "the scheme must be http");
  auto rest = text.substr(scheme_end + 3);
  const auto slash = rest.find('/');
  const auto authority = rest.substr(0, slash);
  if (authority.find('@') != std::string_view::npos) return refuse(text, "user info is not supported");
  if (slash == std::string_view::npos) return refuse(text, "no path (the spawner's feed is /events)");
  const auto path = rest.substr(slash);

  // The host and port grammars are the configuration's (config_table): IP:PORT, [IPv6]:PORT, or
  // a DNS name and a port.
  FeedUrl url;
  std::string_view host_text;
  std::string_view port_text;
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return refuse(text, "an IPv6 address without its closing ']'");
    const auto after = authority.substr(close + 1);
    if (!after.starts_with(':')) return refuse(text, "no port");
    port_text = after.substr(1);
  } else {
    const auto colon = authority.rfind(':');
    if (colon == std::string_view::npos) return refuse(text, "no port");
    host_text = authority.substr(0, colon);
    port_text = authority.substr(colon + 1);
    if (host_text.empty()) return refuse(text, "no host");
  }
  const auto port = config_table::parse_integer<std::uint16_t>(port_text, 1, 65535);
  if (!port) return refuse(text, "the port must be a number from 1 to 65535");
  url.port = *port;
  if (const auto endpoint = config_table::parse_endpoint(authority)) {
    url.host = endpoint->address().to_string();
  } else if (authority.starts_with('[')) {
    return refuse(text, "not an IPv6 address in brackets");
  } else if (config_table::is_dns_name(host_text)) {
    url.host = std::string(host_text);
  } else {
    return refuse(text, "the host must be a DNS name (lowercase), an IPv4 address or an IPv6 address in brackets");
  }
  if (path.find('#') != std::string_view::npos) return refuse(text, "a fragment ('#') is not supported");
  if (!std::all_of(path.begin(), path.end(), path_char)) {
    return refuse(text, "the path may hold visible ASCII characters only");
  }
  url.path = std::string(path);
  return url;
}

}  // namespace director::feed

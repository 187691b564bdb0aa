#include "feed/feed_url.hpp"

#include <boost/asio/ip/address_v6.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>

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

bool name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '-'; }
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

  FeedUrl url;
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return refuse(text, "an IPv6 address without its closing ']'");
    url.host = std::string(authority.substr(1, close - 1));
    boost::system::error_code error;
    boost::asio::ip::make_address_v6(url.host, error);
    if (error || url.host.find('%') != std::string::npos) return refuse(text, "not an IPv6 address in brackets");
    const auto after = authority.substr(close + 1);
    if (after.empty() || after.front() != ':') return refuse(text, "no port");
    port_text = after.substr(1);
  } else {
    const auto colon = authority.rfind(':');
    if (colon == std::string_view::npos) return refuse(text, "no port");
    url.host = std::string(authority.substr(0, colon));
    port_text = authority.substr(colon + 1);
    if (url.host.empty()) return refuse(text, "no host");
    if (url.host.size() > 253 || !std::all_of(url.host.begin(), url.host.end(), name_char) ||
        url.host.front() == '.' || url.host.front() == '-' || url.host.find("..") != std::string::npos) {
      return refuse(text, "the host must be a DNS name, an IPv4 address or an IPv6 address in brackets");
    }
  }
  unsigned port = 0;
  const auto [end, error] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || error != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
      port > 65535 || !std::isdigit(static_cast<unsigned char>(port_text.front()))) {
    return refuse(text, "the port must be a number from 1 to 65535");
  }
  url.port = static_cast<std::uint16_t>(port);
  if (path.find('#') != std::string_view::npos) return refuse(text, "a fragment ('#') is not supported");
  if (!std::all_of(path.begin(), path.end(), path_char)) {
    return refuse(text, "the path may hold visible ASCII characters only");
  }
  url.path = std::string(path);
  return url;
}

}  // namespace director::feed

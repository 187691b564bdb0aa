// Where an event feed is: `http://host:port/path`, nothing else (DIRECTOR_EVENT_FEEDS holds a
// list of them; the config parses each with parse_feed_url at startup). Pure.
//
// Accepted: scheme `http` (any case); host a DNS name (lowercase labels, config_table::
// is_dns_name), an IPv4 address or an IPv6 address in brackets (config_table::parse_endpoint:
// the configuration's grammars); a port 1-65535, required; a path starting with
// '/', required (the spawner's is /events), of visible ASCII without '#'. Refused with a
// message that says what is wrong: https (no TLS client here), user info, a missing port or
// path, a fragment, spaces or control characters.
#pragma once

#include <boost/system/result.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace director::feed {

struct FeedUrl {
  std::string host;  // a DNS name as written, or an address as Asio prints it (IPv6 without brackets)
  std::uint16_t port = 0;
  std::string path;  // starts with '/'; a query stays part of it
  friend bool operator==(const FeedUrl&, const FeedUrl&) = default;
};

// "http://host:port/path" (IPv6 hosts in brackets): what the URL was, for logs and /status.
std::string to_string(const FeedUrl& url);

boost::system::result<FeedUrl, std::string> parse_feed_url(std::string_view text);

}  // namespace director::feed

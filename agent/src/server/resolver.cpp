#include "server/resolver.hpp"

#include <stdexcept>
#include <string>

namespace director::server {

net::ResolverOptions resolver_options(const config::DnsSettings& dns) {
  net::ResolverOptions options;
  for (const auto& text : dns.servers) {
    const auto server = config::parse_dns_server(text);
    if (!server) {
      throw std::invalid_argument("invalid DNS server '" + text + "': expected " +
                                  std::string(config::dns_server_grammar));
    }
    options.servers.emplace_back(server->address, server->port);
  }
  options.timeout = dns.timeout;
  options.tries = dns.tries;
  return options;
}

}  // namespace director::server

#include "server/resolver.hpp"

namespace director::server {

net::ResolverOptions resolver_options(const config::DnsSettings& dns) {
  net::ResolverOptions options;
  options.servers = net::dns_server_endpoints(dns.servers);
  options.timeout = dns.timeout;
  options.tries = dns.tries;
  return options;
}

}  // namespace director::server

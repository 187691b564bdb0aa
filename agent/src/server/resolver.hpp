// The agent's side of net::Resolver (common/src/net/resolver.hpp): its options from the agent's
// configuration.
#pragma once

#include "config/config.hpp"
#include "net/resolver.hpp"

namespace director::server {

// The Resolver options of `dns`: each --dns-server entry read by config::parse_dns_server, the
// one parser of that grammar. Throws std::invalid_argument naming an entry it cannot read (the
// configuration validated them already: startup only).
net::ResolverOptions resolver_options(const config::DnsSettings& dns);

}  // namespace director::server

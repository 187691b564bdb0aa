// The agent's side of net::Resolver (common/src/net/resolver.hpp): its options from the agent's
// configuration.
#pragma once

#include "config/config.hpp"
#include "net/resolver.hpp"

namespace director::server {

// The Resolver options of `dns`: its servers read by net::dns_server_endpoints (the one parser of
// the --dns-server grammar), which throws std::invalid_argument naming an entry it cannot read
// (the configuration validated them already: startup only).
net::ResolverOptions resolver_options(const config::DnsSettings& dns);

}  // namespace director::server

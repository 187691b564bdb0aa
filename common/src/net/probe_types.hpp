// What a DNS lookup (net::Resolver) and a liveness probe (net::probe) can conclude, and the one
// default of each of their settings. Header-only and free of I/O so that pure cores (the agent's
// decision core) can name the outcomes without linking the socket code.
#pragma once

#include <chrono>
#include <cstdint>

namespace director::net {

// ok: at least one address; no_such_host: NXDOMAIN or NODATA; error: anything else (timeout,
// refused, server failure, shutdown, cancellation).
enum class DnsOutcome : std::uint8_t { ok, no_such_host, error };

// ok: connected (and the HTTP status line, when asked for, was < 500); refused: nothing listens;
// timeout: no connection or no status line in time; failed: anything else; not_run: no probe.
enum class ProbeOutcome : std::uint8_t { ok, refused, timeout, failed, not_run };

// The defaults keep a whole agent check within HAProxy's 1 s `timeout processing`: a dead DNS
// server costs dns timeout * 3 (two tries, c-ares doubles the second), a hanging container the
// probe timeout. The agent's configuration (config::DnsSettings, config::ProbeSettings) and the
// option structs (ResolverOptions, ProbeOptions) take theirs from here.
inline constexpr std::chrono::milliseconds default_dns_timeout{250};
inline constexpr int default_dns_tries = 2;  // rounds over the server list before a lookup fails
inline constexpr std::chrono::milliseconds default_probe_timeout{250};

}  // namespace director::net

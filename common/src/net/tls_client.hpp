// HTTPS for the HTTP client (http_client.hpp): request() and stream() for a TlsEndpoint, with
// http_client.hpp's contract (one request per connection, the same limits, deadlines and
// errors) over TLS on TCP. Made for an API server that shows a certificate of its own CA (the
// Kubernetes API server with the service account's ca.crt).
//
// Contract:
// - Verification is always on: the server's chain must lead to a CA in `ca_file` (PEM) and no
//   other (the system's store is not used), and its certificate must name `server_name` (a DNS
//   name, or an IP address, in its subjectAltName). `server_name` defaults to `host`; it is also
//   sent as SNI (unless it is an IP address) and is the default Host header.
// - The handshake counts against request()'s `timeout` and stream()'s head deadline.
// - A CA file that cannot be read, a failed handshake, an untrusted or mismatched certificate:
//   ClientErrorKind::tls, the message naming the endpoint and OpenSSL's reason.
// - Its own library, director_net_tls: the only one that links OpenSSL, so that an executable
//   without HTTPS stays without it. Hence overloads here, not a third ClientEndpoint alternative:
//   http_client.cpp (director_net) would need OpenSSL to serve it.
#pragma once

#include "net/http_client.hpp"

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <functional>
#include <string>

namespace director::net::http {

struct TlsEndpoint {
  std::string host;  // name or address to connect to
  std::uint16_t port = 0;
  std::string ca_file;      // PEM: the CAs trusted for this server, and only they
  std::string server_name;  // the name the certificate must show; empty: `host`
};
std::string to_string(const TlsEndpoint& endpoint);  // "https://host:port"

boost::asio::awaitable<ClientResult<ClientResponse>> request(TlsEndpoint endpoint, ClientRequest request,
                                                             ClientLimits limits = {});

boost::asio::awaitable<ClientResult<StreamHead>> stream(TlsEndpoint endpoint, ClientRequest request,
                                                        std::function<void(const StreamHead&)> on_head,
                                                        OnData on_data, ClientLimits limits = {});

}  // namespace director::net::http

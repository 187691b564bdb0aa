#include "net/tls_client.hpp"

#include "net/awaitable.hpp"
#include "net/http_exchange.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/verify_context.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <chrono>
#include <utility>

namespace director::net::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
namespace bhttp = beast::http;
using boost::system::error_code;
using namespace detail;

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

const std::string& name_to_verify(const TlsEndpoint& endpoint) {
  return endpoint.server_name.empty() ? endpoint.host : endpoint.server_name;
}

bool is_address(const std::string& name) {
  error_code error;
  asio::ip::make_address(name, error);
  return !error;
}

// Trusts the CAs of `ca_file` and no others.
ClientResult<ssl::context> trusting(const TlsEndpoint& endpoint, const std::string& where) {
  ssl::context context(ssl::context::tls_client);
  context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                      ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  error_code error;
  context.load_verify_file(endpoint.ca_file, error);
  if (error) {
    return ClientResult<ssl::context>(
        boost::system::in_place_error,
        failure(ClientErrorKind::tls,
                "cannot load the CA file " + endpoint.ca_file + " for " + where + ": " + error.message()));
  }
  context.set_verify_mode(ssl::verify_peer);
  return ClientResult<ssl::context>(boost::system::in_place_value, std::move(context));
}

// Why a handshake failed: the certificate check's verdict when there is one, else OpenSSL's.
std::string handshake_reason(TlsStream& stream, const error_code& error) {
  const long verdict = SSL_get_verify_result(stream.native_handle());
  if (verdict != X509_V_OK) return "certificate verify failed: " + std::string(X509_verify_cert_error_string(verdict));
  return error.message();
}

// Connects, handshakes and verifies within the deadline, then runs `work(stream)`.
template <typename Value, typename Work>
asio::awaitable<ClientResult<Value>> with_tls_connection(const TlsEndpoint& endpoint, const ClientLimits& limits,
                                                         const std::string& where, Work work) {
  const Deadline deadline = std::chrono::steady_clock::now() + limits.timeout;
  auto context = trusting(endpoint, where);
  if (!context) co_return failed<Value>(context.error());
  // Named: GCC 12 frees a braced temporary in a co_await expression twice.
  const TcpEndpoint address_and_port{endpoint.host, endpoint.port};
  auto tcp = co_await connect(address_and_port, deadline, limits, where);
  if (!tcp) co_return failed<Value>(tcp.error());
  TlsStream stream(std::move(*tcp), *context);

  const std::string& name = name_to_verify(endpoint);
  const bool address = is_address(name);
  // host_name_verification rejects a mismatch without saying so; the verdict names it.
  stream.set_verify_callback([check = ssl::host_name_verification(name), address](bool preverified,
                                                                                  ssl::verify_context& verify) {
    if (check(preverified, verify)) return true;
    if (preverified) {
      X509_STORE_CTX_set_error(verify.native_handle(),
                               address ? X509_V_ERR_IP_ADDRESS_MISMATCH : X509_V_ERR_HOSTNAME_MISMATCH);
    }
    return false;
  });
  if (!address && SSL_set_tlsext_host_name(stream.native_handle(), name.c_str()) != 1) {
    co_return failed<Value>(failure(ClientErrorKind::tls, "cannot set the server name " + name + " for " + where));
  }
  auto [handshake_error] = co_await stream.async_handshake(ssl::stream_base::client, nothrow_awaitable);
  if (handshake_error == beast::error::timeout) {
    co_return failed<Value>(step_failure("", where, handshake_error, limits));
  }
  if (handshake_error) {
    co_return failed<Value>(failure(ClientErrorKind::tls, "the TLS handshake with " + where + " failed: " +
                                                              handshake_reason(stream, handshake_error)));
  }
  co_return co_await work(stream);
}

// The default Host of an HTTPS request: the name the certificate was checked against.
void complete(ClientRequest& request, const TlsEndpoint& endpoint) {
  if (request.find(bhttp::field::host) == request.end()) {
    const std::string& name = name_to_verify(endpoint);
    request.set(bhttp::field::host, name.find(':') != std::string::npos ? "[" + name + "]" : name);
  }
  detail::complete(request);
}

}  // namespace

std::string to_string(const TlsEndpoint& endpoint) {
  const bool v6 = endpoint.host.find(':') != std::string::npos;
  return "https://" + (v6 ? "[" + endpoint.host + "]" : endpoint.host) + ":" + std::to_string(endpoint.port);
}

asio::awaitable<ClientResult<ClientResponse>> request(TlsEndpoint endpoint, ClientRequest request,
                                                      ClientLimits limits) {
  complete(request, endpoint);
  const std::string where = to_string(endpoint);
  co_return co_await with_tls_connection<ClientResponse>(
      endpoint, limits, where, [&](TlsStream& stream) { return exchange(stream, request, limits, where); });
}

asio::awaitable<ClientResult<StreamHead>> stream(TlsEndpoint endpoint, ClientRequest request,
                                                 std::function<void(const StreamHead&)> on_head, OnData on_data,
                                                 ClientLimits limits) {
  complete(request, endpoint);
  const std::string where = to_string(endpoint);
  co_return co_await with_tls_connection<StreamHead>(endpoint, limits, where, [&](TlsStream& stream) {
    return stream_exchange(stream, request, on_head, on_data, limits, where);
  });
}

}  // namespace director::net::http

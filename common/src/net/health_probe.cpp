#include "net/health_probe.hpp"

#include "net/http_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <nlohmann/json.hpp>

#include <sstream>

namespace director::net {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// /readyz answers a small JSON object; anything larger is not one of ours.
constexpr std::size_t max_response_body = 64 * 1024;
constexpr std::size_t max_shown_body = 300;

std::string url_of(const tcp::endpoint& target) {
  std::ostringstream out;
  out << "http://" << target << "/readyz";
  return out.str();
}

// Why a 503 (or any other status) is not ready, from the server's JSON body when it has one.
std::string describe_refusal(unsigned status, const std::string& body) {
  std::string why = "answered " + std::to_string(status);
  const auto json = nlohmann::json::parse(body, nullptr, false);
  if (json.is_object() && json.contains("problems") && json["problems"].is_array()) {
    std::string problems;
    for (const auto& problem : json["problems"]) {
      if (!problem.is_string()) continue;
      if (!problems.empty()) problems += "; ";
      problems += problem.get<std::string>();
    }
    if (!problems.empty()) return why + ": " + problems;
  }
  std::string shown;
  for (const char c : body.substr(0, max_shown_body)) {
    shown += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;  // one line, no escapes
  }
  return shown.empty() ? why : why + ": " + shown;
}

// Why the exchange failed, in the words --health has always used.
std::string describe_failure(const http::ClientError& error, const tcp::endpoint& target,
                             std::chrono::milliseconds timeout) {
  switch (error.kind) {
    case http::ClientErrorKind::timeout:
      return "no answer from " + url_of(target) + " within " + std::to_string(timeout.count()) + " ms";
    case http::ClientErrorKind::connect: {
      // The client's message is "cannot connect to <address>: <reason>"; name the URL instead.
      const auto reason = error.message.find(": ");
      return "cannot connect to " + url_of(target) +
             (reason == std::string::npos ? ": " + error.message : error.message.substr(reason));
    }
    case http::ClientErrorKind::protocol:
    case http::ClientErrorKind::too_large:
    case http::ClientErrorKind::tls:  // --health speaks plain HTTP
      break;
  }
  return "no valid answer from " + url_of(target) + ": " + error.message;
}

}  // namespace

tcp::endpoint health_target(const tcp::endpoint& listen) {
  if (!listen.address().is_unspecified()) return listen;
  if (listen.address().is_v6()) return {asio::ip::address_v6::loopback(), listen.port()};
  return {asio::ip::address_v4::loopback(), listen.port()};
}

std::optional<std::string> readiness_problem(const tcp::endpoint& target, std::chrono::milliseconds timeout,
                                             std::string_view user_agent) {
  http::ClientRequest request(boost::beast::http::verb::get, "/readyz", 11);
  std::ostringstream host;
  host << target;
  request.set(boost::beast::http::field::host, host.str());
  request.set(boost::beast::http::field::user_agent, user_agent);
  const http::TcpEndpoint endpoint{target.address().to_string(), target.port()};

  asio::io_context context;
  std::optional<std::string> problem;
  asio::co_spawn(
      context, http::request(endpoint, std::move(request), {.timeout = timeout, .body_limit = max_response_body}),
      [&](const std::exception_ptr& thrown, const http::ClientResult<http::ClientResponse>& response) {
        if (thrown) {
          problem = "cannot ask " + url_of(target);
        } else if (!response) {
          problem = describe_failure(response.error(), target, timeout);
        } else if (response->result_int() != 200) {
          problem = "not ready: " + url_of(target) + " " + describe_refusal(response->result_int(), response->body());
        }
      });
  context.run();
  return problem;
}

}  // namespace director::net

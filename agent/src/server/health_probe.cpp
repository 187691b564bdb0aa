#include "server/health_probe.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <nlohmann/json.hpp>

#include <sstream>

namespace director::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// /readyz answers a small JSON object; anything larger is not the agent.
constexpr std::size_t max_response_header = 8 * 1024;
constexpr std::size_t max_response_body = 64 * 1024;
constexpr std::size_t max_shown_body = 300;

std::string url_of(const tcp::endpoint& target) {
  std::ostringstream out;
  out << "http://" << target << "/readyz";
  return out.str();
}

// Why a 503 (or any other status) is not ready, from the agent's JSON body when it has one.
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

}  // namespace

tcp::endpoint health_target(const tcp::endpoint& listen) {
  if (!listen.address().is_unspecified()) return listen;
  if (listen.address().is_v6()) return {asio::ip::address_v6::loopback(), listen.port()};
  return {asio::ip::address_v4::loopback(), listen.port()};
}

std::optional<std::string> readiness_problem(const tcp::endpoint& target, std::chrono::milliseconds timeout) {
  asio::io_context context;
  beast::tcp_stream stream(context);
  beast::flat_buffer buffer(max_response_header + max_response_body);
  http::response_parser<http::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(max_response_header));
  parser.body_limit(max_response_body);
  http::request<http::empty_body> request(http::verb::get, "/readyz", 11);
  std::ostringstream host;
  host << target;
  request.set(http::field::host, host.str());
  request.set(http::field::connection, "close");
  request.set(http::field::user_agent, "director-agent --health");

  std::optional<std::string> problem;
  const auto failed = [&](std::string_view step, const boost::system::error_code& error) {
    if (error == beast::error::timeout) {
      problem = "no answer from " + url_of(target) + " within " + std::to_string(timeout.count()) + " ms";
    } else {
      problem = std::string(step) + " " + url_of(target) + ": " + error.message();
    }
  };
  // One deadline for the whole exchange: tcp_stream's expiry covers every operation after it.
  stream.expires_after(timeout);
  stream.async_connect(target, [&](const boost::system::error_code& connect_error) {
    if (connect_error) return failed("cannot connect to", connect_error);
    http::async_write(stream, request, [&](const boost::system::error_code& write_error, std::size_t) {
      if (write_error) return failed("cannot send the request to", write_error);
      http::async_read(stream, buffer, parser, [&](const boost::system::error_code& read_error, std::size_t) {
        if (read_error) return failed("no valid answer from", read_error);
        const auto& response = parser.get();
        if (response.result_int() != 200) {
          problem = "not ready: " + url_of(target) + " " + describe_refusal(response.result_int(), response.body());
        }
      });
    });
  });
  context.run();
  return problem;
}

}  // namespace director::server

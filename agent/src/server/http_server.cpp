#include "server/http_server.hpp"

#include "log/log.hpp"
#include "net/awaitable.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <variant>

namespace director::server {

using net::nothrow_awaitable;
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using Json = nlohmann::ordered_json;

constexpr std::string_view end_of_head = "\r\n\r\n";
constexpr std::string_view json_type = "application/json";
constexpr std::string_view prometheus_type = "text/plain; version=0.0.4; charset=utf-8";
// After the response: how long, and how many bytes, to read what the client still sends (so
// that closing does not reset the connection before the client read the response).
constexpr auto linger_time = std::chrono::seconds(1);
constexpr std::size_t linger_bytes = 64 * 1024;

constexpr std::size_t default_users_limit = 100;
constexpr std::size_t max_users_limit = 1000;
constexpr std::size_t max_users_offset = 999'999'999;

struct Response {
  int status = 200;
  std::string_view content_type = json_type;
  std::string body;
  bool allow_get = false;  // add `Allow: GET` (405)
};

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

std::string response_head(const Response& response) {
  std::string head = "HTTP/1.1 " + std::to_string(response.status) + " " + std::string(reason_phrase(response.status)) +
                     "\r\nContent-Type: " + std::string(response.content_type) +
                     "\r\nContent-Length: " + std::to_string(response.body.size()) +
                     "\r\nCache-Control: no-store\r\nConnection: close\r\n";
  if (response.allow_get) head += "Allow: GET\r\n";
  head += "\r\n";
  return head;
}

Response json_response(int status, const Json& body) { return Response{status, json_type, body.dump() + "\n", false}; }

Response error_response(int status, std::string_view message) {
  Json body;
  body["error"] = message;
  return json_response(status, body);
}

// Seconds with millisecond resolution, for ages in JSON.
double seconds_with_ms(decision::Duration duration) {
  return static_cast<double>(std::chrono::duration_cast<std::chrono::milliseconds>(duration).count()) / 1000.0;
}

// Milliseconds with microsecond resolution.
double milliseconds_with_us(decision::Duration duration) {
  return static_cast<double>(std::chrono::duration_cast<std::chrono::microseconds>(duration).count()) / 1000.0;
}

// ---------------------------------------------------------------------------------------------
// Sampling the agent's state

// Cached users whose last request is within 5 and 15 minutes of `now`. Director::users() lists
// the most recently used first, and every request sets last_seen from the steady clock under the
// Checker's lock, so the cache is ordered by last_seen: counting stops at the first user older
// than 15 minutes. Pages grow fourfold, so a scrape costs O(users active in the last 15 minutes)
// under the Checker's lock, and never more than O(cached users).
struct ActiveUsers {
  std::size_t within_5m = 0;
  std::size_t within_15m = 0;
};

ActiveUsers count_active_users(const decision::Director& director, decision::TimePoint now) {
  const auto cutoff_5m = now - std::chrono::minutes(5);
  const auto cutoff_15m = now - std::chrono::minutes(15);
  ActiveUsers active;
  std::size_t page_size = 256;
  for (;;) {
    const auto page = director.users(0, page_size);
    active = {};
    bool reached_older = false;
    for (const auto& user : page) {
      if (user.last_seen < cutoff_15m) {
        reached_older = true;
        break;
      }
      ++active.within_15m;
      if (user.last_seen >= cutoff_5m) ++active.within_5m;
    }
    if (reached_older || page.size() < page_size) return active;
    page_size *= 4;
  }
}

metrics::StateSample sample_state(const HttpSources& sources) {
  metrics::StateSample sample;
  sources.checker.inspect([&](const decision::Director& director) {
    sample.decisions = director.stats();
    sample.users_cached = director.size();
    const auto active = count_active_users(director, decision::Clock::now());
    sample.active_users_5m = active.within_5m;
    sample.active_users_15m = active.within_15m;
  });
  sample.spop_connections = sources.spop_server.connection_count();
  return sample;
}

// ---------------------------------------------------------------------------------------------
// Endpoints

Response metrics_endpoint(const HttpSources& sources) {
  return Response{200, prometheus_type, sources.metrics.serialize(sample_state(sources)), false};
}

Response healthz_endpoint() {
  Json body;
  body["status"] = "ok";
  return json_response(200, body);
}

Response readyz_endpoint(const HttpSources& sources, const HttpLimits& limits) {
  const auto readiness = evaluate_readiness(sources.spop_server.is_listening(), sources.checker.dns_health(),
                                            decision::Clock::now(), limits.dns_failure_window);
  Json body;
  if (readiness.ready()) {
    body["status"] = "ready";
    return json_response(200, body);
  }
  body["status"] = "not_ready";
  body["problems"] = readiness.problems;
  return json_response(503, body);
}

Response status_endpoint(const HttpSources& sources, decision::TimePoint started) {
  std::size_t users_cached = 0;
  sources.checker.inspect([&](const decision::Director& director) { users_cached = director.size(); });
  Json body;
  body["version"] = config::version();
  body["uptime_seconds"] = seconds_with_ms(decision::Clock::now() - started);
  body["configuration"] = Json::parse(config::to_json(sources.config));
  Json counts;
  counts["users_cached"] = users_cached;
  counts["spop_connections"] = sources.spop_server.connection_count();
  counts["checks_in_flight"] = sources.metrics.checks_in_flight();
  counts["decisions"] = sources.metrics.decisions();
  body["counts"] = std::move(counts);
  return json_response(200, body);
}

struct UsersQuery {
  std::size_t offset = 0;
  std::size_t limit = default_users_limit;
};

std::optional<std::size_t> parse_count(std::string_view text, std::size_t high) {
  if (text.empty() || text.size() > 9) return std::nullopt;
  std::size_t value = 0;
  const auto* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, value);
  if (error != std::errc{} || stop != end || value > high) return std::nullopt;
  return value;
}

// `offset=N&limit=M`, both optional, each at most once; anything else is an error message.
std::variant<UsersQuery, std::string> parse_users_query(std::string_view query) {
  UsersQuery parsed;
  bool offset_seen = false;
  bool limit_seen = false;
  while (!query.empty()) {
    const auto ampersand = query.find('&');
    const auto parameter = query.substr(0, ampersand);
    query = ampersand == std::string_view::npos ? std::string_view{} : query.substr(ampersand + 1);
    if (parameter.empty()) continue;
    const auto equals = parameter.find('=');
    const auto name = parameter.substr(0, equals);
    const auto value = equals == std::string_view::npos ? std::string_view{} : parameter.substr(equals + 1);
    if (name == "offset") {
      if (offset_seen) return std::string("offset given twice");
      offset_seen = true;
      const auto offset = parse_count(value, max_users_offset);
      if (!offset) return std::string("offset must be an integer from 0 to 999999999");
      parsed.offset = *offset;
    } else if (name == "limit") {
      if (limit_seen) return std::string("limit given twice");
      limit_seen = true;
      const auto limit = parse_count(value, max_users_limit);
      if (!limit) return std::string("limit must be an integer from 0 to 1000");
      parsed.limit = *limit;
    } else {
      return "unknown parameter '" + std::string(name.substr(0, 64)) + "' (accepted: offset, limit)";
    }
  }
  return parsed;
}

// One user, copied out of the Director under its lock.
struct UserRow {
  std::string label;
  std::string host;
  std::optional<decision::Address> address;
  bool alive = false;
  decision::Reason reason = decision::Reason::ok;
  std::optional<decision::TimePoint> last_checked;
  decision::Duration last_probe_latency{};
  decision::TimePoint last_seen{};
  bool checking = false;
};

Json user_json(const UserRow& user, decision::TimePoint now) {
  Json row;
  row["label"] = user.label;
  row["host"] = user.host;
  row["address"] = user.address ? Json(user.address->to_string()) : Json(nullptr);
  if (user.last_checked) {
    row["state"] = user.alive ? "alive" : "not_alive";
  } else {
    row["state"] = user.checking ? "checking" : "unknown";
  }
  row["reason"] = user.last_checked ? Json(decision::to_string(user.reason)) : Json(nullptr);
  row["last_seen_seconds_ago"] = seconds_with_ms(now - user.last_seen);
  row["last_checked_seconds_ago"] = user.last_checked ? Json(seconds_with_ms(now - *user.last_checked)) : Json(nullptr);
  // A check probes only when DNS gave an address (or a fallback): not after no-such-host or
  // dns-error.
  const bool probed = user.last_checked && user.reason != decision::Reason::no_such_host &&
                      user.reason != decision::Reason::dns_error;
  row["last_probe_ms"] = probed ? Json(milliseconds_with_us(user.last_probe_latency)) : Json(nullptr);
  return row;
}

Response users_endpoint(const HttpSources& sources, std::string_view query) {
  const auto parsed = parse_users_query(query);
  if (const auto* problem = std::get_if<std::string>(&parsed)) return error_response(400, *problem);
  const auto& request = std::get<UsersQuery>(parsed);

  std::size_t total = 0;
  std::vector<UserRow> rows;
  sources.checker.inspect([&](const decision::Director& director) {
    total = director.size();
    const auto page = director.users(request.offset, request.limit);
    rows.reserve(page.size());
    for (const auto& view : page) {
      rows.push_back(UserRow{std::string(view.label), std::string(view.host), view.address, view.alive, view.reason,
                             view.last_checked, view.last_probe_latency, view.last_seen, view.checking});
    }
  });
  const auto now = decision::Clock::now();  // after the lock: no age is negative
  Json users = Json::array();
  for (const auto& row : rows) users.push_back(user_json(row, now));
  Json body;
  body["total"] = total;
  body["offset"] = request.offset;
  body["users"] = std::move(users);
  return json_response(200, body);
}

// ---------------------------------------------------------------------------------------------
// Requests

bool is_visible_ascii(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return c > ' ' && c < '\x7f'; });
}

// Answers one complete request head (request line, headers, the empty line).
Response respond(std::string_view head, const HttpSources& sources, const HttpLimits& limits,
                 decision::TimePoint started) {
  const auto request_line = head.substr(0, head.find("\r\n"));
  // method SP request-target SP HTTP-version, single spaces
  const auto first_space = request_line.find(' ');
  const auto second_space =
      first_space == std::string_view::npos ? std::string_view::npos : request_line.find(' ', first_space + 1);
  if (second_space == std::string_view::npos) return error_response(400, "malformed request line");
  const auto method = request_line.substr(0, first_space);
  const auto target = request_line.substr(first_space + 1, second_space - first_space - 1);
  const auto version = request_line.substr(second_space + 1);
  if (method.empty() || !is_visible_ascii(method) || (version != "HTTP/1.1" && version != "HTTP/1.0")) {
    return error_response(400, "malformed request line");
  }
  if (method != "GET") {
    auto response = error_response(405, "only GET is supported");
    response.allow_get = true;
    return response;
  }
  if (target.empty() || target.front() != '/' || !is_visible_ascii(target)) {
    return error_response(400, "the request target must be a path");
  }
  const auto question = target.find('?');
  const auto path = target.substr(0, question);
  const auto query = question == std::string_view::npos ? std::string_view{} : target.substr(question + 1);

  if (path == "/metrics") return metrics_endpoint(sources);
  if (path == "/healthz") return healthz_endpoint();
  if (path == "/readyz") return readyz_endpoint(sources, limits);
  if (path == "/status") return status_endpoint(sources, started);
  if (path == "/users") return users_endpoint(sources, query);
  return error_response(404, "not found (endpoints: /metrics, /healthz, /readyz, /status, /users)");
}

// The answer to a request head that did not end within the limit.
Response head_too_large(std::string_view received) {
  if (received.find("\r\n") == std::string_view::npos) return error_response(414, "request line too long");
  return error_response(431, "request headers too large");
}

}  // namespace

Readiness evaluate_readiness(bool spop_listening, const Checker::DnsHealth& dns, decision::TimePoint now,
                             std::chrono::seconds dns_failure_window) {
  Readiness readiness;
  if (!spop_listening) readiness.problems.emplace_back("the SPOP listener is not accepting connections");
  if (dns.last_failure && now - *dns.last_failure <= dns_failure_window &&
      (!dns.last_answer || *dns.last_answer < *dns.last_failure)) {
    const auto ago = std::chrono::duration_cast<std::chrono::seconds>(now - *dns.last_failure).count();
    readiness.problems.push_back("DNS is failing: the last lookup, " + std::to_string(ago) +
                                 " s ago, ended in error (timeout or server failure)");
  }
  return readiness;
}

HttpServer::HttpServer(boost::asio::io_context& context, const tcp::endpoint& listen, HttpSources sources,
                       HttpLimits limits)
    : context_(context),
      acceptor_(asio::make_strand(context)),
      shared_(new Shared{sources, limits, decision::Clock::now()}) {
  boost::system::error_code error;
  acceptor_.open(listen.protocol(), error);
  if (!error) acceptor_.set_option(asio::socket_base::reuse_address(true), error);
  if (!error) acceptor_.bind(listen, error);
  if (!error) acceptor_.listen(asio::socket_base::max_listen_connections, error);
  if (error) {
    std::ostringstream message;
    message << "cannot listen for HTTP on " << listen << ": " << error.message();
    throw std::runtime_error(message.str());
  }
}

HttpServer::~HttpServer() = default;

void HttpServer::start() { asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached); }

void HttpServer::stop() {
  asio::post(acceptor_.get_executor(), [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  });
}

tcp::endpoint HttpServer::local_endpoint() const { return acceptor_.local_endpoint(); }

asio::awaitable<void> HttpServer::accept_loop() {
  for (;;) {
    auto [error, socket] = co_await acceptor_.async_accept(asio::make_strand(context_), nothrow_awaitable);
    if (error == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (error) {
      log(config::LogLevel::error, "HTTP accept failed: " + error.message());
      asio::steady_timer pause(acceptor_.get_executor(), std::chrono::milliseconds(50));
      co_await pause.async_wait(nothrow_awaitable);
      continue;
    }
    bool refuse = false;
    if (shared_->active.load() >= shared_->limits.max_connections) {
      // Refusals are exchanges too (answered, then drained so that the close does not reset the
      // connection under the answer), with a cap of their own; beyond both caps: closed at once.
      if (shared_->refusing.load() >= shared_->limits.max_connections) {
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      refuse = true;
    }
    ++(refuse ? shared_->refusing : shared_->active);  // released by exchange()
    const auto executor = socket.get_executor();
    asio::co_spawn(executor, exchange(std::move(socket), shared_, refuse), asio::detached);
  }
}

asio::awaitable<void> HttpServer::exchange(tcp::socket socket, std::shared_ptr<Shared> shared,
                                           bool refuse) {
  struct Release {
    std::atomic<std::size_t>& counter;
    ~Release() { --counter; }
  } release{refuse ? shared->refusing : shared->active};
  const auto& limits = shared->limits;
  asio::steady_timer deadline(socket.get_executor());
  deadline.expires_after(limits.exchange_timeout);

  // Read the request head, bounded in size and time (unless refusing).
  std::optional<Response> response;
  if (refuse) response = error_response(503, "too many connections");
  std::string head(refuse ? 0 : limits.max_request_head_bytes, '\0');
  std::size_t filled = 0;
  while (!response) {
    if (filled == head.size()) {
      response = head_too_large(std::string_view(head.data(), filled));
      break;
    }
    auto read = co_await (socket.async_read_some(asio::buffer(head.data() + filled, head.size() - filled),
                                                 nothrow_awaitable) ||
                          deadline.async_wait(nothrow_awaitable));
    if (read.index() == 1) co_return;  // too slow: close without an answer
    const auto [error, received] = std::get<0>(read);
    if (error) co_return;  // the client went away before a whole request
    const auto search_from = filled >= end_of_head.size() ? filled - (end_of_head.size() - 1) : 0;
    filled += received;
    const std::string_view so_far(head.data(), filled);
    const auto end = so_far.find(end_of_head, search_from);
    if (end != std::string_view::npos) {
      response = respond(so_far.substr(0, end + end_of_head.size()), shared->sources, limits, shared->started);
    }
  }

  const auto response_head_text = response_head(*response);
  const std::array<asio::const_buffer, 2> buffers = {asio::buffer(response_head_text), asio::buffer(response->body)};
  auto written = co_await (asio::async_write(socket, buffers, nothrow_awaitable) || deadline.async_wait(nothrow_awaitable));
  if (written.index() == 1 || std::get<0>(std::get<0>(written))) co_return;

  // Say we are done, then read (and drop) what the client still sends until it closes, so that
  // the close does not reset the connection under an unread response.
  boost::system::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_send, ignored);
  deadline.expires_after(std::min<std::chrono::steady_clock::duration>(linger_time, limits.exchange_timeout));
  std::array<char, 4096> sink{};
  std::size_t drained = 0;
  while (drained < linger_bytes) {
    auto read = co_await (socket.async_read_some(asio::buffer(sink), nothrow_awaitable) ||
                          deadline.async_wait(nothrow_awaitable));
    if (read.index() == 1) break;
    const auto [error, received] = std::get<0>(read);
    if (error) break;
    drained += received;
  }
  socket.close(ignored);
}

}  // namespace director::server

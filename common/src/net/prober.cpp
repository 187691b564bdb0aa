#include "net/prober.hpp"

#include "net/awaitable.hpp"

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <variant>

namespace director::net {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

using namespace asio::experimental::awaitable_operators;

constexpr std::size_t max_response_bytes = 1024;  // the status line must fit in this
constexpr std::string_view http_prefix = "HTTP/";

// Printable ASCII without spaces: nothing that could end the request line or a header.
bool is_visible_ascii(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return c > ' ' && c < '\x7f'; });
}

std::string http_request(const tcp::endpoint& endpoint, const ProbeOptions& options) {
  std::string host = options.http_host;
  if (host.empty()) {
    const auto address = endpoint.address();
    host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
    host += ":" + std::to_string(endpoint.port());
  }
  return "GET " + options.http_path + " HTTP/1.1\r\nHost: " + host +
         "\r\nConnection: close\r\nUser-Agent: container-director\r\n\r\n";
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// `line`: the status line without its line ending, e.g. "HTTP/1.1 302 Found".
ProbeOutcome classify_status_line(std::string_view line) {
  // "HTTP/" DIGIT "." DIGIT SP 3DIGIT [ SP reason ]
  if (line.size() < 12 || !line.starts_with(http_prefix) || !is_digit(line[5]) || line[6] != '.' ||
      !is_digit(line[7]) || line[8] != ' ' || !is_digit(line[9]) || !is_digit(line[10]) ||
      !is_digit(line[11]) || (line.size() > 12 && line[12] != ' ')) {
    return ProbeOutcome::failed;
  }
  const int status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  return status >= 100 && status < 500 ? ProbeOutcome::ok : ProbeOutcome::failed;
}

// Sends the GET and reads until the status line is complete. Outcome ok or failed; a response
// that never comes is left to the caller's deadline.
asio::awaitable<ProbeOutcome> check_http(tcp::socket& socket, const std::string& request) {
  if (auto [error, sent] =
          co_await asio::async_write(socket, asio::buffer(request), nothrow_awaitable);
      error) {
    co_return ProbeOutcome::failed;
  }
  std::array<char, max_response_bytes> response{};
  std::size_t received = 0;
  for (;;) {
    auto [error, count] = co_await socket.async_read_some(
        asio::buffer(response.data() + received, response.size() - received), nothrow_awaitable);
    received += count;
    const std::string_view text(response.data(), received);
    if (const auto end = text.find('\n'); end != std::string_view::npos) {
      std::string_view line = text.substr(0, end);
      if (line.ends_with('\r')) line.remove_suffix(1);
      co_return classify_status_line(line);
    }
    // Not HTTP, closed (or failed) before the line ended, or a line longer than we accept.
    const std::size_t compared = std::min(received, http_prefix.size());
    if (text.substr(0, compared) != http_prefix.substr(0, compared) || error ||
        received == response.size()) {
      co_return ProbeOutcome::failed;
    }
  }
}

// Connects and, when configured, checks HTTP. Completes only with a definite outcome or when
// cancelled by the caller's deadline (its outcome is then ignored).
asio::awaitable<ProbeOutcome> connect_and_check(tcp::socket& socket, tcp::endpoint endpoint,
                                                const ProbeOptions& options) {
  auto [error] = co_await socket.async_connect(endpoint, nothrow_awaitable);
  if (error == asio::error::connection_refused) co_return ProbeOutcome::refused;
  if (error) co_return ProbeOutcome::failed;
  if (options.http_path.empty()) co_return ProbeOutcome::ok;
  co_return co_await check_http(socket, http_request(endpoint, options));
}

}  // namespace

std::optional<std::string> validate(const ProbeOptions& options) {
  if (options.timeout <= std::chrono::milliseconds::zero()) {
    return "probe timeout must be positive, got " + std::to_string(options.timeout.count()) + " ms";
  }
  if (!options.http_path.empty() &&
      (!options.http_path.starts_with('/') || !is_visible_ascii(options.http_path))) {
    return "probe HTTP path '" + options.http_path +
           "' must start with '/' and contain only printable ASCII without spaces";
  }
  if (!is_visible_ascii(options.http_host)) {
    return "probe HTTP host '" + options.http_host +
           "' must contain only printable ASCII without spaces";
  }
  return std::nullopt;
}

asio::awaitable<ProbeResult> probe(tcp::endpoint endpoint, ProbeOptions options) {
  const auto started = std::chrono::steady_clock::now();
  if (validate(options)) co_return ProbeResult{ProbeOutcome::failed, {}};

  const auto executor = co_await asio::this_coro::executor;
  tcp::socket socket(executor);
  asio::steady_timer deadline(executor, options.timeout);
  // Whichever finishes first cancels the other; both have finished when this resumes.
  const auto first = co_await (connect_and_check(socket, endpoint, options) ||
                               deadline.async_wait(nothrow_awaitable));
  const ProbeOutcome outcome = first.index() == 0 ? std::get<0>(first) : ProbeOutcome::timeout;

  boost::system::error_code ignored;
  socket.close(ignored);
  co_return ProbeResult{outcome, std::chrono::steady_clock::now() - started};
}

}  // namespace director::net

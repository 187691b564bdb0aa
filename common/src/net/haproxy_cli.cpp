#include "net/haproxy_cli.hpp"

#include "config/values.hpp"
#include "net/awaitable.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <stdexcept>
#include <utility>
#include <variant>

namespace director::net {
namespace {

HaproxyAnswer failure(HaproxyCliErrorKind kind, std::string message) {
  return HaproxyAnswer(boost::system::in_place_error, HaproxyCliError{kind, std::move(message)});
}

// Connects `socket` to `endpoint`, sends `command` and reads the answer until the peer closes,
// at most `max_bytes`. Without a deadline: haproxy_command races it against one.
template <typename Socket, typename Endpoint>
boost::asio::awaitable<HaproxyAnswer> exchange(Socket socket, Endpoint endpoint, std::string command,
                                               std::size_t max_bytes) {
  if (const auto [connected] = co_await socket.async_connect(endpoint, nothrow_awaitable); connected) {
    co_return failure(HaproxyCliErrorKind::connect, "cannot connect: " + connected.message());
  }
  if (const auto [written, size] = co_await boost::asio::async_write(socket, boost::asio::buffer(command), nothrow_awaitable);
      written) {
    co_return failure(HaproxyCliErrorKind::io, "cannot send the command: " + written.message());
  }
  std::string answer;
  std::array<char, 16 * 1024> buffer{};
  for (;;) {
    const auto [read, size] = co_await socket.async_read_some(boost::asio::buffer(buffer), nothrow_awaitable);
    answer.append(buffer.data(), size);
    if (answer.size() > max_bytes) {
      co_return failure(HaproxyCliErrorKind::too_large, "the answer exceeds " + std::to_string(max_bytes) + " bytes");
    }
    if (read == boost::asio::error::eof) break;
    if (read) co_return failure(HaproxyCliErrorKind::io, "reading the answer failed: " + read.message());
  }
  co_return HaproxyAnswer(boost::system::in_place_value, std::move(answer));
}

boost::asio::awaitable<HaproxyAnswer> connect_and_exchange(config_table::StatsSocket socket, std::string command,
                                                           std::size_t max_bytes) {
  const auto executor = co_await boost::asio::this_coro::executor;
  // Named arguments, not temporaries: GCC 12 destroys a temporary argument of a coroutine called
  // in a co_await expression twice.
  if (const auto* path = std::get_if<std::string>(&socket)) {
    boost::asio::local::stream_protocol::endpoint endpoint(*path);
    boost::asio::local::stream_protocol::socket stream(executor);
    co_return co_await exchange(std::move(stream), endpoint, std::move(command), max_bytes);
  }
  const auto endpoint = std::get<boost::asio::ip::tcp::endpoint>(socket);
  boost::asio::ip::tcp::socket stream(executor);
  co_return co_await exchange(std::move(stream), endpoint, std::move(command), max_bytes);
}

}  // namespace

std::string_view to_string(HaproxyCliErrorKind kind) noexcept {
  switch (kind) {
    case HaproxyCliErrorKind::bad_socket: return "bad_socket";
    case HaproxyCliErrorKind::connect: return "connect";
    case HaproxyCliErrorKind::io: return "io";
    case HaproxyCliErrorKind::timeout: return "timeout";
    case HaproxyCliErrorKind::too_large: return "too_large";
  }
  return "unknown";
}

void throw_exception_from_error(const HaproxyCliError& error, const boost::source_location&) {
  throw std::runtime_error(error.message);
}

boost::asio::awaitable<HaproxyAnswer> haproxy_command(std::string socket, std::string command, std::size_t max_bytes,
                                                      std::chrono::milliseconds timeout) {
  using namespace boost::asio::experimental::awaitable_operators;
  auto parsed = config_table::parse_stats_socket(socket);
  if (!parsed) co_return failure(HaproxyCliErrorKind::bad_socket, "not a unix socket path or IP:PORT: " + socket);
  boost::asio::steady_timer deadline(co_await boost::asio::this_coro::executor, timeout);
  // The loser of the race is cancelled: a late answer closes nothing twice.
  auto outcome = co_await (connect_and_exchange(std::move(*parsed), std::move(command), max_bytes) ||
                           deadline.async_wait(nothrow_awaitable));
  if (outcome.index() == 1) {
    co_return failure(HaproxyCliErrorKind::timeout, "no answer within " + std::to_string(timeout.count()) + "ms");
  }
  co_return std::get<0>(std::move(outcome));
}

std::string first_answer_line(std::string_view answer) {
  constexpr std::size_t longest = 200;
  while (!answer.empty()) {
    const auto end = answer.find('\n');
    auto line = answer.substr(0, end);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") != std::string_view::npos) return std::string(line.substr(0, longest));
    if (end == std::string_view::npos) break;
    answer.remove_prefix(end + 1);
  }
  return {};
}

}  // namespace director::net

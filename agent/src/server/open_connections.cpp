#include "server/open_connections.hpp"

#include "net/awaitable.hpp"
#include "net/haproxy_cli.hpp"
#include "net/show_table.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>

#include <exception>
#include <string>
#include <string_view>
#include <utility>

namespace director::server {
namespace {

// What HAProxy prints after the table's header on a socket below level operator (stick_table.c).
constexpr std::string_view insufficient_privileges = "# contents not dumped due to insufficient privileges";

}  // namespace

boost::asio::awaitable<OpenConnections> read_open_connections(OpenConnectionsSettings settings) {
  using Clock = std::chrono::steady_clock;
  OpenConnections result;
  const auto deadline = Clock::now() + settings.timeout;
  for (const auto& socket : settings.sockets) {
    // Cancelled (the HTTP exchange's deadline): nobody waits for the rest.
    if ((co_await boost::asio::this_coro::cancellation_state).cancelled() != boost::asio::cancellation_type::none) {
      result.unreadable.push_back({socket, "not read: the request was cancelled"});
      co_return result;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left <= std::chrono::milliseconds::zero()) {
      result.unreadable.push_back({socket, "not read: the other sockets took the whole " +
                                               std::to_string(settings.timeout.count()) + "ms"});
      continue;
    }
    // Named arguments, not temporaries: GCC 12 destroys a temporary argument of a coroutine
    // called in a co_await expression twice.
    std::string command = "show table " + settings.table + " data.conn_cur gt 0\n";
    std::string address = socket;
    auto answer = co_await net::haproxy_command(std::move(address), std::move(command), settings.max_bytes, left);
    if (!answer) {
      result.unreadable.push_back({socket, answer.error().message});
      continue;
    }
    const auto table = net::parse_show_table(*answer);
    if (!table.header_seen) {
      // An unknown table (or an error message): HAProxy prints no "# table:" line.
      result.unreadable.push_back(
          {socket, "no table " + settings.table + " in HAProxy: " + net::first_answer_line(*answer)});
      continue;
    }
    // Answers that would read as "no connections" while incomplete are unreadable too.
    if (answer->find(insufficient_privileges) != std::string::npos) {
      result.unreadable.push_back({socket, "HAProxy did not dump the table: the socket needs level operator or admin"});
      continue;
    }
    if (table.skipped_lines > 0) {
      result.unreadable.push_back(
          {socket, std::to_string(table.skipped_lines) + " line(s) of HAProxy's answer did not parse"});
      continue;
    }
    if (!answer->ends_with("\n\n")) {
      result.unreadable.push_back({socket, "HAProxy's answer ended before its closing empty line"});
      continue;
    }
    for (const auto& [key, count] : table.connections) {
      if (count == 0) continue;
      auto& sum = result.by_key[key];
      sum = net::add_counts(sum, count);
    }
  }
  co_return result;
}

OpenConnectionsReader::OpenConnectionsReader(OpenConnectionsSettings settings, std::chrono::milliseconds reuse)
    : settings_(std::move(settings)), reuse_(reuse) {}

std::shared_ptr<OpenConnectionsReader> OpenConnectionsReader::create(OpenConnectionsSettings settings,
                                                                     std::chrono::milliseconds reuse) {
  return std::shared_ptr<OpenConnectionsReader>(new OpenConnectionsReader(std::move(settings), reuse));
}

boost::asio::awaitable<boost::system::result<OpenConnectionsReader::Read>> OpenConnectionsReader::read() {
  const auto executor = co_await boost::asio::this_coro::executor;
  std::shared_ptr<Waiter> waiter;
  bool start = false;
  {
    const std::lock_guard lock(mutex_);
    if (last_ && Clock::now() - last_ended_ <= reuse_) co_return last_;
    last_.reset();  // stale: not kept while the next read runs (with many users, megabytes)
    waiter = std::make_shared<Waiter>(executor, 1);  // room for the answer: finish() never blocks
    waiters_.push_back(waiter);
    start = !reading_;
    reading_ = true;
  }
  // Outside the lock: co_spawn may run the read at once, up to finish(). On a strand of its own:
  // haproxy_command's racing branches never run at once, whatever executor this caller is on.
  if (start) {
    try {
      boost::asio::co_spawn(boost::asio::make_strand(executor), [self = shared_from_this()] { return self->run_read(); },
                            net::log_if_thrown("open connections read"));
    } catch (...) {
      // No read started: nobody must wait for one.
      const std::lock_guard lock(mutex_);
      reading_ = false;
      std::erase(waiters_, waiter);
      throw;
    }
  }
  auto [error, read] = co_await waiter->async_receive(net::nothrow_awaitable);
  if (!error) co_return read;
  // Cancelled: the read goes on for the others, without this waiter.
  const std::lock_guard lock(mutex_);
  std::erase(waiters_, waiter);
  co_return boost::system::error_code(boost::asio::error::operation_aborted);
}

std::size_t OpenConnectionsReader::waiting() {
  const std::lock_guard lock(mutex_);
  return waiters_.size();
}

boost::asio::awaitable<void> OpenConnectionsReader::run_read() {
  OpenConnections connections;
  try {
    connections = co_await read_open_connections(settings_);
  } catch (const std::exception& error) {
    // Never leaves the waiters (and every later request) waiting for a read that ended.
    connections = OpenConnections{};
    connections.unreadable.push_back({"*", std::string("the read failed: ") + error.what()});
  } catch (...) {
    connections = OpenConnections{};
    connections.unreadable.push_back({"*", "the read failed"});
  }
  finish(std::make_shared<const OpenConnections>(std::move(connections)));
}
void OpenConnectionsReader::finish(Read read) {
  std::vector<std::shared_ptr<Waiter>> waiters;
  {
    const std::lock_guard lock(mutex_);
    last_ = read;
    last_ended_ = Clock::now();
    reading_ = false;
    waiters.swap(waiters_);
  }
  for (const auto& waiter : waiters) waiter->try_send(boost::system::error_code{}, read);
}

}  // namespace director::server

// Running coroutines to completion in tests.
#pragma once

#include "net/awaitable.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstddef>
#include <exception>
#include <optional>
#include <utility>
#include <vector>

namespace director::test {

// Runs `task` on `io` until it completes, then stops `io`: helpers still pending (servers that
// never answer, ...) are abandoned and destroyed with `io`. Rethrows what `task` threw.
template <typename T>
T run_until_complete(boost::asio::io_context& io, boost::asio::awaitable<T> task) {
  std::optional<T> result;
  std::exception_ptr failure;
  boost::asio::co_spawn(io, std::move(task), [&](std::exception_ptr error, T value) {
    failure = error;
    if (!error) result = std::move(value);
    io.stop();
  });
  io.restart();
  io.run();
  if (failure) std::rethrow_exception(failure);
  return std::move(*result);
}

inline void run_until_complete(boost::asio::io_context& io, boost::asio::awaitable<void> task) {
  std::exception_ptr failure;
  boost::asio::co_spawn(io, std::move(task), [&](std::exception_ptr error) {
    failure = error;
    io.stop();
  });
  io.restart();
  io.run();
  if (failure) std::rethrow_exception(failure);
}

// Runs `tasks` concurrently on the current (single-threaded) executor and returns their results
// in the order of `tasks`. The tasks must not throw.
template <typename T>
boost::asio::awaitable<std::vector<T>> gather(std::vector<boost::asio::awaitable<T>> tasks) {
  const auto executor = co_await boost::asio::this_coro::executor;
  std::vector<T> results(tasks.size());
  std::size_t remaining = tasks.size();
  boost::asio::steady_timer all_done(executor, boost::asio::steady_timer::time_point::max());
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    boost::asio::co_spawn(executor, std::move(tasks[i]), [&, i](std::exception_ptr, T value) {
      results[i] = std::move(value);
      if (--remaining == 0) all_done.cancel();
    });
  }
  if (remaining > 0)
    co_await all_done.async_wait(director::net::nothrow_awaitable);
  co_return results;
}

}  // namespace director::test

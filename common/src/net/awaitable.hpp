// Completion tokens and spawning rules shared by every coroutine that does I/O.
#pragma once

#include "log/log.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>
#include <string>
#include <string_view>

namespace director::net {

// co_await op(..., nothrow_awaitable) yields a tuple (error_code, results...) instead of
// throwing: expected failures are values.
constexpr auto nothrow_awaitable = boost::asio::as_tuple(boost::asio::use_awaitable);

// The completion handler for co_spawn of a coroutine nobody awaits: an exception that escapes
// it is logged as an error naming `what`, never lost. The coroutine's own cleanup (RAII) has
// run by then; use it only for coroutines whose failure needs no further action.
inline auto log_if_thrown(std::string_view what) {
  return [what = std::string(what)](const std::exception_ptr& thrown) {
    if (!thrown) return;
    try {
      std::rethrow_exception(thrown);
    } catch (const std::exception& error) {
      log(LogLevel::error, "coroutine failed", {{"coroutine", what}, {"error", error.what()}});
    } catch (...) {
      log(LogLevel::error, "coroutine failed", {{"coroutine", what}, {"error", "unknown exception"}});
    }
  };
}

}  // namespace director::net

// common/src/process: real signals raised in this process, real threads.
#include "process/run_loop.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <thread>

namespace process = director::process;
using namespace std::chrono_literals;

TEST_CASE("SIGHUP is ignored, the first SIGTERM begins the stop, and finish() ends every thread") {
  boost::asio::io_context context(2);
  std::atomic<int> stops{0};
  std::atomic<int> stop_signal{0};
  std::atomic<bool> before_stop_ran{false};
  process::StopOnce stop(context, [&] { before_stop_ran = true; });
  boost::asio::steady_timer raise_later(context);
  raise_later.expires_after(50ms);
  raise_later.async_wait([](const boost::system::error_code&) {
    std::raise(SIGHUP);  // would end the process were it not caught
    std::raise(SIGTERM);
  });
  const auto began = std::chrono::steady_clock::now();
  process::run_until_stopped(context, 2, "test", [&](int signal) {
    ++stops;
    stop_signal = signal;
    stop.arm(10s, "late");
    stop.finish();
    stop.finish();  // a second finish (the deadline's, say) does nothing more
  });
  CHECK(stops == 1);
  CHECK(stop_signal == SIGTERM);
  CHECK(before_stop_ran);
  CHECK(context.stopped());
  CHECK(std::chrono::steady_clock::now() - began < 5s);  // finish(), not the 10 s deadline
}

TEST_CASE("a stop that never finishes ends at the deadline") {
  boost::asio::io_context context(1);
  std::atomic<bool> before_stop_ran{false};
  process::StopOnce stop(context, [&] { before_stop_ran = true; });
  boost::asio::post(context, [] { std::raise(SIGINT); });
  // Work that would keep the context running for ever.
  boost::asio::steady_timer forever(context);
  forever.expires_after(1h);
  forever.async_wait([](const boost::system::error_code&) {});
  const auto began = std::chrono::steady_clock::now();
  process::run_until_stopped(context, 1, "test", [&](int) { stop.arm(100ms, "still busy at the deadline"); });
  const auto took = std::chrono::steady_clock::now() - began;
  CHECK(before_stop_ran);
  CHECK(took >= 100ms);
  CHECK(took < 5s);
}

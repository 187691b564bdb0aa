// The process around a director program's io_context, the same for the agent and the spawner:
// its signals, its I/O threads, and the end of a graceful stop.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>

namespace director::process {

// Runs `context` on `threads` threads (this one and threads - 1 more) until it stops; returns
// when every thread has left run(). Meanwhile SIGHUP is logged ("SIGHUP ignored: restart the
// <noun> to change its configuration") and otherwise ignored: it would end the process, and the
// configuration is read once. The first SIGTERM or SIGINT stops listening for SIGHUP and calls
// on_stop(signal) on one of the threads; on_stop begins a graceful stop that ends by stopping
// `context` (a StopOnce's finish()). `threads` is at least 1.
void run_until_stopped(boost::asio::io_context& context, unsigned threads, std::string_view noun,
                       const std::function<void(int)>& on_stop);

// Stops an io_context once: at the first finish() (from any thread), or at the deadline after
// arm(), which logs `late_message` as a warning. `before_stop` runs on the context just before
// it stops (a resolver's shutdown). Lives as long as the context runs: its handlers refer to it.
class StopOnce {
 public:
  StopOnce(boost::asio::io_context& context, std::function<void()> before_stop = {});

  // Finishes at `deadline` from now unless finish() came first. Called once.
  void arm(std::chrono::milliseconds deadline, std::string late_message);
  void finish();

 private:
  boost::asio::io_context& context_;
  std::function<void()> before_stop_;
  boost::asio::steady_timer deadline_;
  std::string late_message_;
  std::atomic<bool> finished_{false};
};

}  // namespace director::process

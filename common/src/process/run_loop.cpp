#include "process/run_loop.hpp"

#include "log/log.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>

#include <csignal>
#include <thread>
#include <utility>
#include <vector>

namespace director::process {

void run_until_stopped(boost::asio::io_context& context, unsigned threads, std::string_view noun,
                       const std::function<void(int)>& on_stop) {
  // Both sets on one strand: the stop handler cancels the SIGHUP wait while it may be re-armed.
  const auto signals_strand = boost::asio::make_strand(context);
  boost::asio::signal_set hangups(signals_strand, SIGHUP);
  const std::string hangup_message = "SIGHUP ignored: restart the " + std::string(noun) + " to change its configuration";
  std::function<void(const boost::system::error_code&, int)> on_hangup = [&](const boost::system::error_code& error,
                                                                             int) {
    if (error) return;
    log(LogLevel::warn, hangup_message);
    hangups.async_wait(on_hangup);
  };
  hangups.async_wait(on_hangup);

  boost::asio::signal_set stops(signals_strand, SIGTERM, SIGINT);
  stops.async_wait([&](const boost::system::error_code& error, int signal) {
    if (error) return;
    hangups.cancel();
    on_stop(signal);
  });

  std::vector<std::thread> workers;
  workers.reserve(threads > 0 ? threads - 1 : 0);
  for (unsigned i = 1; i < threads; ++i) workers.emplace_back([&context] { context.run(); });
  context.run();
  for (auto& worker : workers) worker.join();
}

StopOnce::StopOnce(boost::asio::io_context& context, std::function<void()> before_stop)
    : context_(context), before_stop_(std::move(before_stop)), deadline_(context) {}

void StopOnce::arm(std::chrono::milliseconds deadline, std::string late_message) {
  late_message_ = std::move(late_message);
  deadline_.expires_after(deadline);
  deadline_.async_wait([this](const boost::system::error_code& cancelled) {
    if (cancelled || finished_.load()) return;
    log(LogLevel::warn, late_message_);
    finish();
  });
}

void StopOnce::finish() {
  if (finished_.exchange(true)) return;
  boost::asio::post(context_, [this] {
    if (before_stop_) before_stop_();
    context_.stop();
  });
}

}  // namespace director::process

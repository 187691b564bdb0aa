#include "net/listener.hpp"

#include "log/log.hpp"
#include "net/awaitable.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <sstream>
#include <stdexcept>
#include <utility>

namespace director::net {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// After a failed accept (EMFILE, ENFILE, ENOBUFS, ...): long enough not to spin, short enough
// that a freed descriptor is used at once.
constexpr auto accept_retry_pause = std::chrono::milliseconds(50);

std::string with_what(const std::string& what, std::string_view text) {
  return what.empty() ? std::string(text) : what + " " + std::string(text);
}

}  // namespace

Listener::Listener(asio::io_context& context, const tcp::endpoint& endpoint, std::string what)
    : context_(context), acceptor_(asio::make_strand(context)), what_(std::move(what)) {
  boost::system::error_code error;
  acceptor_.open(endpoint.protocol(), error);
  if (!error) acceptor_.set_option(asio::socket_base::reuse_address(true), error);
  if (!error) acceptor_.bind(endpoint, error);
  if (!error) acceptor_.listen(asio::socket_base::max_listen_connections, error);
  if (!error) bound_ = acceptor_.local_endpoint(error);
  if (error) {
    std::ostringstream message;
    message << "cannot listen" << (what_.empty() ? "" : " for " + what_) << " on " << endpoint << ": "
            << error.message();
    throw std::runtime_error(message.str());
  }
}

Listener::~Listener() = default;

void Listener::start(OnAccept on_accept) {
  asio::co_spawn(acceptor_.get_executor(), accept_loop(std::move(on_accept)),
                 log_if_thrown(with_what(what_, "accept loop")));
}

void Listener::stop() {
  asio::post(acceptor_.get_executor(), [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  });
}

tcp::endpoint Listener::local_endpoint() const { return bound_; }

asio::awaitable<void> Listener::accept_loop(OnAccept on_accept) {
  for (;;) {
    auto [error, socket] = co_await acceptor_.async_accept(asio::make_strand(context_), nothrow_awaitable);
    if (error == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (error) {
      log(LogLevel::error, with_what(what_, "accept failed: ") + error.message());
      asio::steady_timer pause(acceptor_.get_executor(), accept_retry_pause);
      co_await pause.async_wait(nothrow_awaitable);
      continue;
    }
    on_accept(tcp::socket(std::move(socket)));
  }
}

}  // namespace director::net

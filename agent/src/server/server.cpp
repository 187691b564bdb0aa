#include "server/server.hpp"

#include "log/log.hpp"
#include "net/awaitable.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sstream>
#include <stdexcept>
#include <vector>

namespace director::server {

using net::nothrow_awaitable;

Server::Server(boost::asio::io_context& context, const boost::asio::ip::tcp::endpoint& listen, Checker& checker,
               metrics::Metrics& metrics, ConnectionLimits limits)
    : context_(context),
      acceptor_(boost::asio::make_strand(context)),
      checker_(checker),
      metrics_(metrics),
      limits_(limits) {
  boost::system::error_code error;
  acceptor_.open(listen.protocol(), error);
  if (!error) acceptor_.set_option(boost::asio::socket_base::reuse_address(true), error);
  if (!error) acceptor_.bind(listen, error);
  if (!error) acceptor_.listen(boost::asio::socket_base::max_listen_connections, error);
  if (error) {
    std::ostringstream message;
    message << "cannot listen on " << listen << ": " << error.message();
    throw std::runtime_error(message.str());
  }
}

void Server::start() {
  boost::asio::co_spawn(acceptor_.get_executor(), accept_loop(), boost::asio::detached);
}

boost::asio::awaitable<void> Server::accept_loop() {
  for (;;) {
    auto [error, socket] = co_await acceptor_.async_accept(boost::asio::make_strand(context_), nothrow_awaitable);
    if (error == boost::asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (error) {
      // Out of descriptors and the like: report, breathe, go on accepting.
      log(config::LogLevel::error, "accept failed: " + error.message());
      boost::asio::steady_timer pause(acceptor_.get_executor(), std::chrono::milliseconds(50));
      co_await pause.async_wait(nothrow_awaitable);
      continue;
    }
    auto connection = std::make_shared<Connection>(std::move(socket), checker_, metrics_, limits_,
                                                   [this](Connection& closed) { forget(closed); });
    {
      const std::lock_guard lock(mutex_);
      if (stopping_) continue;  // the socket closes with the connection
      connections_.emplace(connection.get(), connection);
    }
    connection->start();
  }
}

void Server::forget(Connection& connection) {
  std::function<void()> drained;
  {
    const std::lock_guard lock(mutex_);
    connections_.erase(&connection);
    if (stopping_ && connections_.empty()) drained = std::move(on_drained_);
  }
  if (drained) drained();
}

void Server::stop(std::chrono::milliseconds grace, std::function<void()> on_drained) {
  std::vector<std::shared_ptr<Connection>> open;
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
    for (auto& [raw, weak] : connections_) {
      if (auto connection = weak.lock()) open.push_back(std::move(connection));
    }
    if (connections_.empty()) {
      on_drained_ = nullptr;
    } else {
      on_drained_ = std::move(on_drained);
    }
  }
  boost::asio::post(acceptor_.get_executor(), [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  });
  for (auto& connection : open) connection->stop(grace);
  if (open.empty() && on_drained) on_drained();
}

boost::asio::ip::tcp::endpoint Server::local_endpoint() const { return acceptor_.local_endpoint(); }

std::size_t Server::connection_count() const {
  const std::lock_guard lock(mutex_);
  return connections_.size();
}

bool Server::is_listening() const {
  const std::lock_guard lock(mutex_);
  return !stopping_;
}

}  // namespace director::server

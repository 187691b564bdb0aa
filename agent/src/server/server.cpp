#include "server/server.hpp"

#include <utility>
#include <vector>

namespace director::server {

Server::Server(boost::asio::io_context& context, const boost::asio::ip::tcp::endpoint& listen,
               DecisionService& decision_service, metrics::Metrics& metrics, ConnectionLimits limits)
    : listener_(context, listen, ""), decision_service_(decision_service), metrics_(metrics), limits_(limits) {}

void Server::start() {
  {
    const std::lock_guard lock(mutex_);
    if (stopping_ || started_) return;
    started_ = true;
  }
  // A stop() racing with this closes the acceptor either before the accept loop begins (which
  // then ends at once) or after (which aborts it).
  listener_.start([this](boost::asio::ip::tcp::socket socket) { accept(std::move(socket)); });
}

void Server::accept(boost::asio::ip::tcp::socket socket) {
  auto connection = std::make_shared<Connection>(std::move(socket), decision_service_, metrics_, limits_,
                                                 [this](Connection& closed) { forget(closed); });
  {
    const std::lock_guard lock(mutex_);
    if (stopping_) return;  // the socket closes with the connection
    connections_.emplace(connection.get(), connection);
  }
  connection->start();
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
  bool drained_now = false;
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
    for (auto& [raw, weak] : connections_) {
      if (auto connection = weak.lock()) open.push_back(std::move(connection));
    }
    // Either forget() runs on_drained_ when the last connection closes, or nothing is open and
    // it runs below; never both, never neither.
    drained_now = connections_.empty();
    if (!drained_now) on_drained_ = std::move(on_drained);
  }
  listener_.stop();
  for (auto& connection : open) connection->stop(grace);
  if (drained_now && on_drained) on_drained();
}

boost::asio::ip::tcp::endpoint Server::local_endpoint() const { return listener_.local_endpoint(); }

std::size_t Server::connection_count() const {
  const std::lock_guard lock(mutex_);
  return connections_.size();
}

bool Server::is_listening() const {
  const std::lock_guard lock(mutex_);
  return started_ && !stopping_;
}

}  // namespace director::server

// The SPOP listener: accepts HAProxy's connections and keeps track of them so that a stop can
// finish in-flight work and say AGENT-DISCONNECT to each. Thread-safe.
#pragma once

#include "net/listener.hpp"
#include "server/decision_service.hpp"
#include "server/connection.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <memory>
#include <mutex>
#include <unordered_map>

namespace director::server {

class Server {
 public:
  // Binds and listens at once (throws with a clear message if the address cannot be used); the
  // kernel queues HAProxy's connections until start(). Connections report to `metrics`, which
  // must outlive the server.
  Server(boost::asio::io_context& context, const boost::asio::ip::tcp::endpoint& listen,
         DecisionService& decision_service, metrics::Metrics& metrics, ConnectionLimits limits);

  // Accepts connections from now on (none after stop(), even when start() comes later).
  void start();
  // Stops accepting; each connection answers what is pending (for at most `grace`), sends
  // AGENT-DISCONNECT and closes. `on_drained` runs once every connection is closed: at once
  // (in this call) when none is open.
  void stop(std::chrono::milliseconds grace, std::function<void()> on_drained);

  boost::asio::ip::tcp::endpoint local_endpoint() const;
  std::size_t connection_count() const;
  // True from start() until stop(): the listener accepts connections.
  bool is_listening() const;

 private:
  void accept(boost::asio::ip::tcp::socket socket);
  void forget(Connection& connection);

  net::Listener listener_;
  DecisionService& decision_service_;
  metrics::Metrics& metrics_;
  ConnectionLimits limits_;
  mutable std::mutex mutex_;
  std::unordered_map<Connection*, std::weak_ptr<Connection>> connections_;  // guarded by mutex_
  bool started_ = false;                                                    // guarded by mutex_
  bool stopping_ = false;                                                   // guarded by mutex_
  std::function<void()> on_drained_;                                        // guarded by mutex_
};

}  // namespace director::server

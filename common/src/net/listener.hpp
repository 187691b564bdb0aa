// One TCP listener for every server of the project (the agent's SPOP and HTTP servers, the
// spawner's pages): binds at construction, accepts on a strand, hands each connection over on a
// strand of its own, survives running out of descriptors, stops on request. Thread-safe.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>

#include <functional>
#include <string>

namespace director::net {

class Listener {
 public:
  // Receives each accepted connection, on the listener's strand; the socket's executor is a new
  // strand of the io_context, for the connection's coroutines. Must not throw.
  using OnAccept = std::function<void(boost::asio::ip::tcp::socket)>;

  // Binds and listens at once. Throws std::runtime_error naming the address when it cannot:
  // "cannot listen for <what> on <address>: <reason>" ("cannot listen on ..." when `what` is
  // empty). `what` also prefixes the error logged when an accept fails ("<what> accept failed").
  Listener(boost::asio::io_context& context, const boost::asio::ip::tcp::endpoint& endpoint, std::string what);
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener();

  // Accepts until stop(). An accept that fails (out of descriptors, ...) is logged, and accepting
  // resumes after a 50 ms pause. Call once; the Listener must outlive the io_context's run.
  void start(OnAccept on_accept);
  // Stops accepting: the listening socket closes, connections already handed over are not
  // touched. Safe from any thread, and more than once.
  void stop();

  boost::asio::ip::tcp::endpoint local_endpoint() const;

 private:
  boost::asio::awaitable<void> accept_loop(OnAccept on_accept);

  boost::asio::io_context& context_;
  boost::asio::ip::tcp::acceptor acceptor_;  // on its own strand
  std::string what_;
  boost::asio::ip::tcp::endpoint bound_;  // read without the strand by local_endpoint()
};

}  // namespace director::net

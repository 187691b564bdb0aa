// `--health` of both executables (director-agent, director-spawner): asks a running server's own
// GET /readyz, for container health checks (Dockerfile HEALTHCHECK) that cannot rely on any tool
// in the image. Blocking, one connection, loopback only in practice; every step is bounded by
// one deadline and every read by a size limit.
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace director::net {

// Where to reach a server listening for HTTP on `listen`: an unspecified address (0.0.0.0, ::)
// is reached on the loopback address of its family.
boost::asio::ip::tcp::endpoint health_target(const boost::asio::ip::tcp::endpoint& listen);

// GETs /readyz at `target` within `timeout` (connect, request and response together).
// std::nullopt when the server answered 200 (ready); otherwise why not, in one line naming the
// address: nothing listening, no answer in time, or the status and the server's problems.
// `user_agent` names the asker, e.g. "director-agent --health".
std::optional<std::string> readiness_problem(const boost::asio::ip::tcp::endpoint& target,
                                             std::chrono::milliseconds timeout, std::string_view user_agent);

}  // namespace director::net

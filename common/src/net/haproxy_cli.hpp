// HAProxy's runtime API (the "stats socket" CLI): the one way the agent and the spawner send it a
// command and read the answer.
//
// Contract:
// - One connection per command: connect, write `command` (one line ending in '\n'; several
//   commands on that line separated by ';'), read until HAProxy closes. HAProxy 3.x runs only
//   the first line of a non-interactive connection (2.6 runs them all): send one line.
// - The answer is HAProxy's text as it came (each command answers its text, then an empty line:
//   "\n" alone for a command that succeeded silently, "No such table\n\n" for an unknown table).
//   Whether that text is an error is the caller's to judge: it knows the command.
// - Bounded: the whole exchange within `timeout`, the answer at most `max_bytes`; otherwise, or
//   when the socket cannot be reached, an HaproxyCliError (a value, never an exception).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace director::net {

enum class HaproxyCliErrorKind : std::uint8_t {
  bad_socket,  // not a socket config_table::parse_stats_socket reads (a NAME:PORT is not)
  connect,     // no connection (no such socket, refused, permission)
  io,          // the command could not be sent, or the connection broke mid-answer
  timeout,     // the deadline passed
  too_large,   // the answer exceeds max_bytes
};
std::string_view to_string(HaproxyCliErrorKind kind) noexcept;

struct HaproxyCliError {
  HaproxyCliErrorKind kind = HaproxyCliErrorKind::connect;
  // For logs and /status: "<what failed>: <the system's reason>", e.g. "cannot connect:
  // No such file or directory".
  std::string message;
};
[[noreturn]] void throw_exception_from_error(const HaproxyCliError& error, const boost::source_location& location);

using HaproxyAnswer = boost::system::result<std::string, HaproxyCliError>;

// Sends `command` to the stats socket `socket` (a unix socket path or IP:PORT, as
// config_table::parse_stats_socket reads it; a NAME:PORT is bad_socket: this function does no
// DNS) and returns HAProxy's whole answer.
boost::asio::awaitable<HaproxyAnswer> haproxy_command(std::string socket, std::string command, std::size_t max_bytes,
                                                      std::chrono::milliseconds timeout);

// The first line of an answer that carries text, without its newline, at most 200 bytes: for
// messages ("No such table"). Empty when the answer is only empty lines.
std::string first_answer_line(std::string_view answer);

}  // namespace director::net

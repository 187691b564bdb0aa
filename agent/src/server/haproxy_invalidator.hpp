// Keeps HAProxy's table of answers (the stick table `fast_path`, haproxy/haproxy.cfg) honest:
// removes the entries of users whose answer changed, through HAProxy's runtime API (the stats
// sockets of DIRECTOR_HAPROXY_SOCKETS, net::haproxy_command), so that an invalidation reaches
// HAProxy at once instead of waiting for the entry's hold to run out.
//
// Contract:
// - clear(keys): each key is removed from every socket's table. Keys are re-checked against
//   is_fast_path_key (they go into a CLI command line: anything else is dropped and counted,
//   never sent). Pending keys are batched: one connection per command line, at most
//   keys_per_command keys a line (`clear table fast_path key a;clear table fast_path key b\n`;
//   HAProxy 3.x runs only the first line of a connection, so never several lines).
// - clear_all(): `clear table fast_path` on every socket.
// - A whole-table clear is also sent to a socket on start() and whenever it becomes reachable
//   again after a failure (it may hold answers granted while it could not be told otherwise),
//   and instead of the keys when more than max_pending_keys are waiting.
// - Reachable: the socket's last command succeeded and HAProxy answered no error text. A socket
//   is unreachable from the start until its first whole-table clear succeeded. When no command
//   ran for check_interval, `show table` checks it; an answer that does not list the table
//   means HAProxy has no such table (logged as an error: nothing can be invalidated there).
// - hooks.on_reachability(all) whenever "every socket is reachable" changes (false before the
//   first success; with no socket configured, never true and never called).
// - Thread-safe: clear, clear_all, start, stop, status, all_reachable may be called from any
//   thread; the work runs on a strand of `executor`, and every hook is called on it.
// - stop(): no new command starts; one in flight ends within command_timeout. The object and its
//   executor must outlive its work: running() turns false when every worker has ended.
#pragma once

#include "metrics/metrics.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace director::server {

// A key HAProxy's fast path stores, and so one the agent may name in a CLI command:
// ^[A-Za-z0-9._@+-]{1,64}$ (haproxy.cfg's `fast_path_key` acl).
bool is_fast_path_key(std::string_view key) noexcept;

struct HaproxyInvalidatorSettings {
  std::vector<std::string> sockets;  // stats sockets, as config_table::parse_stats_socket reads them
  std::string table = "fast_path";   // the stick table of answers
  std::chrono::milliseconds check_interval{2000};   // a `show table` check after this long without a command
  std::chrono::milliseconds command_timeout{1000};  // one command's whole exchange
  std::size_t keys_per_command = 100;      // keys on one command line (100 x 64-byte keys: 9.1 KB < bufsize 16 KB)
  std::size_t max_pending_keys = 10'000;   // more waiting for one socket: a whole-table clear instead
};

// How one command on one socket went (metrics' enum: ok; refused = HAProxy answered error text;
// failed = no answer: cannot connect, timeout, connection broken, answer too large).
using metrics::HaproxyCommandResult;

// What the invalidator reports, each called on its strand; any may be empty.
struct HaproxyInvalidatorHooks {
  std::function<void(HaproxyCommandResult)> command;                   // every command sent
  std::function<void(std::size_t keys)> keys_cleared;                  // keys one socket confirmed clearing
  std::function<void()> table_cleared;                                 // a whole-table clear one socket confirmed
  std::function<void(std::size_t keys)> keys_rejected;                 // keys dropped by is_fast_path_key
  std::function<void(std::size_t socket_index, bool reachable)> socket_reachable;  // a socket's state changed
  std::function<void(bool all_reachable)> on_reachability;             // the conjunction changed
};

struct HaproxySocketStatus {
  std::string socket;
  bool reachable = false;
  std::string last_error;  // why the last command failed; empty after a success
  std::uint64_t keys_cleared = 0;
  std::uint64_t table_clears = 0;
  std::optional<std::chrono::system_clock::time_point> last_clear;  // last confirmed clear (keys or table)
};

class HaproxyInvalidator {
 public:
  HaproxyInvalidator(boost::asio::any_io_executor executor, HaproxyInvalidatorSettings settings,
                     HaproxyInvalidatorHooks hooks = {});
  ~HaproxyInvalidator();
  HaproxyInvalidator(const HaproxyInvalidator&) = delete;
  HaproxyInvalidator& operator=(const HaproxyInvalidator&) = delete;

  void start();
  void stop();
  bool running() const noexcept { return workers_.load() > 0; }

  void clear(std::vector<std::string> keys);
  void clear_all();

  std::vector<HaproxySocketStatus> status() const;
  bool all_reachable() const;

 private:
  struct Socket;
  boost::asio::awaitable<void> work(Socket& socket);
  // Sends one command line of `commands` commands; true when HAProxy answered without error text.
  // `table_listing`: the answer must list the table (the `show table` check) instead.
  boost::asio::awaitable<bool> send(Socket& socket, std::string command, std::size_t commands, bool table_listing);
  void set_reachable(Socket& socket, bool reachable, std::string error);
  void add_keys(std::vector<std::string> keys);

  boost::asio::strand<boost::asio::any_io_executor> strand_;
  HaproxyInvalidatorSettings settings_;
  HaproxyInvalidatorHooks hooks_;
  std::vector<std::unique_ptr<Socket>> sockets_;
  bool all_reachable_ = false;  // on the strand: the last value reported to on_reachability
  std::atomic<bool> stopping_ = false;
  std::atomic<int> workers_ = 0;
  mutable std::mutex status_mutex_;  // guards each Socket's `status`
};

}  // namespace director::server

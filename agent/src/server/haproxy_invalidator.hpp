// Keeps HAProxy's table of answers (the stick table `fast_path`, haproxy/haproxy.cfg) honest:
// revokes the entries of users whose answer changed, through HAProxy's runtime API (the stats
// sockets of DIRECTOR_HAPROXY_SOCKETS, net::haproxy_command), so that an invalidation reaches
// HAProxy at once instead of waiting for the entry's hold to run out.
//
// Revoking, not deleting: HAProxy refuses to delete an entry a live stream tracks (haproxy.cfg's
// `http-request track-sc0 ... table fast_path` holds it until the request ends, hours for a
// WebSocket: `clear table fast_path key k` answers "Entry currently in use, cannot remove", and
// `clear table fast_path` silently keeps it). Setting its gpt0 (the address) to 0 works on any
// entry, and haproxy.cfg's fast path ignores an entry whose gpt0 is 0.
//
// Contract:
// - clear(keys): each key is revoked in every socket's table: `set table fast_path key <k>
//   data.gpt 0` (creates an all-zero entry when absent; it expires with the table's `expire`).
//   Keys are re-checked with decision::is_haproxy_key (they go into a CLI command line: anything
//   else is dropped and counted, never sent). Pending keys are batched: one connection per command
//   line, at most keys_per_command keys a line (`set table ... key a data.gpt 0;set table ... key b
//   data.gpt 0\n`; HAProxy 3.x runs only the first line of a connection, so never several lines).
// - clear_all(): the whole table revoked on every socket: `clear table fast_path` (frees the
//   entries no stream uses), then `show table fast_path data.gpt gt 0` (what is left with an
//   address: entries in use; the answer at most max_listing_bytes) and a `set ... data.gpt 0` for
//   each key listed (keys that are not is_haproxy_key are skipped, counted and logged).
// - A whole-table revoke is also sent to a socket on start() and whenever it becomes reachable
//   again after a failure (it may hold answers granted while it could not be told otherwise),
//   and instead of the keys when more than max_pending_keys are waiting.
// - start(then): `then` runs once, on the strand, when every socket's first whole-table revoke
//   has ended (succeeded, or failed: that socket counts unreachable) or first_revoke_wait after
//   start(), whichever comes first; at once (in the call) without sockets; never after stop().
//   The agent accepts SPOP connections only then, so that HAProxy does not combine answers held
//   from the agent's previous run with the new run's (a revoke still running at the deadline
//   goes on; its socket turns reachable when it succeeds).
// - Timeouts: each command's whole exchange is bounded by command_timeout, except the listing of
//   a whole-table revoke (`show table ... data.gpt gt 0`), bounded by listing_timeout.
// - Every revoke is repeated once, repeat_after later: an ACK the agent decided before the
//   invalidation may still be stored by HAProxy after the revoke (see repeat_after). Repeats are
//   coalesced: a key revoked again while its repeat waits is repeated once, repeat_after after its
//   last revoke; a whole-table revoke drops the key repeats it covers; more than max_pending_keys
//   keys waiting for a repeat turn into a whole-table repeat.
// - HAProxy answers an empty line per command that succeeded; any other text is an error.
// - Reachable: the socket's last command succeeded and HAProxy answered no error text. A socket
//   is unreachable from the start until its first whole-table revoke succeeded. When no command
//   ran for check_interval, `show table` checks it; an answer that does not list the table
//   means HAProxy has no such table (logged as an error: nothing can be invalidated there).
// - hooks.on_reachability(all) whenever "every socket is reachable" changes (false before the
//   first success; with no socket configured, never true and never called).
// - Thread-safe: clear, clear_all, start, stop, status, all_reachable may be called from any
//   thread; the work runs on a strand of `executor`, and every hook is called on it.
// - stop(): no new command starts; one in flight ends within its timeout. The object and its
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

struct HaproxyInvalidatorSettings {
  std::vector<std::string> sockets;  // stats sockets, as config_table::parse_stats_socket reads them
  std::string table = "fast_path";   // the stick table of answers
  std::chrono::milliseconds check_interval{2000};   // a `show table` check after this long without a command
  std::chrono::milliseconds command_timeout{1000};  // one command's whole exchange (but the listing's)
  // The whole exchange of a whole-table revoke's listing (`show table fast_path data.gpt gt 0`):
  // up to max_listing_bytes, which HAProxy writes between its other work, so a busy HAProxy with
  // 200k entries in use can take seconds where a plain command takes milliseconds.
  std::chrono::milliseconds listing_timeout{10'000};
  // How long start() waits for each socket's first whole-table revoke before it calls `then`
  // anyway (the agent's SPOP listener starts then): the sockets are revoked in parallel, so this
  // bounds the wait whatever their number. A socket that cannot be reached fails sooner.
  std::chrono::milliseconds first_revoke_wait{2000};
  std::size_t keys_per_command = 100;      // keys on one command line (100 x 64-byte keys: 9.1 KB < bufsize 16 KB)
  std::size_t max_pending_keys = 10'000;   // more waiting for one socket (or for a repeat): the whole table instead
  // When a revoke is repeated. Longer than spoe.conf's `timeout processing` (1 s): an ACK HAProxy
  // still stores after a revoke arrives within that time of the NOTIFY, so before the repeat.
  std::chrono::milliseconds repeat_after{1500};
  // The answer of `show table fast_path data.gpt gt 0`: 32 MiB lists 200k rows of 64-byte keys
  // (haproxy.cfg's `size 200k`, about 130 bytes a row).
  std::size_t max_listing_bytes = 32 * 1024 * 1024;
};

// How one command on one socket went (metrics' enum: ok; refused = HAProxy answered error text;
// failed = no answer: cannot connect, timeout, connection broken, answer too large).
using metrics::HaproxyCommandResult;

// What the invalidator reports, each called on its strand; any may be empty.
struct HaproxyInvalidatorHooks {
  std::function<void(HaproxyCommandResult)> command;                   // every command sent
  // Keys one socket confirmed revoking, and a whole-table revoke one socket confirmed (repeats
  // are not reported: status().repeats counts them).
  std::function<void(std::size_t keys)> keys_cleared;
  std::function<void()> table_cleared;
  std::function<void(std::size_t keys)> keys_rejected;                 // keys dropped: not decision::is_haproxy_key
  std::function<void(std::size_t socket_index, bool reachable)> socket_reachable;  // a socket's state changed
  std::function<void(bool all_reachable)> on_reachability;             // the conjunction changed
};

struct HaproxySocketStatus {
  std::string socket;
  bool reachable = false;
  std::string last_error;  // why the last command failed; empty after a success
  std::uint64_t keys_cleared = 0;   // keys revoked (not counting repeats)
  std::uint64_t table_clears = 0;   // whole-table revokes (not counting repeats)
  std::uint64_t repeats = 0;        // revokes repeated, keys lines and whole tables
  std::uint64_t in_use_revoked = 0; // entries a whole-table revoke found still holding an address (in use)
  std::optional<std::chrono::system_clock::time_point> last_clear;  // last confirmed revoke (keys or table)
};

class HaproxyInvalidator {
 public:
  HaproxyInvalidator(boost::asio::any_io_executor executor, HaproxyInvalidatorSettings settings,
                     HaproxyInvalidatorHooks hooks = {});
  ~HaproxyInvalidator();
  HaproxyInvalidator(const HaproxyInvalidator&) = delete;
  HaproxyInvalidator& operator=(const HaproxyInvalidator&) = delete;

  void start(std::function<void()> then = {});
  void stop();
  bool running() const noexcept { return workers_.load() > 0; }

  void clear(std::vector<std::string> keys);
  void clear_all();

  std::vector<HaproxySocketStatus> status() const;
  bool all_reachable() const;

 private:
  struct Socket;
  enum class Expect : std::uint8_t {
    silent,   // an empty line per command, nothing else
    listing,  // `show table ...`: the answer lists the table's header
  };
  boost::asio::awaitable<void> work(Socket& socket);
  // Revokes the whole table (clear, list what is left with an address, zero those); true when
  // every step succeeded. `repeat`: the repeat of an earlier one (not repeated again).
  boost::asio::awaitable<bool> revoke_table(Socket& socket, bool repeat);
  // Sends `keys` as lines of `set table ... data.gpt 0` commands; true when all succeeded.
  boost::asio::awaitable<bool> revoke_keys(Socket& socket, const std::vector<std::string>& keys);
  // Sends one command line of `commands` commands; HAProxy's answer (at most max_bytes, whole
  // within `timeout`) when it is what `expect` says, nullopt otherwise (then the socket is
  // unreachable and a whole-table revoke is due).
  boost::asio::awaitable<std::optional<std::string>> send(Socket& socket, std::string command, std::size_t commands,
                                                          Expect expect, std::size_t max_bytes,
                                                          std::chrono::milliseconds timeout);
  void schedule_key_repeats(Socket& socket, const std::vector<std::string>& keys,
                            std::chrono::steady_clock::time_point revoked);
  void set_reachable(Socket& socket, bool reachable, std::string error);
  // On the strand: one socket's first whole-table revoke ended; calls start()'s `then` after the last.
  void first_revoke_ended();
  void call_then();
  void add_keys(std::vector<std::string> keys);

  boost::asio::strand<boost::asio::any_io_executor> strand_;
  HaproxyInvalidatorSettings settings_;
  HaproxyInvalidatorHooks hooks_;
  std::vector<std::unique_ptr<Socket>> sockets_;
  bool all_reachable_ = false;  // on the strand: the last value reported to on_reachability
  std::function<void()> then_;  // on the strand: start()'s `then`, until it is called or stop() drops it
  std::size_t first_revokes_pending_ = 0;  // on the strand: sockets whose first whole-table revoke runs
  boost::asio::steady_timer first_revoke_deadline_;  // start() + first_revoke_wait
  std::atomic<bool> stopping_ = false;
  std::atomic<int> workers_ = 0;
  mutable std::mutex status_mutex_;  // guards each Socket's `status`
};

}  // namespace director::server

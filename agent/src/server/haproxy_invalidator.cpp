#include "server/haproxy_invalidator.hpp"

#include "decision/director.hpp"
#include "log/log.hpp"
#include "net/awaitable.hpp"
#include "net/haproxy_cli.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <exception>
#include <unordered_map>
#include <utility>

namespace director::server {
namespace {

// Enough for a hundred error lines, or the headers of a few hundred tables (`show table`).
constexpr std::size_t max_answer_bytes = 64 * 1024;

// HAProxy 2.6 and 3.2 answer a command on a table they do not have with this line.
constexpr std::string_view no_such_table = "No such table";

// Whether a `show table` answer lists `table`: a line "# table: <table>, type: ...".
bool lists_table(std::string_view answer, std::string_view table) {
  const std::string header = "# table: " + std::string(table) + ",";
  for (std::size_t at = 0; at < answer.size();) {
    const auto end = std::min(answer.find('\n', at), answer.size());
    if (answer.substr(at, end - at).starts_with(header)) return true;
    at = end + 1;
  }
  return false;
}

// The keys of a `show table <table> ...` answer's rows ("0x55d...: key=<key> use=0 exp=... gpt0=..."),
// split into those decision::is_haproxy_key accepts and a count of the others.
struct ListedKeys {
  std::vector<std::string> keys;
  std::size_t skipped = 0;
};
ListedKeys listed_keys(std::string_view answer) {
  constexpr std::string_view key_field = ": key=";
  ListedKeys result;
  for (std::size_t at = 0; at < answer.size();) {
    const auto end = std::min(answer.find('\n', at), answer.size());
    const auto line = answer.substr(at, end - at);
    at = end + 1;
    if (line.empty() || line.starts_with('#')) continue;
    const auto field = line.find(key_field);
    if (field == std::string_view::npos) {
      ++result.skipped;
      continue;
    }
    const auto start = field + key_field.size();
    const auto key = line.substr(start, line.find(' ', start) - start);
    if (decision::is_haproxy_key(key)) {
      result.keys.emplace_back(key);
    } else {
      ++result.skipped;
    }
  }
  return result;
}

}  // namespace

// One stats socket and the work waiting for it. Everything but `status` lives on the strand.
struct HaproxyInvalidator::Socket {
  using TimePoint = std::chrono::steady_clock::time_point;

  Socket(std::size_t socket_index, std::string socket_address,
         const boost::asio::strand<boost::asio::any_io_executor>& strand)
      : index(socket_index), address(std::move(socket_address)), wake(strand) {
    status.socket = address;
  }

  std::size_t index;
  std::string address;
  boost::asio::steady_timer wake;      // its worker waits on it; cancelled to wake it
  std::deque<std::string> pending;     // keys to revoke, oldest first
  std::unordered_set<std::string> pending_set;  // the same keys, to send each once
  bool revoke_table = true;            // a whole-table revoke is due before any key
  // Repeats: each key's due time (its last revoke + repeat_after), and the same in due order
  // (an entry whose time is not the key's in repeat_due is stale: the key was revoked again).
  std::unordered_map<std::string, TimePoint> repeat_due;
  std::deque<std::pair<TimePoint, std::string>> repeat_queue;
  std::optional<TimePoint> repeat_table_at;  // a whole-table repeat is due then
  bool reachable = false;
  bool confirming_reachable = false;   // a whole-table revoke decides when it turns reachable
  std::string logged_error;            // the last failure logged, to log each new one once
  TimePoint last_command{};
  HaproxySocketStatus status;          // guarded by status_mutex_

  void drop_key_repeats() {
    repeat_due.clear();
    repeat_queue.clear();
  }
  // Drops queue entries of keys revoked again since (their later entry stays).
  void drop_stale_repeats() {
    while (!repeat_queue.empty()) {
      const auto found = repeat_due.find(repeat_queue.front().second);
      if (found != repeat_due.end() && found->second == repeat_queue.front().first) return;
      repeat_queue.pop_front();
    }
  }
};

HaproxyInvalidator::HaproxyInvalidator(boost::asio::any_io_executor executor, HaproxyInvalidatorSettings settings,
                                       HaproxyInvalidatorHooks hooks)
    : strand_(boost::asio::make_strand(std::move(executor))),
      settings_(std::move(settings)),
      hooks_(std::move(hooks)),
      first_revoke_deadline_(strand_) {
  settings_.keys_per_command = std::max<std::size_t>(settings_.keys_per_command, 1);
  for (std::size_t index = 0; index < settings_.sockets.size(); ++index) {
    sockets_.push_back(std::make_unique<Socket>(index, settings_.sockets[index], strand_));
  }
}

HaproxyInvalidator::~HaproxyInvalidator() = default;

void HaproxyInvalidator::start(std::function<void()> then) {
  if (sockets_.empty()) {
    if (then) then();
    return;
  }
  first_revokes_pending_ = sockets_.size();
  if (then) {
    ++workers_;
    // On the strand before the workers (a strand runs in posting order), after which stop()'s.
    boost::asio::post(strand_, [this, then = std::move(then)]() mutable {
      if (stopping_) {
        --workers_;
        return;
      }
      then_ = std::move(then);
      first_revoke_deadline_.expires_after(settings_.first_revoke_wait);
      first_revoke_deadline_.async_wait([this](const boost::system::error_code& error) {
        if (!error && then_) {
          log(LogLevel::warn, "HAProxy's tables not all revoked at start in time: going on, those sockets unreachable",
              {{"waited_ms", std::to_string(settings_.first_revoke_wait.count())},
               {"sockets_pending", std::to_string(first_revokes_pending_)}});
          call_then();
        }
        --workers_;
      });
    });
  }
  for (auto& socket : sockets_) {
    ++workers_;
    boost::asio::co_spawn(strand_, work(*socket), [this](const std::exception_ptr& thrown) {
      net::log_if_thrown("haproxy invalidator")(thrown);
      --workers_;
    });
  }
  if (!sockets_.empty()) {
    log(LogLevel::info, "invalidating HAProxy's answers through its runtime API",
        {{"sockets", std::to_string(sockets_.size())}, {"table", settings_.table}});
  }
}

void HaproxyInvalidator::stop() {
  stopping_ = true;
  boost::asio::post(strand_, [this] {
    then_ = nullptr;
    first_revoke_deadline_.cancel();
    for (auto& socket : sockets_) socket->wake.cancel();
  });
}

void HaproxyInvalidator::first_revoke_ended() {
  if (first_revokes_pending_ == 0) return;
  if (--first_revokes_pending_ == 0 && then_) {
    first_revoke_deadline_.cancel();
    call_then();
  }
}

void HaproxyInvalidator::call_then() {
  auto then = std::move(then_);
  then_ = nullptr;
  if (!stopping_) then();
}

void HaproxyInvalidator::clear(std::vector<std::string> keys) {
  if (sockets_.empty() || keys.empty()) return;
  boost::asio::post(strand_, [this, keys = std::move(keys)]() mutable { add_keys(std::move(keys)); });
}

void HaproxyInvalidator::clear_all() {
  boost::asio::post(strand_, [this] {
    for (auto& socket : sockets_) {
      socket->revoke_table = true;
      if (socket->reachable) socket->wake.cancel();
    }
  });
}

std::vector<HaproxySocketStatus> HaproxyInvalidator::status() const {
  const std::lock_guard lock(status_mutex_);
  std::vector<HaproxySocketStatus> result;
  result.reserve(sockets_.size());
  for (const auto& socket : sockets_) result.push_back(socket->status);
  return result;
}

bool HaproxyInvalidator::all_reachable() const {
  const std::lock_guard lock(status_mutex_);
  return !sockets_.empty() &&
         std::all_of(sockets_.begin(), sockets_.end(), [](const auto& socket) { return socket->status.reachable; });
}

void HaproxyInvalidator::add_keys(std::vector<std::string> keys) {
  const auto valid_end =
      std::partition(keys.begin(), keys.end(), [](const auto& key) { return decision::is_haproxy_key(key); });
  if (const auto rejected = static_cast<std::size_t>(keys.end() - valid_end); rejected > 0) {
    // Never logged as they are: a rejected key may be anything a client sent.
    log(LogLevel::warn, "keys not sent to HAProxy: not a fast-path key ([A-Za-z0-9._@+-], 1 to 64)",
        {{"keys", std::to_string(rejected)}});
    if (hooks_.keys_rejected) hooks_.keys_rejected(rejected);
    keys.erase(valid_end, keys.end());
  }
  if (keys.empty()) return;
  for (auto& socket : sockets_) {
    for (const auto& key : keys) {
      if (socket->pending_set.insert(key).second) socket->pending.push_back(key);
    }
    if (socket->pending.size() > settings_.max_pending_keys) {
      // Cheaper than thousands of keys, and bounded: every user's next request asks the agent.
      socket->pending.clear();
      socket->pending_set.clear();
      socket->revoke_table = true;
    }
    if (socket->reachable) socket->wake.cancel();
  }
}

void HaproxyInvalidator::schedule_key_repeats(Socket& socket, const std::vector<std::string>& keys,
                                              std::chrono::steady_clock::time_point revoked) {
  const auto due = revoked + settings_.repeat_after;
  if (socket.repeat_table_at && *socket.repeat_table_at >= due) return;  // the table's repeat covers them
  for (const auto& key : keys) {
    socket.repeat_due[key] = due;
    socket.repeat_queue.emplace_back(due, key);
  }
  if (socket.repeat_queue.size() > settings_.max_pending_keys) {
    // Bounded (the queue holds every key waiting, and stale entries of keys revoked again): one
    // whole-table repeat instead, no earlier than any key's.
    socket.drop_key_repeats();
    socket.repeat_table_at = due;
  }
}

boost::asio::awaitable<void> HaproxyInvalidator::work(Socket& socket) {
  // Named commands, never temporaries: GCC 12 destroys a temporary argument of a coroutine called
  // in a co_await expression twice.
  const std::string check_command = "show table\n";
  bool first_revoke = true;
  while (!stopping_) {
    const auto now = std::chrono::steady_clock::now();
    if (socket.revoke_table) {
      const bool was_reachable = socket.reachable;
      const bool revoked = co_await revoke_table(socket, false);
      if (std::exchange(first_revoke, false)) first_revoke_ended();
      if (!revoked && !was_reachable && !stopping_) {
        // Unreachable still: try again after the check interval (stop() cancels the wait).
        socket.wake.expires_after(settings_.check_interval);
        co_await socket.wake.async_wait(net::nothrow_awaitable);
      }
      continue;
    }
    if (socket.repeat_table_at && now >= *socket.repeat_table_at) {
      socket.repeat_table_at.reset();
      co_await revoke_table(socket, true);
      continue;
    }
    if (!socket.pending.empty()) {
      std::vector<std::string> keys;
      while (!socket.pending.empty() && keys.size() < settings_.keys_per_command) {
        socket.pending_set.erase(socket.pending.front());
        keys.push_back(std::move(socket.pending.front()));
        socket.pending.pop_front();
      }
      if (co_await revoke_keys(socket, keys)) {
        schedule_key_repeats(socket, keys, now);
        if (hooks_.keys_cleared) hooks_.keys_cleared(keys.size());
        const std::lock_guard lock(status_mutex_);
        socket.status.keys_cleared += keys.size();
        socket.status.last_clear = std::chrono::system_clock::now();
      }
      continue;
    }
    socket.drop_stale_repeats();
    if (!socket.repeat_queue.empty() && now >= socket.repeat_queue.front().first) {
      std::vector<std::string> keys;
      while (!socket.repeat_queue.empty() && now >= socket.repeat_queue.front().first &&
             keys.size() < settings_.keys_per_command) {
        socket.repeat_due.erase(socket.repeat_queue.front().second);
        keys.push_back(std::move(socket.repeat_queue.front().second));
        socket.repeat_queue.pop_front();
        socket.drop_stale_repeats();
      }
      if (co_await revoke_keys(socket, keys)) {
        const std::lock_guard lock(status_mutex_);
        ++socket.status.repeats;
      }
      continue;
    }
    auto wake_at = socket.last_command + settings_.check_interval;
    if (now >= wake_at) {
      co_await send(socket, check_command, 1, Expect::listing, max_answer_bytes, settings_.command_timeout);
      continue;
    }
    if (socket.repeat_table_at) wake_at = std::min(wake_at, *socket.repeat_table_at);
    if (!socket.repeat_queue.empty()) wake_at = std::min(wake_at, socket.repeat_queue.front().first);
    socket.wake.expires_at(wake_at);
    co_await socket.wake.async_wait(net::nothrow_awaitable);
  }
}

boost::asio::awaitable<bool> HaproxyInvalidator::revoke_table(Socket& socket, bool repeat) {
  const auto started = std::chrono::steady_clock::now();
  if (!repeat) {
    // The keys waiting now are covered by this revoke (and its repeat); a clear_all() arriving
    // during it sets revoke_table again, keys arriving during it stay pending.
    socket.revoke_table = false;
    socket.pending.clear();
    socket.pending_set.clear();
  }
  const std::string clear_command = "clear table " + settings_.table + "\n";
  const std::string list_command = "show table " + settings_.table + " data.gpt gt 0\n";
  // An unreachable socket turns reachable when the whole revoke succeeded, not at its first step.
  const bool confirms_reachable = !socket.reachable;
  socket.confirming_reachable = confirms_reachable;
  std::optional<std::string> listing;
  if (co_await send(socket, clear_command, 1, Expect::silent, max_answer_bytes, settings_.command_timeout)) {
    // What `clear table` could not free: entries a stream uses, and any stored since.
    // Up to max_listing_bytes: its own, longer bound.
    listing = co_await send(socket, list_command, 1, Expect::listing, settings_.max_listing_bytes,
                            settings_.listing_timeout);
  }
  const auto listed = listing ? listed_keys(*listing) : ListedKeys{};
  bool revoked = false;
  if (listing) revoked = co_await revoke_keys(socket, listed.keys);
  socket.confirming_reachable = false;
  if (!revoked) co_return false;
  if (confirms_reachable) set_reachable(socket, true, {});
  if (listed.skipped > 0) {
    log(LogLevel::warn, "rows of HAProxy's table not revoked: not a fast-path key ([A-Za-z0-9._@+-], 1 to 64)",
        {{"socket", socket.address}, {"rows", std::to_string(listed.skipped)}});
    if (hooks_.keys_rejected) hooks_.keys_rejected(listed.skipped);
  }
  if (repeat) {
    const std::lock_guard lock(status_mutex_);
    ++socket.status.repeats;
    socket.status.in_use_revoked += listed.keys.size();
    co_return true;
  }
  // Its repeat covers every key repeat due before it: all of them (each due at most repeat_after
  // after a revoke that came before this one).
  socket.drop_key_repeats();
  socket.repeat_table_at = started + settings_.repeat_after;
  if (hooks_.table_cleared) hooks_.table_cleared();
  const std::lock_guard lock(status_mutex_);
  ++socket.status.table_clears;
  socket.status.in_use_revoked += listed.keys.size();
  socket.status.last_clear = std::chrono::system_clock::now();
  co_return true;
}

boost::asio::awaitable<bool> HaproxyInvalidator::revoke_keys(Socket& socket, const std::vector<std::string>& keys) {
  const std::string revoke_command = "set table " + settings_.table + " key ";
  for (std::size_t at = 0; at < keys.size(); at += settings_.keys_per_command) {
    const auto end = std::min(keys.size(), at + settings_.keys_per_command);
    std::string line;
    for (std::size_t i = at; i < end; ++i) {
      if (i > at) line += ';';
      line += revoke_command;
      line += keys[i];
      line += " data.gpt 0";
    }
    line += '\n';
    if (!co_await send(socket, std::move(line), end - at, Expect::silent, max_answer_bytes,
                           settings_.command_timeout)) co_return false;
  }
  co_return true;
}

boost::asio::awaitable<std::optional<std::string>> HaproxyInvalidator::send(Socket& socket, std::string command,
                                                                            std::size_t commands, Expect expect,
                                                                            std::size_t max_bytes,
                                                                            std::chrono::milliseconds timeout) {
  auto answer = co_await net::haproxy_command(socket.address, std::move(command), max_bytes, timeout);
  socket.last_command = std::chrono::steady_clock::now();
  HaproxyCommandResult result = HaproxyCommandResult::ok;
  std::string error;
  const bool listing = expect == Expect::listing;
  if (!answer) {
    result = HaproxyCommandResult::failed;
    error = answer.error().message;
  } else {
    const auto text = net::first_answer_line(*answer);
    // `show table` lists every table's header; a table missing from the list is one HAProxy lacks.
    const bool missing_table = text == no_such_table || (listing && !lists_table(*answer, settings_.table) &&
                                                         (text.empty() || text.starts_with("# table:")));
    const auto lines = static_cast<std::size_t>(std::count(answer->begin(), answer->end(), '\n'));
    if (missing_table) {
      result = HaproxyCommandResult::refused;
      error = "HAProxy has no table " + settings_.table + " (haproxy.cfg's backend " + settings_.table +
              "): answers it holds cannot be invalidated";
    } else if (listing ? !lists_table(*answer, settings_.table) : !text.empty()) {
      // Any text is an error. ("Entry currently in use" cannot come: no command here deletes an
      // entry, because HAProxy refuses to delete one a stream tracks; revoking overwrites it.)
      result = HaproxyCommandResult::refused;
      error = "HAProxy refused the command: " + text;
    } else if (!listing && lines < commands) {
      // Each command answers an empty line: fewer means HAProxy did not run them all.
      result = HaproxyCommandResult::refused;
      error = "HAProxy answered " + std::to_string(lines) + " of " + std::to_string(commands) + " commands";
    }
  }
  if (hooks_.command) hooks_.command(result);
  const bool ok = result == HaproxyCommandResult::ok;
  if (!ok) {
    // What it holds is unknown now: a whole-table revoke covers the keys, once it is back.
    socket.pending.clear();
    socket.pending_set.clear();
    socket.revoke_table = true;
  }
  if (!ok || !socket.confirming_reachable) set_reachable(socket, ok, std::move(error));
  if (!ok) co_return std::nullopt;
  co_return std::move(*answer);
}

void HaproxyInvalidator::set_reachable(Socket& socket, bool reachable, std::string error) {
  {
    const std::lock_guard lock(status_mutex_);
    socket.status.reachable = reachable;
    socket.status.last_error = error;
  }
  if (reachable != socket.reachable) {
    socket.reachable = reachable;
    if (hooks_.socket_reachable) hooks_.socket_reachable(socket.index, reachable);
    if (reachable) {
      socket.logged_error.clear();
      log(LogLevel::info, "HAProxy's runtime API reachable: its table of answers was revoked",
          {{"socket", socket.address}, {"table", settings_.table}});
    }
  }
  if (!reachable && error != socket.logged_error) {
    const bool missing_table = error.starts_with("HAProxy has no table");
    log(missing_table ? LogLevel::error : LogLevel::warn,
        "HAProxy's runtime API unreachable: its answers stay short-lived until it is back",
        {{"socket", socket.address}, {"message", error}});
    socket.logged_error = error;
  }
  const bool all = std::all_of(sockets_.begin(), sockets_.end(), [](const auto& each) { return each->reachable; });
  if (all != all_reachable_) {
    all_reachable_ = all;
    if (hooks_.on_reachability) hooks_.on_reachability(all);
  }
}

}  // namespace director::server

#include "server/haproxy_invalidator.hpp"

#include "log/log.hpp"
#include "net/awaitable.hpp"
#include "net/haproxy_cli.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <exception>
#include <utility>

namespace director::server {
namespace {

// Enough for a hundred error lines, or the headers of a few hundred tables (`show table`).
constexpr std::size_t max_answer_bytes = 64 * 1024;

// HAProxy 2.6 and 3.2 answer a command on a table they do not have with this line.
constexpr std::string_view no_such_table = "No such table";

bool is_key_character(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '@' || c == '+' || c == '-';
}

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

}  // namespace

bool is_fast_path_key(std::string_view key) noexcept {
  return !key.empty() && key.size() <= 64 && std::all_of(key.begin(), key.end(), is_key_character);
}

// One stats socket and the work waiting for it. Everything but `status` lives on the strand.
struct HaproxyInvalidator::Socket {
  Socket(std::size_t socket_index, std::string socket_address,
         const boost::asio::strand<boost::asio::any_io_executor>& strand)
      : index(socket_index), address(std::move(socket_address)), wake(strand) {
    status.socket = address;
  }

  std::size_t index;
  std::string address;
  boost::asio::steady_timer wake;      // its worker waits on it; cancelled to wake it
  std::deque<std::string> pending;     // keys to clear, oldest first
  std::unordered_set<std::string> pending_set;  // the same keys, to send each once
  bool clear_table = true;             // a whole-table clear is due before any key
  bool reachable = false;
  std::string logged_error;            // the last failure logged, to log each new one once
  std::chrono::steady_clock::time_point last_command{};
  HaproxySocketStatus status;          // guarded by status_mutex_
};

HaproxyInvalidator::HaproxyInvalidator(boost::asio::any_io_executor executor, HaproxyInvalidatorSettings settings,
                                       HaproxyInvalidatorHooks hooks)
    : strand_(boost::asio::make_strand(std::move(executor))), settings_(std::move(settings)), hooks_(std::move(hooks)) {
  settings_.keys_per_command = std::max<std::size_t>(settings_.keys_per_command, 1);
  for (std::size_t index = 0; index < settings_.sockets.size(); ++index) {
    sockets_.push_back(std::make_unique<Socket>(index, settings_.sockets[index], strand_));
  }
}

HaproxyInvalidator::~HaproxyInvalidator() = default;

void HaproxyInvalidator::start() {
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
    for (auto& socket : sockets_) socket->wake.cancel();
  });
}

void HaproxyInvalidator::clear(std::vector<std::string> keys) {
  if (sockets_.empty() || keys.empty()) return;
  boost::asio::post(strand_, [this, keys = std::move(keys)]() mutable { add_keys(std::move(keys)); });
}

void HaproxyInvalidator::clear_all() {
  boost::asio::post(strand_, [this] {
    for (auto& socket : sockets_) {
      socket->clear_table = true;
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
  const auto valid_end = std::partition(keys.begin(), keys.end(), [](const auto& key) { return is_fast_path_key(key); });
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
      socket->clear_table = true;
    }
    if (socket->reachable) socket->wake.cancel();
  }
}

boost::asio::awaitable<void> HaproxyInvalidator::work(Socket& socket) {
  const std::string clear_table_command = "clear table " + settings_.table + "\n";
  const std::string clear_key_command = "clear table " + settings_.table + " key ";
  // Named commands, never temporaries: GCC 12 destroys a temporary argument of a coroutine called
  // in a co_await expression twice.
  const std::string check_command = "show table\n";
  while (!stopping_) {
    if (socket.clear_table) {
      // The keys waiting now are covered by this clear; keys arriving during it are not.
      socket.pending.clear();
      socket.pending_set.clear();
      const bool was_reachable = socket.reachable;
      if (co_await send(socket, clear_table_command, 1, false)) {
        socket.clear_table = false;
        if (hooks_.table_cleared) hooks_.table_cleared();
        const std::lock_guard lock(status_mutex_);
        ++socket.status.table_clears;
        socket.status.last_clear = std::chrono::system_clock::now();
      } else if (!was_reachable && !stopping_) {
        // Unreachable still: try again after the check interval (stop() cancels the wait).
        socket.wake.expires_after(settings_.check_interval);
        co_await socket.wake.async_wait(net::nothrow_awaitable);
      }
      continue;
    }
    if (!socket.pending.empty()) {
      std::string line;
      std::size_t count = 0;
      while (!socket.pending.empty() && count < settings_.keys_per_command) {
        if (count > 0) line += ';';
        line += clear_key_command;
        line += socket.pending.front();
        socket.pending_set.erase(socket.pending.front());
        socket.pending.pop_front();
        ++count;
      }
      line += '\n';
      if (co_await send(socket, std::move(line), count, false)) {
        if (hooks_.keys_cleared) hooks_.keys_cleared(count);
        const std::lock_guard lock(status_mutex_);
        socket.status.keys_cleared += count;
        socket.status.last_clear = std::chrono::system_clock::now();
      }
      continue;
    }
    const auto check_due = socket.last_command + settings_.check_interval;
    if (std::chrono::steady_clock::now() >= check_due) {
      co_await send(socket, check_command, 1, true);
      continue;
    }
    socket.wake.expires_at(check_due);
    co_await socket.wake.async_wait(net::nothrow_awaitable);
  }
}

boost::asio::awaitable<bool> HaproxyInvalidator::send(Socket& socket, std::string command, std::size_t commands,
                                                      bool table_listing) {
  auto answer = co_await net::haproxy_command(socket.address, std::move(command), max_answer_bytes,
                                              settings_.command_timeout);
  socket.last_command = std::chrono::steady_clock::now();
  HaproxyCommandResult result = HaproxyCommandResult::ok;
  std::string error;
  if (!answer) {
    result = HaproxyCommandResult::failed;
    error = answer.error().message;
  } else {
    const auto text = net::first_answer_line(*answer);
    // `show table` lists every table's header; a table missing from the list is one HAProxy lacks.
    const bool missing_table = text == no_such_table ||
                               (table_listing && !lists_table(*answer, settings_.table) &&
                                (text.empty() || text.starts_with("# table:")));
    if (missing_table) {
      result = HaproxyCommandResult::refused;
      error = "HAProxy has no table " + settings_.table + " (haproxy.cfg's backend " + settings_.table +
              "): answers it holds cannot be invalidated";
    } else if (table_listing && !lists_table(*answer, settings_.table)) {
      result = HaproxyCommandResult::refused;
      error = "HAProxy refused the command: " + text;
    } else if (!table_listing && !text.empty()) {
      result = HaproxyCommandResult::refused;
      error = "HAProxy refused the command: " + text;
    } else if (!table_listing && static_cast<std::size_t>(std::count(answer->begin(), answer->end(), '\n')) < commands) {
      // Each command answers at least an empty line: fewer means HAProxy did not run them all.
      result = HaproxyCommandResult::refused;
      error = "HAProxy answered " + std::to_string(std::count(answer->begin(), answer->end(), '\n')) + " of " +
              std::to_string(commands) + " commands";
    }
  }
  if (hooks_.command) hooks_.command(result);
  const bool ok = result == HaproxyCommandResult::ok;
  if (!ok) {
    // What it holds is unknown now: a whole-table clear covers the keys, once it is back.
    socket.pending.clear();
    socket.pending_set.clear();
    socket.clear_table = true;
  }
  set_reachable(socket, ok, std::move(error));
  co_return ok;
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
      log(LogLevel::info, "HAProxy's runtime API reachable: its table of answers was cleared",
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

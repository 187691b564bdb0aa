// c-ares inside Boost.Asio. c-ares 1.18 tells us which sockets it wants watched through
// ARES_OPT_SOCK_STATE_CB; each one gets a posix::stream_descriptor that only waits for readiness
// (c-ares owns the fd: we release() it, never close it), readiness is handed back with
// ares_process_fd(), and one steady_timer follows ares_timeout() so that retries and timeouts run
// without any socket activity. Everything that touches the channel runs on one strand.
#include "net/resolver.hpp"

#include "config/values.hpp"

#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <unordered_map>
#include <utility>

namespace director::net {

namespace asio = boost::asio;

namespace {

using Clock = std::chrono::steady_clock;
using ResolveHandler = asio::any_completion_handler<void(ResolveResult)>;
using WaiterId = std::uint64_t;

// ares_library_init is process-wide and not thread-safe: run it once, on first use.
void initialize_cares_library() {
  static const int status = ares_library_init(ARES_LIB_INIT_ALL);
  if (status != ARES_SUCCESS) {
    throw std::runtime_error(std::string("resolver: c-ares library initialisation failed: ") +
                             ares_strerror(status));
  }
}

// DNS names are case-insensitive: lookups are keyed by the lowercase name.
std::string host_key(std::string_view host) {
  std::string key(host);
  std::transform(key.begin(), key.end(), key.begin(), [](char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  });
  return key;
}

ResolveResult failure(DnsOutcome outcome) {
  return ResolveResult{outcome, {}, std::chrono::seconds{0}};
}

// Turns what ares_getaddrinfo() reported into a result. NXDOMAIN and NODATA are the server's
// definitive "no address"; so is a name c-ares refuses to send (EBADNAME), which can never exist.
ResolveResult to_result(int status, const ares_addrinfo* info) {
  if (status == ARES_ENOTFOUND || status == ARES_ENODATA || status == ARES_EBADNAME) {
    return failure(DnsOutcome::no_such_host);
  }
  if (status != ARES_SUCCESS || info == nullptr) return failure(DnsOutcome::error);

  std::vector<asio::ip::address> ipv4;
  std::vector<asio::ip::address> ipv6;
  int smallest_ttl = std::numeric_limits<int>::max();
  for (const ares_addrinfo_node* node = info->nodes; node != nullptr; node = node->ai_next) {
    if (node->ai_addr == nullptr) continue;
    if (node->ai_family == AF_INET && node->ai_addrlen >= sizeof(sockaddr_in)) {
      sockaddr_in ip{};
      std::memcpy(&ip, node->ai_addr, sizeof ip);
      ipv4.emplace_back(asio::ip::address_v4(ntohl(ip.sin_addr.s_addr)));
    } else if (node->ai_family == AF_INET6 && node->ai_addrlen >= sizeof(sockaddr_in6)) {
      sockaddr_in6 ip{};
      std::memcpy(&ip, node->ai_addr, sizeof ip);
      asio::ip::address_v6::bytes_type bytes{};
      std::memcpy(bytes.data(), &ip.sin6_addr, bytes.size());
      ipv6.emplace_back(asio::ip::address_v6(bytes, ip.sin6_scope_id));
    } else {
      continue;
    }
    smallest_ttl = std::min(smallest_ttl, node->ai_ttl);
  }

  ResolveResult result{DnsOutcome::ok, {}, std::chrono::seconds{0}};
  for (auto* family : {&ipv4, &ipv6}) {
    for (const auto& address : *family) {
      if (std::find(result.addresses.begin(), result.addresses.end(), address) ==
          result.addresses.end()) {
        result.addresses.push_back(address);
      }
    }
  }
  if (result.addresses.empty()) return failure(DnsOutcome::no_such_host);
  result.ttl = std::chrono::seconds{std::max(smallest_ttl, 0)};
  return result;
}

struct AddrinfoDeleter {
  void operator()(ares_addrinfo* info) const noexcept { ares_freeaddrinfo(info); }
};

}  // namespace

// The c-ares channel and everything attached to it. Apart from submit(), stop() and the
// constructor/destructor, every member function runs on strand_. Shared by the Resolver and by
// every handler in flight, so it outlives the Resolver until the last handler ran.
class Resolver::Engine : public std::enable_shared_from_this<Resolver::Engine> {
 public:
  Engine(asio::any_io_executor executor, const ResolverOptions& options)
      : strand_(asio::make_strand(std::move(executor))), timer_(strand_) {
    initialize_cares_library();
    if (auto problem = Resolver::validate(options))
      throw std::runtime_error("resolver: " + *problem);

    ares_options settings{};
    int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB;
    settings.timeout = static_cast<int>(options.timeout.count());
    settings.tries = options.tries;
    settings.sock_state_cb = &Engine::on_socket_state;
    settings.sock_state_cb_data = this;
    std::string dns_only = "b";
    if (!options.servers.empty()) {
      // Explicit servers: the name as given, DNS only (no search domains, no /etc/hosts).
      mask |= ARES_OPT_DOMAINS | ARES_OPT_LOOKUPS;
      settings.domains = nullptr;
      settings.ndomains = 0;
      settings.lookups = dns_only.data();
    }
    ares_channel channel = nullptr;
    if (const int status = ares_init_options(&channel, &settings, mask); status != ARES_SUCCESS) {
      throw std::runtime_error(std::string("resolver: c-ares initialisation failed: ") +
                               ares_strerror(status));
    }
    channel_ = channel;
    if (!options.servers.empty()) {
      std::vector<ares_addr_port_node> nodes(options.servers.size());
      for (std::size_t i = 0; i < nodes.size(); ++i) {
        const auto& server = options.servers[i];
        ares_addr_port_node& node = nodes[i];
        node.next = i + 1 < nodes.size() ? &nodes[i + 1] : nullptr;
        node.udp_port = server.port();
        node.tcp_port = server.port();
        if (server.address().is_v4()) {
          node.family = AF_INET;
          node.addr.addr4.s_addr = htonl(server.address().to_v4().to_uint());
        } else {
          node.family = AF_INET6;
          const auto bytes = server.address().to_v6().to_bytes();
          std::memcpy(&node.addr.addr6, bytes.data(), bytes.size());
        }
      }
      if (const int status = ares_set_servers_ports(channel_, nodes.data());
          status != ARES_SUCCESS) {
        ares_destroy(channel_);
        channel_ = nullptr;
        throw std::runtime_error(std::string("resolver: cannot use the DNS servers: ") +
                                 ares_strerror(status));
      }
    }
  }

  // Runs when the last handler or the Resolver let go, possibly while the execution context is
  // shutting down: nothing is delivered any more, waiting coroutines are destroyed, not resumed.
  ~Engine() {
    destroying_ = true;
    if (channel_ != nullptr) ares_destroy(channel_);  // callbacks: EDESTRUCTION, sockets closed
    channel_ = nullptr;
  }

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Any thread: registers `handler` as waiting for `host` and moves the work to the strand.
  template <typename Handler>
  static void submit(const std::shared_ptr<Engine>& engine, std::string host, Handler&& handler) {
    const WaiterId id = engine->next_waiter_id_.fetch_add(1, std::memory_order_relaxed);
    // The caller's executor, kept busy (outstanding work) until the result is posted to it.
    asio::any_io_executor caller =
        asio::prefer(asio::get_associated_executor(handler, engine->strand_),
                     asio::execution::outstanding_work.tracked);
    Waiter waiter{ResolveHandler(std::forward<Handler>(handler)), std::move(caller)};
    // any_completion_handler has taken over the caller's cancellation slot and offers its own.
    auto slot = waiter.handler.get_cancellation_slot();
    if (slot.is_connected()) slot.template emplace<AbandonOnCancel>(engine, id);
    asio::post(engine->strand_,
               [engine, id, host = std::move(host), waiter = std::move(waiter)]() mutable {
                 engine->start(id, host, std::move(waiter));
               });
  }

  // Any thread: stops the engine on its strand.
  void stop() {
    asio::post(strand_, [self = shared_from_this()] { self->stop_on_strand(); });
  }

 private:
  // A coroutine (or other handler) waiting for a lookup.
  struct Waiter {
    ResolveHandler handler;
    asio::any_io_executor caller;  // where the result is delivered; tracks outstanding work
  };

  // One ares_getaddrinfo() on the wire and who waits for it.
  struct Lookup {
    std::vector<WaiterId> waiters;
  };

  // Identifies the lookup in c-ares callbacks; owned by c-ares between the call and its callback.
  struct QueryContext {
    Engine* engine;
    std::string key;
  };

  // A socket c-ares asked us to watch. `generation` tells a wait on this socket from a wait on an
  // earlier socket that had the same fd number.
  struct SocketWatch {
    SocketWatch(const asio::strand<asio::any_io_executor>& strand, std::uint64_t generation_)
        : descriptor(strand), generation(generation_) {}
    SocketWatch(const SocketWatch&) = delete;
    SocketWatch& operator=(const SocketWatch&) = delete;
    ~SocketWatch() {
      // c-ares owns and closes the fd. release() cancels the waits and forgets the fd.
      if (descriptor.is_open()) descriptor.release();
    }
    asio::posix::stream_descriptor descriptor;
    std::uint64_t generation;
    bool want_read = false;
    bool want_write = false;
    bool read_waiting = false;
    bool write_waiting = false;
  };

  enum class Readiness : std::uint8_t { readable, writable };

  // Cancellation slot handler: runs on whichever thread emits the signal.
  struct AbandonOnCancel {
    AbandonOnCancel(const std::shared_ptr<Engine>& engine_, WaiterId id_)
        : engine(engine_), id(id_) {}
    void operator()(asio::cancellation_type type) const {
      constexpr auto handled = asio::cancellation_type::terminal |
                               asio::cancellation_type::partial | asio::cancellation_type::total;
      if ((type & handled) == asio::cancellation_type::none) return;
      if (auto alive = engine.lock()) {
        asio::post(alive->strand_, [alive, waiter = id] { alive->abandon(waiter); });
      }
    }
    std::weak_ptr<Engine> engine;
    WaiterId id;
  };

  void start(WaiterId id, const std::string& host, Waiter waiter) {
    if (stopped_) {
      deliver(std::move(waiter), failure(DnsOutcome::error));
      return;
    }
    std::string key = host_key(host);
    waiters_.emplace(id, std::move(waiter));
    auto [lookup, first] = lookups_.try_emplace(key);
    lookup->second.waiters.push_back(id);
    if (!first) return;  // the query on the wire answers this waiter too

    ares_addrinfo_hints hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_flags = ARES_AI_NOSORT;  // we order the addresses; sorting would open sockets
    auto* context = new QueryContext{this, std::move(key)};
    // May call on_addrinfo() before returning (numeric hosts, immediate failures).
    ares_getaddrinfo(channel_, host.c_str(), nullptr, &hints, &Engine::on_addrinfo, context);
    arm_timer();
  }

  static void on_addrinfo(void* argument, int status, int /*timeouts*/, ares_addrinfo* info) {
    const std::unique_ptr<QueryContext> context(static_cast<QueryContext*>(argument));
    const std::unique_ptr<ares_addrinfo, AddrinfoDeleter> owned(info);
    context->engine->finish(context->key, to_result(status, info));
  }

  // The lookup for `key` is over: answer everyone waiting for it.
  void finish(const std::string& key, const ResolveResult& result) {
    auto lookup = lookups_.extract(key);
    if (lookup.empty()) return;
    for (const WaiterId id : lookup.mapped().waiters) {
      auto waiter = waiters_.extract(id);
      if (!waiter.empty()) deliver(std::move(waiter.mapped()), result);
    }
  }

  // The waiting coroutine was cancelled: answer it now; the query itself goes on for the others
  // (c-ares 1.18 cannot cancel a single query).
  void abandon(WaiterId id) {
    auto waiter = waiters_.extract(id);
    if (!waiter.empty()) deliver(std::move(waiter.mapped()), failure(DnsOutcome::error));
  }

  // Posts the result to the waiter's executor (never runs it inline: we may be inside c-ares).
  void deliver(Waiter waiter, ResolveResult result) {
    if (destroying_) return;  // the execution context is going away: drop, do not resume
    const asio::any_io_executor caller = std::move(waiter.caller);
    asio::post(caller, [handler = std::move(waiter.handler), result = std::move(result)]() mutable {
      handler.get_cancellation_slot().clear();
      std::move(handler)(std::move(result));
    });
  }

  void stop_on_strand() {
    if (stopped_) return;
    stopped_ = true;
    // Completes every pending lookup with ARES_EDESTRUCTION and closes the sockets (which removes
    // their watches through on_socket_state).
    if (channel_ != nullptr) ares_destroy(channel_);
    channel_ = nullptr;
    watches_.clear();
    for (auto& [id, waiter] : waiters_) deliver(std::move(waiter), failure(DnsOutcome::error));
    waiters_.clear();
    lookups_.clear();
    ++timer_generation_;
    timer_.cancel();
  }

  static void on_socket_state(void* data, ares_socket_t fd, int readable, int writable) {
    static_cast<Engine*>(data)->watch_socket(fd, readable != 0, writable != 0);
  }

  void watch_socket(ares_socket_t fd, bool want_read, bool want_write) {
    if (!want_read && !want_write) {
      watches_.erase(fd);  // c-ares closes the fd right after this
      return;
    }
    auto found = watches_.find(fd);
    if (found == watches_.end()) {
      auto watch = std::make_unique<SocketWatch>(strand_, ++watch_generation_);
      boost::system::error_code error;
      watch->descriptor.assign(fd, error);
      // Unwatchable socket (should not happen): its queries end through the timeout timer.
      if (error) return;
      found = watches_.emplace(fd, std::move(watch)).first;
    }
    found->second->want_read = want_read;
    found->second->want_write = want_write;
    if (!destroying_) start_waits(fd, *found->second);
  }

  void start_waits(ares_socket_t fd, SocketWatch& watch) {
    if (watch.want_read && !watch.read_waiting) {
      watch.read_waiting = true;
      watch.descriptor.async_wait(asio::posix::stream_descriptor::wait_read,
                                  [self = shared_from_this(), fd,
                                   generation = watch.generation](boost::system::error_code error) {
                                    self->on_socket_ready(fd, generation, Readiness::readable,
                                                          error);
                                  });
    }
    if (watch.want_write && !watch.write_waiting) {
      watch.write_waiting = true;
      watch.descriptor.async_wait(asio::posix::stream_descriptor::wait_write,
                                  [self = shared_from_this(), fd,
                                   generation = watch.generation](boost::system::error_code error) {
                                    self->on_socket_ready(fd, generation, Readiness::writable,
                                                          error);
                                  });
    }
  }

  void on_socket_ready(ares_socket_t fd, std::uint64_t generation, Readiness readiness,
                       boost::system::error_code error) {
    const auto found = watches_.find(fd);
    if (found == watches_.end() || found->second->generation != generation) return;  // closed
    SocketWatch& watch = *found->second;
    (readiness == Readiness::readable ? watch.read_waiting : watch.write_waiting) = false;
    if (error == asio::error::operation_aborted || channel_ == nullptr) return;

    if (readiness == Readiness::readable) {
      ares_process_fd(channel_, fd, ARES_SOCKET_BAD);
    } else {
      ares_process_fd(channel_, ARES_SOCKET_BAD, fd);
    }
    // c-ares may have closed this socket, or closed it and opened another with the same fd.
    if (const auto still = watches_.find(fd); still != watches_.end())
      start_waits(fd, *still->second);
    arm_timer();
  }

  // Makes the timer fire no later than c-ares' next timeout. A timer firing early is harmless.
  void arm_timer() {
    if (channel_ == nullptr || destroying_) return;
    timeval storage{};
    const timeval* next = ares_timeout(channel_, nullptr, &storage);
    if (next == nullptr) return;  // no query pending
    const auto deadline = Clock::now() + std::chrono::seconds{next->tv_sec} +
                          std::chrono::microseconds{next->tv_usec};
    if (timer_armed_ && timer_.expiry() <= deadline) return;
    timer_armed_ = true;
    timer_.expires_at(deadline);  // a wait already pending completes as aborted, and stale
    timer_.async_wait([self = shared_from_this(), generation = ++timer_generation_](
                          boost::system::error_code) { self->on_timer(generation); });
  }

  void on_timer(std::uint64_t generation) {
    if (generation != timer_generation_) return;  // superseded by a later arm_timer()
    timer_armed_ = false;
    if (channel_ == nullptr) return;
    ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts and retries
    arm_timer();
  }

  asio::strand<asio::any_io_executor> strand_;
  asio::steady_timer timer_;            // follows ares_timeout()
  std::uint64_t timer_generation_ = 0;  // the current wait; older completions ignored
  bool timer_armed_ = false;            // a current wait is pending
  std::unordered_map<std::string, Lookup> lookups_;  // by host key, one per query on the wire
  std::unordered_map<WaiterId, Waiter> waiters_;     // not yet answered
  std::unordered_map<ares_socket_t, std::unique_ptr<SocketWatch>> watches_;  // by fd
  std::uint64_t watch_generation_ = 0;
  std::atomic<WaiterId> next_waiter_id_{0};  // the only member touched off the strand
  bool stopped_ = false;                     // shutdown() ran: answer everything with error
  bool destroying_ = false;                  // in ~Engine(): deliver nothing
  ares_channel channel_ = nullptr;           // null once stopped
};

Resolver::Resolver(asio::any_io_executor executor, ResolverOptions options)
    : engine_(std::make_shared<Engine>(std::move(executor), options)) {}

Resolver::~Resolver() {
  shutdown();
}

void Resolver::shutdown() {
  engine_->stop();
}

asio::awaitable<ResolveResult> Resolver::resolve(std::string host) {
  // The initiation copies engine_ into the work it posts; the suspended coroutine holds no
  // reference to the engine, so destroying a pending waiter never keeps the engine alive.
  co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(ResolveResult)>(
      [this](auto handler, std::string name) { Engine::submit(engine_, std::move(name), std::move(handler)); },
      asio::use_awaitable, std::move(host));
}

std::vector<asio::ip::udp::endpoint> dns_server_endpoints(const std::vector<std::string>& entries) {
  std::vector<asio::ip::udp::endpoint> servers;
  for (const auto& entry : entries) {
    const auto server = config_table::parse_dns_server(entry);
    if (!server) {
      throw std::invalid_argument("invalid DNS server '" + entry + "': expected " +
                                  std::string(config_table::dns_server_grammar));
    }
    servers.emplace_back(server->address, server->port);
  }
  return servers;
}

std::optional<std::string> Resolver::validate(const ResolverOptions& options) {
  for (const auto& server : options.servers) {
    if (server.port() == 0 || server.address().is_unspecified()) {
      return "invalid DNS server '" + server.address().to_string() + "' port " +
             std::to_string(server.port()) + ": expected a specific address and a port from 1 to 65535";
    }
  }
  if (options.timeout <= std::chrono::milliseconds::zero() ||
      options.timeout.count() > std::numeric_limits<int>::max()) {
    return "DNS timeout must be positive, got " + std::to_string(options.timeout.count()) + " ms";
  }
  if (options.tries < 1) {
    return "DNS tries must be at least 1, got " + std::to_string(options.tries);
  }
  return std::nullopt;
}

}  // namespace director::net

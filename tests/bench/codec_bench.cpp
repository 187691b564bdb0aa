// Micro-benchmark of the agent's per-request work, without sockets: nanoseconds per NOTIFY
// decoded and per ACK encoded, and heap allocations per decision (a cached "alive" user, from
// NOTIFY bytes to ACK bytes). Allocations are counted by replacing the global operator new in
// this binary only. Prints one "name value unit" line per figure; --quick runs few iterations
// (the smoke test), the figures are then noisy but the lines are the same.
// GCC flags every inlined delete as "mismatched" once new is replaced by malloc: it is not.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include "decision/director.hpp"
#include "metrics/metrics.hpp"
#include "route/route_handler.hpp"
#include "spop/codec.hpp"
#include "spop/session.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <vector>

namespace {
std::atomic<std::uint64_t> g_allocations{0};
}  // namespace

// Counting replacements of the global allocation functions (the sized and aligned deletes fall
// back to these). Only this binary is affected.
void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return operator new(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept { return operator new(size, tag); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace {

using namespace director;
using Clock = std::chrono::steady_clock;

// Keeps the optimizer from discarding a result.
template <class T>
void keep(const T& value) {
  asm volatile("" : : "g"(&value) : "memory");
}

spop::Bytes hello_frame() {
  spop::Bytes out;
  const std::vector<spop::Argument> items{{"supported-versions", std::string("2.0")},
                                          {"max-frame-size", std::uint32_t{16380}},
                                          {"capabilities", std::string("pipelining")},
                                          {"engine-id", std::string("bench")}};
  spop::append_haproxy_hello(out, items);
  return out;
}

spop::Bytes notify_frame(std::uint64_t stream_id, std::string_view user) {
  spop::Bytes out;
  const std::vector<spop::Message> messages{{"route", {{"user", std::string(user)}}}};
  spop::append_notify(out, stream_id, 1, messages);
  return out;
}

struct Timing {
  double ns_per_op;
  std::uint64_t ops;
};

template <class Fn>
Timing time_it(std::uint64_t iterations, Fn&& fn) {
  for (std::uint64_t i = 0; i < iterations / 10 + 1; ++i) fn(i);  // warm up
  const auto start = Clock::now();
  for (std::uint64_t i = 0; i < iterations; ++i) fn(i);
  const auto elapsed = std::chrono::duration<double, std::nano>(Clock::now() - start).count();
  return {elapsed / static_cast<double>(iterations), iterations};
}

template <class Fn>
double allocations_per_op(std::uint64_t iterations, Fn&& fn) {
  for (std::uint64_t i = 0; i < 100; ++i) fn(i);  // warm up: caches, vectors at capacity
  const auto before = g_allocations.load();
  for (std::uint64_t i = 0; i < iterations; ++i) fn(i);
  return static_cast<double>(g_allocations.load() - before) / static_cast<double>(iterations);
}

void print(const char* name, double value, const char* unit) { std::printf("%-36s %10.1f %s\n", name, value, unit); }

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const std::uint64_t n = quick ? 20'000 : 2'000'000;

  constexpr std::string_view user = "alice";
  const auto notify = notify_frame(42, user);

  // 1. Decoding one NOTIFY: frame split, header, messages (what Session::feed does per frame).
  const auto decode = time_it(n, [&](std::uint64_t) {
    const auto split = spop::split_frame(notify, 16380);
    const auto frame = spop::decode_frame(split->body);
    auto messages = spop::decode_messages(frame->payload);
    keep(messages);
  });
  print("decode NOTIFY (codec)", decode.ns_per_op, "ns/frame");

  // 2. The session on a buffer of 64 pipelined NOTIFYs, as the connection feeds it.
  spop::Session session;
  {
    const auto hello = hello_frame();
    auto result = session.feed(hello);
    if (session.state() != spop::SessionState::processing) {
      std::fprintf(stderr, "codec_bench: HELLO refused\n");
      return 1;
    }
  }
  spop::Bytes batch;
  for (int i = 0; i < 64; ++i) {
    const auto frame = notify_frame(static_cast<std::uint64_t>(i), user);
    batch.insert(batch.end(), frame.begin(), frame.end());
  }
  const auto feed = time_it(n / 64 + 1, [&](std::uint64_t) {
    auto result = session.feed(batch);
    keep(result);
  });
  print("Session::feed, 64 NOTIFYs a call", feed.ns_per_op / 64, "ns/frame");

  // 3. Encoding the ACK of an alive user: variables, then the frame.
  decision::Answer answer;
  answer.alive = true;
  answer.reason = decision::Reason::ok;
  answer.label = std::string(user);
  answer.host = "vscode-" + std::string(user);
  answer.address = boost::asio::ip::make_address("127.0.3.7");
  answer.port = 8080;
  const auto encode = time_it(n, [&](std::uint64_t i) {
    const auto actions = route::to_actions(answer);
    auto ack = session.encode_ack(i, 1, actions);
    keep(ack);
  });
  print("encode ACK (to_actions + encode_ack)", encode.ns_per_op, "ns/frame");

  // 4. One whole decision for a cached alive user: NOTIFY bytes in, ACK bytes out, with the
  //    decision core and the metrics event, as connection.cpp does it (minus the socket).
  decision::Settings settings;
  decision::Director director(settings);
  const auto now = decision::Clock::now();
  {
    auto first = director.decide(user, 1, now);
    decision::CheckResult reached{decision::DnsOutcome::ok, *answer.address, decision::ProbeOutcome::ok,
                                  std::chrono::milliseconds(1)};
    director.complete(first.start_check->label, reached, now);
  }
  metrics::Metrics metrics("bench", std::chrono::system_clock::now());
  std::uint64_t answered = 0;
  auto decide_one = [&](std::uint64_t) {
    auto result = session.feed(notify);
    for (auto& request_notify : result.notifies) {
      const auto request = route::find_route_request(request_notify);
      auto decided = director.decide(request->username, 1, now);
      const auto actions = route::to_actions(*decided.answer);
      auto ack = session.encode_ack(request_notify.stream_id, request_notify.frame_id, actions);
      metrics.decision_answered(decided.answer->reason, std::chrono::microseconds(1));
      answered += decided.answer->alive ? 1U : 0U;
      keep(ack);
    }
  };
  const auto whole = time_it(n, decide_one);
  print("decision, cached alive (no I/O)", whole.ns_per_op, "ns/decision");
  print("allocations per decision", allocations_per_op(quick ? 1'000 : 100'000, decide_one), "allocs");
  print("allocations per NOTIFY decode",
        allocations_per_op(quick ? 1'000 : 100'000, [&](std::uint64_t) {
          auto result = session.feed(notify);
          keep(result);
        }),
        "allocs");
  print("allocations per ACK encode", allocations_per_op(quick ? 1'000 : 100'000, [&](std::uint64_t i) {
          const auto actions = route::to_actions(answer);
          auto ack = session.encode_ack(i, 1, actions);
          keep(ack);
        }),
        "allocs");
  if (answered == 0) {
    std::fprintf(stderr, "codec_bench: the cached user was never answered alive\n");
    return 1;
  }
  return 0;
}

// SPOP load generator: drives director-agent as HAProxy would, without HAProxy. Opens N
// connections, says HAPROXY-HELLO on each, then keeps `depth` NOTIFY frames (message "route",
// argument "user") in flight per connection, rotating over `users` names, and counts the ACKs.
// Frames are the real wire format (agent/src/spop/codec.hpp builds the HELLO; the NOTIFYs are
// written here by hand, byte for byte the same as HAProxy 2.6's, see tests/data/spop-captures).
//
//   spop_loadgen --agent 127.0.0.1:12345 [--connections 4] [--depth 64] [--users 100]
//                [--prefix bench] [--duration 5] [--warmup 1] [--count N] [--first 0]
//
// --count N sends exactly N NOTIFYs (users first..first+N-1 in turn) and waits for their ACKs:
// a way to fill the agent's cache. Prints one JSON line: acks, seconds, acks_per_s, and the
// ACK reasons seen (ok, no-such-host, ...). Exit status 1 when the agent refused or closed.
#include "spop/codec.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using director::spop::Bytes;

struct Options {
  std::string host = "127.0.0.1";
  int port = 12345;
  int connections = 4;
  int depth = 64;
  std::uint64_t users = 100;
  std::uint64_t first = 0;
  std::string prefix = "bench";
  double duration = 5;
  double warmup = 1;
  std::uint64_t count = 0;  // 0: run for warmup + duration
};

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "spop_loadgen: %s\n", message.c_str());
  std::exit(1);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) die("missing value after " + std::string(arg));
    const std::string value = argv[++i];
    if (arg == "--agent") {
      const auto colon = value.rfind(':');
      if (colon == std::string::npos) die("--agent wants host:port");
      o.host = value.substr(0, colon);
      o.port = std::atoi(value.c_str() + colon + 1);
    } else if (arg == "--connections") {
      o.connections = std::atoi(value.c_str());
    } else if (arg == "--depth") {
      o.depth = std::atoi(value.c_str());
    } else if (arg == "--users") {
      o.users = std::strtoull(value.c_str(), nullptr, 10);
    } else if (arg == "--first") {
      o.first = std::strtoull(value.c_str(), nullptr, 10);
    } else if (arg == "--prefix") {
      o.prefix = value;
    } else if (arg == "--duration") {
      o.duration = std::atof(value.c_str());
    } else if (arg == "--warmup") {
      o.warmup = std::atof(value.c_str());
    } else if (arg == "--count") {
      o.count = std::strtoull(value.c_str(), nullptr, 10);
    } else {
      die("unknown option " + std::string(arg));
    }
  }
  if (o.connections < 1 || o.depth < 1 || o.users < 1) die("connections, depth and users must be >= 1");
  return o;
}

void put_varint(Bytes& out, std::uint64_t value) { director::spop::append_varint(out, value); }

void put_string(Bytes& out, std::string_view text) {
  put_varint(out, text.size());
  out.insert(out.end(), text.begin(), text.end());
}

// NOTIFY: <len:4> 03 <flags:00000001> <stream-id> <frame-id> "route" <nb-args:1> "user" STRING.
void append_notify(Bytes& out, std::uint64_t stream_id, std::string_view user) {
  const auto start = out.size();
  out.insert(out.end(), {0, 0, 0, 0, 3, 0, 0, 0, 1});
  put_varint(out, stream_id);
  put_varint(out, 1);
  put_string(out, "route");
  out.push_back(1);
  put_string(out, "user");
  out.push_back(8);
  put_string(out, user);
  const auto length = static_cast<std::uint32_t>(out.size() - start - 4);
  out[start] = static_cast<std::uint8_t>(length >> 24);
  out[start + 1] = static_cast<std::uint8_t>(length >> 16);
  out[start + 2] = static_cast<std::uint8_t>(length >> 8);
  out[start + 3] = static_cast<std::uint8_t>(length);
}

void write_all(int fd, const std::uint8_t* data, std::size_t size) {
  while (size > 0) {
    const auto n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        pollfd p{fd, POLLOUT, 0};
        ::poll(&p, 1, 1000);
        continue;
      }
      die(std::string("write: ") + std::strerror(errno));
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

struct Connection {
  int fd = -1;
  int inflight = 0;
  std::uint64_t next_stream = 0;
  Bytes in;
  std::size_t filled = 0;
};

// The value of the "reason" set-var in an ACK payload, for the summary (empty if absent).
std::string reason_of(std::span<const std::uint8_t> payload) {
  const auto actions = director::spop::decode_actions(payload);
  if (!actions) return "undecodable";
  for (const auto& action : *actions) {
    if (const auto* set = std::get_if<director::spop::SetVar>(&action); set && set->name == "reason") {
      if (const auto* text = std::get_if<std::string>(&set->value)) return *text;
    }
  }
  return "";
}

int connect_agent(const Options& o) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(o.port));
  if (::inet_pton(AF_INET, o.host.c_str(), &addr.sin_addr) != 1) die("bad agent address " + o.host);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    die("connect " + o.host + ":" + std::to_string(o.port) + ": " + std::strerror(errno));
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  Bytes hello;
  const std::vector<director::spop::Argument> items{{"supported-versions", std::string("2.0")},
                                                    {"max-frame-size", std::uint32_t{16380}},
                                                    {"capabilities", std::string("pipelining")},
                                                    {"engine-id", std::string("spop-loadgen")}};
  director::spop::append_haproxy_hello(hello, items);
  write_all(fd, hello.data(), hello.size());
  // AGENT-HELLO: read one whole frame.
  Bytes reply(4);
  std::size_t got = 0;
  auto read_exact = [&](std::size_t want) {
    reply.resize(want);
    while (got < want) {
      const auto n = ::read(fd, reply.data() + got, want - got);
      if (n <= 0) die("the agent closed during HELLO");
      got += static_cast<std::size_t>(n);
    }
  };
  read_exact(4);
  const std::uint32_t length = (std::uint32_t{reply[0]} << 24) | (std::uint32_t{reply[1]} << 16) |
                               (std::uint32_t{reply[2]} << 8) | reply[3];
  read_exact(4 + length);
  if (length == 0 || reply[4] != 101) die("no AGENT-HELLO (frame type " + std::to_string(reply[4]) + ")");
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  std::vector<std::string> names;
  const auto name_count = o.count ? std::min<std::uint64_t>(o.count, o.users) : o.users;
  names.reserve(name_count);
  for (std::uint64_t i = 0; i < name_count; ++i) names.push_back(o.prefix + std::to_string(o.first + i));

  std::vector<Connection> connections(static_cast<std::size_t>(o.connections));
  std::vector<pollfd> fds;
  for (auto& c : connections) {
    c.fd = connect_agent(o);
    c.in.resize(64 * 1024);
    fds.push_back({c.fd, POLLIN, 0});
  }

  const auto started = Clock::now();
  const auto measure_from = started + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.warmup));
  const auto stop_at = measure_from + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration));
  std::uint64_t sent = 0, acked = 0, acked_at_measure = 0;
  bool measuring = o.count != 0;
  auto measure_start = started;
  std::map<std::string, std::uint64_t> reasons;
  std::uint64_t next_user = 0;
  Bytes out;

  auto fill = [&](Connection& c) {
    out.clear();
    while (c.inflight < o.depth && (o.count == 0 || sent < o.count)) {
      append_notify(out, c.next_stream++, names[next_user]);
      next_user = next_user + 1 == names.size() ? 0 : next_user + 1;
      ++c.inflight;
      ++sent;
    }
    if (!out.empty()) write_all(c.fd, out.data(), out.size());
  };
  for (auto& c : connections) fill(c);

  while (true) {
    const auto now = Clock::now();
    if (o.count == 0) {
      if (!measuring && now >= measure_from) {
        measuring = true;
        measure_start = now;
        acked_at_measure = acked;
      }
      if (now >= stop_at) break;
    } else if (acked >= o.count) {
      break;
    }
    const int ready = ::poll(fds.data(), fds.size(), 1000);
    if (ready < 0 && errno != EINTR) die("poll");
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      auto& c = connections[i];
      const auto n = ::read(c.fd, c.in.data() + c.filled, c.in.size() - c.filled);
      if (n <= 0) die("the agent closed a connection");
      c.filled += static_cast<std::size_t>(n);
      std::size_t pos = 0;
      while (c.filled - pos >= 4) {
        const std::uint8_t* p = c.in.data() + pos;
        const std::uint32_t length = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
                                     (std::uint32_t{p[2]} << 8) | p[3];
        if (c.filled - pos < 4 + std::size_t{length}) break;
        if (length == 0 || p[4] != 103) die("unexpected frame type " + std::to_string(length ? p[4] : 0));
        // Sample the reasons (every 1024th ACK, and every ACK with --count).
        if (o.count != 0 || (acked & 1023) == 0) {
          const auto frame = director::spop::decode_frame(std::span<const std::uint8_t>(p + 4, length));
          if (frame) ++reasons[reason_of(frame->payload)];
        }
        --c.inflight;
        ++acked;
        pos += 4 + length;
      }
      std::memmove(c.in.data(), c.in.data() + pos, c.filled - pos);
      c.filled -= pos;
      fill(c);
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - measure_start).count();
  const auto counted = acked - acked_at_measure;
  std::printf("{\"acks\": %llu, \"seconds\": %.3f, \"acks_per_s\": %.0f, \"connections\": %d, \"depth\": %d, "
              "\"users\": %llu, \"reasons\": {",
              static_cast<unsigned long long>(counted), seconds, static_cast<double>(counted) / seconds,
              o.connections, o.depth, static_cast<unsigned long long>(names.size()));
  const char* sep = "";
  for (const auto& [reason, n] : reasons) {
    std::printf("%s\"%s\": %llu", sep, reason.c_str(), static_cast<unsigned long long>(n));
    sep = ", ";
  }
  std::printf("}}\n");
  for (auto& c : connections) ::close(c.fd);
  return 0;
}

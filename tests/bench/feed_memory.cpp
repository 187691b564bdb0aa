// The agent's memory in event mode, without the network: N running labels (64-hex container ids,
// as the runtime gives them) go as one snapshot line through the real feed::FeedDecoder (in 64 KiB
// pieces, as a socket delivers them), feed::FeedState (EventFeed's per-feed state) and the
// decision core, then every user is cached by a request and an alive check, as the bench's
// warm-up does. Prints VmRSS and VmHWM (/proc/self/status) after each step.
//
//   feed_memory [users=100000] [mode=events|ttl]
//
// "ttl" skips the feed (TTL mode: the same users cached, no feed), the figure to compare with.
#include "decision/director.hpp"
#include "feed/feed_decoder.hpp"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <string_view>
#include <variant>

namespace {

using namespace director;

std::string status_field(const std::string& name) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with(name + ":")) {
      const auto value = line.find_first_not_of(" \t", name.size() + 1);
      return line.substr(value);
    }
  }
  return "?";
}

void report(const char* step) {
  std::printf("%-34s VmRSS %-12s VmHWM %s\n", step, status_field("VmRSS").c_str(), status_field("VmHWM").c_str());
  std::fflush(stdout);
}

std::string container_id(std::mt19937_64& random) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string id(64, '0');
  for (auto& digit : id) digit = hex[random() % 16];
  return id;
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t users = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 100'000;
  const bool events = argc <= 2 || std::string_view(argv[2]) != "ttl";
  std::printf("%zu users, %s mode\n", users, events ? "events" : "ttl");
  report("start");

  decision::Director director{decision::Settings{}};
  feed::FeedState feed_state;
  const auto now = decision::Clock::now();
  if (events) {
    std::mt19937_64 random(11);
    std::string line = "{\"type\":\"snapshot\",\"containers\":[";
    for (std::size_t user = 0; user < users; ++user) {
      if (user != 0) line += ',';
      line += "{\"label\":\"bench" + std::to_string(user) + "\",\"id\":\"" + container_id(random) +
              "\",\"state\":\"running\",\"health\":\"none\"}";
    }
    line += "]}\n";
    report("snapshot line built");
    {
      feed::FeedDecoder decoder;
      std::string_view rest = line;
      while (!rest.empty()) {
        const auto piece = rest.substr(0, 64 * 1024);
        rest.remove_prefix(piece.size());
        auto messages = decoder.decode(piece);
        if (!messages) {
          std::fprintf(stderr, "decode: %s\n", messages.error().message.c_str());
          return 1;
        }
        for (auto& message : *messages) {
          auto containers = feed_state.apply(std::get<feed::Snapshot>(message));
          director.feed_snapshot(0, std::move(containers), now);
        }
      }
    }
    line.clear();
    line.shrink_to_fit();
    report("snapshot applied");
  }

  decision::CheckResult alive;
  alive.dns = decision::DnsOutcome::ok;
  alive.address = decision::Address(boost::asio::ip::make_address_v4("127.0.0.1"));
  alive.probe = decision::ProbeOutcome::ok;
  for (std::size_t user = 0; user < users; ++user) {
    const std::string name = "bench" + std::to_string(user);
    const auto decided = director.decide(name, user, now);
    if (decided.start_check) director.complete(decided.start_check->label, alive, now);
  }
  report("users cached");
  std::printf("cached %zu, covered %zu, feed labels %zu\n", director.size(), director.covered_labels(),
              feed_state.labels());
  return 0;
}

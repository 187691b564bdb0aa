// libFuzzer target: the agent's event feed decoder, per-feed state and URL parser
// (agent/src/feed: pure).
//
// Input: byte 0 is a control byte: bits 0-2 pick the piece size the bytes are fed in (1, 2, 3,
// 5, 7, 16, 64, 4096), bit 3 a small line limit (64 bytes) instead of the default; bytes 1..
// are the feed. Checks:
// - decoding in pieces gives exactly what decoding the whole gives: the same messages, or the
//   same error (and an error stays: the next call returns it again);
// - every message has the decoder's guarantees: labels non-empty, unhealthy only on health
//   events;
// - FeedState: a snapshot comes back with each label once, and as many labels known; after
//   each event the label's state is what the change says (nullopt: not known) and differs
//   from before, or there is no change and the state is as before; a health event never makes
//   a label running that was not;
// - parse_feed_url of the text: an accepted URL prints as a URL that parses to itself.
#include "fuzz_check.hpp"

#include "feed/feed_decoder.hpp"
#include "feed/feed_url.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace feed = director::feed;

namespace {

using Decoded = boost::system::result<std::vector<feed::FeedMessage>, feed::FeedError>;

Decoded decode_in_pieces(std::string_view bytes, std::size_t piece, std::size_t max_line) {
  feed::FeedDecoder decoder(max_line);
  std::vector<feed::FeedMessage> messages;
  while (!bytes.empty()) {
    auto some = decoder.decode(bytes.substr(0, piece));
    bytes.remove_prefix(std::min(piece, bytes.size()));
    if (!some) {
      const auto again = decoder.decode("{\"type\":\"heartbeat\"}\n");
      FUZZ_CHECK(!again && again.error().message == some.error().message);
      return some.error();
    }
    messages.insert(messages.end(), some->begin(), some->end());
  }
  return messages;
}

void check_state(const std::vector<feed::FeedMessage>& messages) {
  feed::FeedState state;
  for (const auto& message : messages) {
    if (const auto* snapshot = std::get_if<feed::Snapshot>(&message)) {
      const auto unique = state.apply(*snapshot);
      std::set<std::string> labels;
      for (const auto& [label, container] : unique) {
        FUZZ_CHECK(labels.insert(label).second);
        FUZZ_CHECK(state.find(label) != nullptr && *state.find(label) == container);
      }
      FUZZ_CHECK(state.labels() == unique.size());
      for (const auto& [label, container] : snapshot->containers) FUZZ_CHECK(labels.count(label) == 1);
    } else if (const auto* event = std::get_if<feed::Event>(&message)) {
      FUZZ_CHECK(!event->label.empty());
      FUZZ_CHECK(!event->unhealthy || event->kind == feed::EventKind::health);
      std::optional<feed::ContainerState> before;
      if (const auto* known = state.find(event->label)) before = *known;
      const bool was_running = before && before->running;
      const auto change = state.apply(*event);
      const auto* after = state.find(event->label);
      if (!change) {  // nothing changed
        FUZZ_CHECK(before.has_value() == (after != nullptr));
        FUZZ_CHECK(!before || *before == *after);
        continue;
      }
      FUZZ_CHECK(change->label == event->label);
      FUZZ_CHECK(change->state != before);
      if (change->state) {
        FUZZ_CHECK(after != nullptr && *after == *change->state);
        if (event->kind == feed::EventKind::health) FUZZ_CHECK(was_running || !after->running);
      } else {
        FUZZ_CHECK(event->kind == feed::EventKind::destroyed && after == nullptr);
      }
    }
  }
}

void check_url(std::string_view text) {
  const auto url = feed::parse_feed_url(text);
  if (!url) {
    FUZZ_CHECK(!url.error().empty());
    return;
  }
  FUZZ_CHECK(url->port != 0 && !url->host.empty() && !url->path.empty() && url->path.front() == '/');
  const auto again = feed::parse_feed_url(feed::to_string(*url));
  FUZZ_CHECK(again && *again == *url);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  constexpr std::array<std::size_t, 8> pieces{1, 2, 3, 5, 7, 16, 64, 4096};
  const std::size_t piece = pieces[data[0] & 7];
  const std::size_t max_line = (data[0] & 8) != 0 ? 64 : feed::FeedDecoder::default_max_line;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);

  feed::FeedDecoder whole_decoder(max_line);
  const auto whole = whole_decoder.decode(bytes);
  const auto pieced = decode_in_pieces(bytes, piece, max_line);
  FUZZ_CHECK(whole.has_value() == pieced.has_value());
  if (!whole) {
    FUZZ_CHECK(!whole.error().message.empty());
    FUZZ_CHECK(whole.error().message == pieced.error().message);
  } else {
    FUZZ_CHECK(*whole == *pieced);
    check_state(*whole);
  }
  check_url(bytes);
  return 0;
}

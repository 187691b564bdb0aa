#include "feed/feed_decoder.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <vector>

using namespace director::feed;

namespace {

// The lines of docs/spawner.md's example, as the spawner writes them.
const std::string example_feed =
    "{\"type\":\"snapshot\",\"containers\":[{\"label\":\"alice\",\"id\":\"4f1c\",\"state\":\"running\","
    "\"health\":\"healthy\"},{\"label\":\"carol\",\"id\":\"77aa\",\"state\":\"exited\",\"health\":\"none\"}]}\n"
    "{\"type\":\"started\",\"label\":\"bob\",\"id\":\"9a2e\"}\n"
    "{\"type\":\"health\",\"label\":\"bob\",\"id\":\"9a2e\",\"health\":\"unhealthy\"}\n"
    "{\"type\":\"died\",\"label\":\"alice\",\"id\":\"4f1c\",\"username\":\"alice\",\"exit_code\":137}\n"
    "{\"type\":\"heartbeat\"}\n";

std::vector<FeedMessage> decode_all(FeedDecoder& decoder, std::string_view bytes) {
  auto decoded = decoder.decode(bytes);
  REQUIRE(decoded.has_value());
  return std::move(*decoded);
}

// Checks the five messages of example_feed.
void check_example(const std::vector<FeedMessage>& messages) {
  REQUIRE(messages.size() == 5);
  const auto& snapshot = std::get<Snapshot>(messages[0]);
  REQUIRE(snapshot.containers.size() == 2);
  CHECK(snapshot.containers[0].first == "alice");
  CHECK(snapshot.containers[0].second == ContainerState{"4f1c", true, false});
  CHECK(snapshot.containers[1].first == "carol");
  CHECK(snapshot.containers[1].second == ContainerState{"77aa", false, false});
  const auto& started = std::get<Event>(messages[1]);
  CHECK(started.kind == EventKind::started);
  CHECK(started.label == "bob");
  CHECK(started.id == "9a2e");
  CHECK_FALSE(started.unhealthy);
  const auto& health = std::get<Event>(messages[2]);
  CHECK(health.kind == EventKind::health);
  CHECK(health.unhealthy);
  const auto& died = std::get<Event>(messages[3]);
  CHECK(died.kind == EventKind::died);
  CHECK(died.label == "alice");
  CHECK(died.username == "alice");
  CHECK(started.username.empty());
  CHECK(std::holds_alternative<Heartbeat>(messages[4]));
}

std::string decode_error(std::string_view bytes, std::size_t max_line = FeedDecoder::default_max_line) {
  FeedDecoder decoder(max_line);
  auto decoded = decoder.decode(bytes);
  REQUIRE_FALSE(decoded.has_value());
  return decoded.error().message;
}

}  // namespace

TEST_CASE("the decoder gives the same messages however the bytes are split", "[feed]") {
  for (std::size_t first = 0; first <= example_feed.size(); ++first) {
    for (std::size_t second = first; second <= example_feed.size(); second += 7) {
      FeedDecoder decoder;
      std::vector<FeedMessage> messages;
      for (const auto& piece : {std::string_view(example_feed).substr(0, first),
                                std::string_view(example_feed).substr(first, second - first),
                                std::string_view(example_feed).substr(second)}) {
        auto some = decode_all(decoder, piece);
        messages.insert(messages.end(), some.begin(), some.end());
      }
      INFO("split at " << first << " and " << second);
      check_example(messages);
      CHECK(decoder.lines() == 5);
    }
  }
}

TEST_CASE("the decoder takes one byte at a time", "[feed]") {
  FeedDecoder decoder;
  std::vector<FeedMessage> messages;
  for (const char c : example_feed) {
    auto some = decode_all(decoder, std::string_view(&c, 1));
    messages.insert(messages.end(), some.begin(), some.end());
  }
  check_example(messages);
}

TEST_CASE("a partial line waits for its newline", "[feed]") {
  FeedDecoder decoder;
  CHECK(decode_all(decoder, "{\"type\":\"heartbeat\"}").empty());
  CHECK(decoder.lines() == 0);
  CHECK(decode_all(decoder, "\n").size() == 1);
}

TEST_CASE("empty lines, CRLF and unknown types are skipped but counted as lines", "[feed]") {
  FeedDecoder decoder;
  const auto messages =
      decode_all(decoder, "\n\r\n  \n{\"type\":\"heartbeat\"}\r\n{\"type\":\"paused\",\"label\":\"x\"}\n"
                          "{\"type\":\"future\",\"containers\":7}\n");
  REQUIRE(messages.size() == 1);
  CHECK(std::holds_alternative<Heartbeat>(messages[0]));
  CHECK(decoder.lines() == 6);
}

TEST_CASE("a line longer than the limit is an error as soon as the limit is passed", "[feed]") {
  const std::string heartbeat = "{\"type\":\"heartbeat\"}";  // 20 bytes
  SECTION("exactly the limit is fine") {
    FeedDecoder decoder(heartbeat.size());
    CHECK(decode_all(decoder, heartbeat + "\n").size() == 1);
  }
  SECTION("one more is not, even before its newline") {
    FeedDecoder decoder(heartbeat.size() - 1);
    CHECK(decode_all(decoder, heartbeat.substr(0, heartbeat.size() - 1)).empty());
    auto decoded = decoder.decode("}");
    REQUIRE_FALSE(decoded.has_value());
    CHECK(decoded.error().message == "line 1 is longer than 19 bytes");
  }
  SECTION("a later line counts on its own") {
    FeedDecoder decoder(heartbeat.size());
    CHECK(decode_all(decoder, heartbeat + "\n" + heartbeat + "\n" + heartbeat).size() == 2);
    CHECK(decode_all(decoder, "\n").size() == 1);
    CHECK(decode_error(std::string(10, ' ') + "\n" + std::string(21, ' '), 20) == "line 2 is longer than 20 bytes");
  }
}

TEST_CASE("an error is final", "[feed]") {
  FeedDecoder decoder;
  auto first = decoder.decode("{\"type\":\"heartbeat\"}\nnot json\n{\"type\":\"heartbeat\"}\n");
  REQUIRE_FALSE(first.has_value());
  CHECK(first.error().message.starts_with("line 2: not JSON"));
  auto again = decoder.decode("{\"type\":\"heartbeat\"}\n");
  REQUIRE_FALSE(again.has_value());
  CHECK(again.error().message == first.error().message);
}

TEST_CASE("lines of the wrong shape are errors that say what is wrong", "[feed]") {
  CHECK(decode_error("[1,2]\n") == "line 1: not a JSON object");
  CHECK(decode_error("\"heartbeat\"\n") == "line 1: not a JSON object");
  CHECK(decode_error("{}\n") == "line 1: no \"type\" (a string)");
  CHECK(decode_error("{\"type\":3}\n") == "line 1: no \"type\" (a string)");
  CHECK(decode_error("{\"type\":\"snapshot\"}\n") == "line 1: a snapshot without a \"containers\" array");
  CHECK(decode_error("{\"type\":\"snapshot\",\"containers\":{}}\n") ==
        "line 1: a snapshot without a \"containers\" array");
  CHECK(decode_error("{\"type\":\"snapshot\",\"containers\":[3]}\n") == "line 1: snapshot container 0 is not an object");
  CHECK(decode_error("{\"type\":\"snapshot\",\"containers\":[{\"label\":\"a\"},{\"id\":\"x\"}]}\n") ==
        "line 1: snapshot container 1 has no label (a non-empty string)");
  CHECK(decode_error("{\"type\":\"snapshot\",\"containers\":[{\"label\":\"\"}]}\n") ==
        "line 1: snapshot container 0 has no label (a non-empty string)");
  CHECK(decode_error("{\"type\":\"snapshot\",\"containers\":[{\"label\":\"a\",\"state\":1}]}\n") ==
        "line 1: snapshot container 0 (a): id, state and health must be strings");
  CHECK(decode_error("{\"type\":\"started\"}\n") == "line 1: a started event without a label (a non-empty string)");
  CHECK(decode_error("{\"type\":\"died\",\"label\":7}\n") == "line 1: a died event without a label (a non-empty string)");
  CHECK(decode_error("{\"type\":\"stopped\",\"label\":\"a\",\"id\":[]}\n") ==
        "line 1: a stopped event for a whose id is not a string");
  CHECK(decode_error("{\"type\":\"health\",\"label\":\"a\",\"health\":false}\n") ==
        "line 1: a health event for a whose health is not a string");
  CHECK(decode_error("{\"type\":\"died\",\"label\":\"a\",\"username\":1}\n") ==
        "line 1: a died event for a whose username is not a string");
  CHECK(decode_error("{\"type\":\"heartbeat\"}\n{\"type\":\"heartbeat\"\n").starts_with("line 2: not JSON"));
  CHECK(decode_error("{\"type\":\"heartbeat\"} {}\n").starts_with("line 1: not JSON"));
}

TEST_CASE("nesting far beyond any feed line is an error, not a crash", "[feed]") {
  const std::string deep = std::string(200'000, '[') + std::string(200'000, ']') + "\n";
  CHECK(decode_error(deep) == "line 1: not a JSON object");
  const std::string open = "{\"type\":\"snapshot\",\"containers\":" + std::string(200'000, '[') + "\n";
  CHECK(decode_error(open).starts_with("line 1: not JSON"));
}

TEST_CASE("absent and null fields mean empty id, not running, not unhealthy", "[feed]") {
  FeedDecoder decoder;
  const auto messages = decode_all(
      decoder,
      "{\"type\":\"snapshot\",\"containers\":[{\"label\":\"a\"},{\"label\":\"b\",\"id\":null,\"state\":null,"
      "\"health\":null},{\"label\":\"c\",\"state\":\"Running\",\"health\":\"UNHEALTHY\"},"
      "{\"label\":\"d\",\"state\":\"running\",\"health\":\"unhealthy\",\"extra\":[1]}]}\n"
      "{\"type\":\"health\",\"label\":\"a\"}\n");
  REQUIRE(messages.size() == 2);
  const auto& containers = std::get<Snapshot>(messages[0]).containers;
  REQUIRE(containers.size() == 4);
  CHECK(containers[0].second == ContainerState{});
  CHECK(containers[1].second == ContainerState{});
  CHECK(containers[2].second == ContainerState{});  // the spawner's tokens are lowercase
  CHECK(containers[3].second == ContainerState{"", true, true});
  CHECK_FALSE(std::get<Event>(messages[1]).unhealthy);
}

TEST_CASE("a snapshot's rows come from its last \"containers\" member, as parsed JSON keeps it", "[feed]") {
  FeedDecoder decoder;
  const auto messages = decode_all(
      decoder,
      "{\"containers\":[{\"label\":\"a\",\"state\":\"running\"}],\"type\":\"snapshot\","
      "\"other\":[{\"label\":\"x\"}],\"containers\":[{\"label\":\"b\",\"id\":\"b1\",\"extra\":{\"containers\":[1]}}]}\n");
  REQUIRE(messages.size() == 1);
  CHECK(std::get<Snapshot>(messages[0]).containers == Containers{{"b", ContainerState{"b1", false, false}}});
  CHECK(decode_error("{\"type\":\"snapshot\",\"containers\":[{\"label\":\"c\"}],\"containers\":{}}\n") ==
        "line 1: a snapshot without a \"containers\" array");
}

TEST_CASE("the state of a feed follows the plan's mapping", "[feed]") {
  FeedState state;
  const auto snapshot = state.apply(Snapshot{{{"alice", {"a1", true, false}}, {"carol", {"c1", false, false}}}});
  CHECK(snapshot.size() == 2);
  CHECK(state.labels() == 2);

  const auto change = [&](EventKind kind, std::string label, std::string id, bool unhealthy = false) {
    return state.apply(Event{kind, std::move(label), std::move(id), unhealthy, {}});
  };
  SECTION("started: running; created, stopped, died: not running") {
    CHECK(change(EventKind::started, "carol", "c1")->state == ContainerState{"c1", true, false});
    CHECK(change(EventKind::stopped, "carol", "c1")->state == ContainerState{"c1", false, false});
    CHECK(change(EventKind::created, "dave", "d1")->state == ContainerState{"d1", false, false});
    CHECK(change(EventKind::died, "alice", "a1")->state == ContainerState{"a1", false, false});
    CHECK(state.labels() == 3);
  }
  SECTION("health keeps the running-ness as known and sets unhealthy") {
    CHECK(change(EventKind::health, "alice", "a1", true)->state == ContainerState{"a1", true, true});
    CHECK(change(EventKind::health, "alice", "a1", false)->state == ContainerState{"a1", true, false});
    CHECK(change(EventKind::health, "carol", "c1", true)->state == ContainerState{"c1", false, true});
    CHECK(change(EventKind::health, "alice", "", true)->state == ContainerState{"a1", true, true});
  }
  SECTION("health of a label not known: not running") {
    CHECK(change(EventKind::health, "erin", "e1", false)->state == ContainerState{"e1", false, false});
  }
  SECTION("a late stop, death or health report of a container the label no longer has: no change") {
    CHECK_FALSE(change(EventKind::health, "alice", "old", true).has_value());
    CHECK_FALSE(change(EventKind::stopped, "alice", "old").has_value());
    CHECK_FALSE(change(EventKind::died, "alice", "old").has_value());
    CHECK(*state.find("alice") == ContainerState{"a1", true, false});
    CHECK(change(EventKind::started, "alice", "a2")->state == ContainerState{"a2", true, false});  // a new one
    CHECK(change(EventKind::created, "carol", "c2")->state == ContainerState{"c2", false, false});
  }
  SECTION("an event that repeats the known state is no change") {
    CHECK_FALSE(change(EventKind::started, "alice", "a1").has_value());
    CHECK(change(EventKind::health, "alice", "a1", true).has_value());
    CHECK_FALSE(change(EventKind::health, "alice", "a1", true).has_value());
    CHECK_FALSE(change(EventKind::health, "alice", "", true).has_value());
    CHECK_FALSE(change(EventKind::stopped, "carol", "c1").has_value());
  }
  SECTION("started after unhealthy: healthy again") {
    change(EventKind::health, "alice", "a1", true);
    CHECK(change(EventKind::started, "alice", "a1")->state == ContainerState{"a1", true, false});
  }
  SECTION("destroyed: gone; of another container than the label's: no change") {
    CHECK_FALSE(change(EventKind::destroyed, "alice", "old").has_value());
    CHECK(state.find("alice") != nullptr);
    const auto gone = change(EventKind::destroyed, "alice", "a1");
    REQUIRE(gone.has_value());
    CHECK(gone->label == "alice");
    CHECK_FALSE(gone->state.has_value());
    CHECK(state.find("alice") == nullptr);
    CHECK_FALSE(change(EventKind::destroyed, "zoe", "z1").has_value());
    CHECK(state.labels() == 1);
  }
  SECTION("a new snapshot replaces everything; clear forgets everything") {
    state.apply(Snapshot{{{"bob", {"b1", true, false}}}});
    CHECK(state.labels() == 1);
    CHECK(state.find("alice") == nullptr);
    CHECK(*state.find("bob") == ContainerState{"b1", true, false});
    state.clear();
    CHECK(state.labels() == 0);
  }
}

TEST_CASE("a label listed twice in a snapshot: the running container wins, else the last", "[feed]") {
  FeedState state;
  const auto unique = state.apply(Snapshot{{{"a", {"old", false, false}},
                                            {"b", {"b1", true, false}},
                                            {"a", {"new", true, false}},
                                            {"a", {"newer", false, false}},
                                            {"c", {"c1", false, false}},
                                            {"c", {"c2", false, true}}}});
  REQUIRE(unique.size() == 3);
  CHECK(unique[0] == std::pair<std::string, ContainerState>{"a", {"new", true, false}});
  CHECK(unique[1] == std::pair<std::string, ContainerState>{"b", {"b1", true, false}});
  CHECK(unique[2] == std::pair<std::string, ContainerState>{"c", {"c2", false, true}});
  CHECK(*state.find("a") == ContainerState{"new", true, false});
}

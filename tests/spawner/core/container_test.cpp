#include "core/container.hpp"

#include <catch2/catch.hpp>

using namespace director::spawner::core;

TEST_CASE("container states round-trip through Docker's names", "[container]") {
  for (const auto state : {ContainerState::created, ContainerState::running, ContainerState::paused,
                           ContainerState::restarting, ContainerState::removing, ContainerState::exited,
                           ContainerState::dead}) {
    CHECK(parse_container_state(to_string(state)) == state);
  }
  CHECK(to_string(ContainerState::unknown) == "unknown");
  CHECK(parse_container_state("unknown") == ContainerState::unknown);
  CHECK(parse_container_state("") == ContainerState::unknown);
  CHECK(parse_container_state("Running") == ContainerState::unknown);
  // Podman's own names.
  CHECK(parse_container_state("configured") == ContainerState::created);
  CHECK(parse_container_state("stopped") == ContainerState::exited);
}

TEST_CASE("health states round-trip, anything else is none", "[container]") {
  for (const auto health : {Health::starting, Health::healthy, Health::unhealthy}) {
    CHECK(parse_health(to_string(health)) == health);
  }
  CHECK(to_string(Health::none) == "none");
  CHECK(parse_health("none") == Health::none);
  CHECK(parse_health("") == Health::none);
  CHECK(parse_health("HEALTHY") == Health::none);
}

TEST_CASE("event kinds are named as the event feed names them", "[container]") {
  CHECK(to_string(EventKind::created) == "created");
  CHECK(to_string(EventKind::started) == "started");
  CHECK(to_string(EventKind::stopped) == "stopped");
  CHECK(to_string(EventKind::died) == "died");
  CHECK(to_string(EventKind::health) == "health");
  CHECK(to_string(EventKind::destroyed) == "destroyed");
}

TEST_CASE("a runtime's message is kept bounded, cut at a character, without control or reordering characters", "[container]") {
  CHECK(runtime_message("ErrImagePull: manifest unknown") == "ErrImagePull: manifest unknown");
  CHECK(runtime_message("") == "");
  // Tab and newline stay (a <pre> shows them); other control characters and DEL do not.
  CHECK(runtime_message("a\tb\nc\rd\x1b[31me\x7f") == "a\tb\nc d [31me ");
  // C1 controls and the characters that reorder text (RLO U+202E would show "image:1.2" as
  // another name) become spaces; other characters stay, also at the end of the text.
  CHECK(runtime_message("pull \xc2\x85x \xe2\x80\xaeimage\xe2\x80\xac \xe2\x81\xa6y\xe2\x81\xa9 \xd8\x9c\xe2\x80\x8f") ==
        "pull  x  image   y    ");
  CHECK(runtime_message("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\xb3") == "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\xb3");
  CHECK(runtime_message("cut \xe2\x80") == "cut \xe2\x80");  // not UTF-8: kept as it is
  // A lead byte whose next byte does not continue it stands alone: what follows is still checked.
  CHECK(runtime_message("a\xc3\x1b[31m b\xe2\x80\x1b c\xf0\x9f\x90\x7f") == "a\xc3 [31m b\xe2\x80  c\xf0\x9f\x90 ");
  // Bytes that never start UTF-8 (0xF8-0xFF) stand alone too; a C1 control after a stray lead
  // byte is still blanked.
  CHECK(runtime_message("\xff\x1b \xe2\xc2\x85 \xf8\x80\x80\x80!") == "\xff  \xe2  \xf8\x80\x80\x80!");

  const std::string exact(max_runtime_message, 'x');
  CHECK(runtime_message(exact) == exact);

  const std::string longer = std::string(600, 'y');
  const auto cut = runtime_message(longer);
  CHECK(cut.size() == max_runtime_message);
  CHECK(cut == std::string(max_runtime_message - 3, 'y') + "...");

  // "é" is two bytes: a cut that would fall inside one goes back to its first byte, so the
  // text stays UTF-8 (here byte 509 is the second of an "é": 508 bytes kept, then "...").
  std::string accents = "xx";
  while (accents.size() < 700) accents += "\xc3\xa9";
  const auto cut_accents = runtime_message(accents);
  CHECK(cut_accents.size() == max_runtime_message - 1);
  REQUIRE(cut_accents.ends_with("..."));
  CHECK(cut_accents.substr(0, cut_accents.size() - 3).ends_with("\xc3\xa9"));

  // Continuation bytes that no lead byte starts: the cut goes back at most three of them (the
  // longest a character has), never to the message's start.
  const auto cut_stray = runtime_message("error: " + std::string(600, '\x80'));
  CHECK(cut_stray.size() == max_runtime_message - 3);
  CHECK(cut_stray.starts_with("error: \x80"));
}

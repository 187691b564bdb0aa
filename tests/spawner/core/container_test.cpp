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

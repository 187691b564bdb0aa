#include "core/idle.hpp"

#include <catch2/catch.hpp>

using namespace director::spawner::core;
using namespace std::chrono_literals;

namespace {

const TimePoint t0 = TimePoint{} + 1000h;

ContainerStatus running(std::string label) {
  ContainerStatus container;
  container.id = "id-" + label;
  container.label = label;
  container.username = label;
  container.managed = true;
  container.state = ContainerState::running;
  return container;
}

IdleInputs inputs_at(TimePoint now) {
  IdleInputs inputs;
  inputs.now = now;
  inputs.watching_since = t0;
  return inputs;
}

}  // namespace

TEST_CASE("a user idle past the timeout with no open connection is retired", "[idle]") {
  IdleSettings settings{1h, IdleAction::stop};
  auto inputs = inputs_at(t0 + 3h);
  inputs.running = {running("alice"), running("bob"), running("carol"), running("dave")};
  inputs.last_request["alice"] = t0 + 3h - 61min;  // idle 61 min: retired
  inputs.last_request["bob"] = t0 + 3h - 59min;    // 59 min: not yet
  inputs.last_request["carol"] = t0;               // long idle, but an open WebSocket
  inputs.open_connections["carol"] = 1;
  inputs.open_connections["dave"] = 0;             // no agent knows dave: idle since watching_since
  const auto plan = plan_retirements(settings, inputs);
  REQUIRE(plan.size() == 2);
  CHECK(plan[0].label == "alice");
  CHECK(plan[0].id == "id-alice");
  CHECK(plan[0].action == IdleAction::stop);
  CHECK(plan[0].idle_for == 61min);
  CHECK(plan[1].label == "dave");
  CHECK(plan[1].idle_for == 3h);
}

TEST_CASE("a user no agent knows is not idle before a timeout since watching began", "[idle]") {
  IdleSettings settings{1h, IdleAction::remove};
  auto inputs = inputs_at(t0 + 59min);
  inputs.running = {running("ghost")};
  CHECK(plan_retirements(settings, inputs).empty());
  inputs.now = t0 + 1h;
  const auto plan = plan_retirements(settings, inputs);
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].action == IdleAction::remove);
}

TEST_CASE("a user an agent forgot a minute ago is not idle, however long the spawner has watched", "[idle]") {
  IdleSettings settings{1h, IdleAction::stop};
  // Round 1, spawner up for 2 h: an agent saw alice 5 min ago.
  auto first = inputs_at(t0 + 2h - 1min);
  first.running = {running("alice")};
  first.last_request["alice"] = t0 + 2h - 6min;
  first.unknown_since = track_unknown(first, {});
  CHECK(first.unknown_since.empty());
  CHECK(plan_retirements(settings, first).empty());
  // Round 2, a minute later: the agent restarted and forgot her.
  auto second = inputs_at(t0 + 2h);
  second.running = {running("alice")};
  second.unknown_since = track_unknown(second, first.unknown_since);
  REQUIRE(second.unknown_since.contains("alice"));
  CHECK(second.unknown_since.at("alice") == t0 + 2h);
  CHECK(plan_retirements(settings, second).empty());
  // Still unknown an hour later (the first unknown round kept): retired.
  auto later = inputs_at(t0 + 3h);
  later.running = {running("alice")};
  later.unknown_since = track_unknown(later, second.unknown_since);
  CHECK(later.unknown_since.at("alice") == t0 + 2h);
  const auto plan = plan_retirements(settings, later);
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].idle_for == 1h);
}

TEST_CASE("track_unknown drops labels known again or whose container is gone", "[idle]") {
  auto inputs = inputs_at(t0 + 2h);
  inputs.running = {running("alice")};
  inputs.last_request["alice"] = t0 + 2h;
  const UnknownSince previous{{"alice", t0 + 1h}, {"gone", t0 + 1h}};
  CHECK(track_unknown(inputs, previous).empty());
}

TEST_CASE("missing data or a zero timeout retires nobody", "[idle]") {
  auto inputs = inputs_at(t0 + 10h);
  inputs.running = {running("alice")};
  CHECK(plan_retirements(IdleSettings{1h, IdleAction::stop}, inputs).size() == 1);
  CHECK(plan_retirements(IdleSettings{0ms, IdleAction::stop}, inputs).empty());
  inputs.complete = false;
  CHECK(plan_retirements(IdleSettings{1h, IdleAction::stop}, inputs).empty());
}

TEST_CASE("only running managed containers with a label are candidates", "[idle]") {
  auto inputs = inputs_at(t0 + 10h);
  auto stopped = running("stopped");
  stopped.state = ContainerState::exited;
  auto foreign = running("foreign");
  foreign.managed = false;
  auto unlabelled = running("");
  inputs.running = {stopped, foreign, unlabelled};
  CHECK(plan_retirements(IdleSettings{1h, IdleAction::stop}, inputs).empty());
}

TEST_CASE("a request in the future (clock skew) is not idleness", "[idle]") {
  auto inputs = inputs_at(t0 + 10h);
  inputs.running = {running("alice")};
  inputs.last_request["alice"] = t0 + 11h;
  CHECK(plan_retirements(IdleSettings{1h, IdleAction::stop}, inputs).empty());
  CHECK(to_string(IdleAction::stop) == "stop");
  CHECK(to_string(IdleAction::remove) == "remove");
}

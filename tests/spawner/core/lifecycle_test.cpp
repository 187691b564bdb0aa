#include "core/lifecycle.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

using namespace director::spawner::core;
using namespace std::chrono_literals;

namespace {

const TimePoint t0 = TimePoint{} + 1000h;

LifecycleSettings test_settings() {
  LifecycleSettings settings;
  settings.container_template.host_prefix = "vscode";
  settings.container_template.image = "localhost/busybox:test";
  settings.ready_timeout = 30s;
  settings.retry_after = 2s;
  settings.pull_missing_images = true;
  return settings;
}

const UserIdentity alice{"Alice@Example", "alice"};

ContainerStatus managed_container(std::string id, ContainerState state, Health health = Health::none) {
  ContainerStatus container;
  container.id = std::move(id);
  container.name = "vscode-alice";
  container.managed = true;
  container.label = "alice";
  container.username = "Alice@Example";
  container.state = state;
  container.health = health;
  return container;
}

// The single command of `commands`, which must hold an action of type T.
template <typename T>
const T& only(const std::vector<Command>& commands) {
  REQUIRE(commands.size() == 1);
  const auto* action = std::get_if<T>(&commands.front().action);
  REQUIRE(action != nullptr);
  return *action;
}

Result result_of(const std::vector<Command>& commands, ResultValue value) {
  REQUIRE(commands.size() == 1);
  return Result{commands.front().label, commands.front().operation, std::move(value)};
}

// Runs a wake through to AwaitReady for an absent container; returns the AwaitReady command.
std::vector<Command> wake_to_await(Lifecycle& lifecycle, TimePoint now) {
  auto commands = lifecycle.wake(alice, now);
  only<InspectContainer>(commands);
  commands = lifecycle.on_result(result_of(commands, Inspected{}), now);
  only<CreateContainer>(commands);
  commands = lifecycle.on_result(result_of(commands, Created{"c1"}), now);
  only<StartContainer>(commands);
  commands = lifecycle.on_result(result_of(commands, Started{}), now);
  only<AwaitReady>(commands);
  return commands;
}

}  // namespace

TEST_CASE("an absent container is inspected, created, started and awaited, then ready", "[lifecycle]") {
  Lifecycle lifecycle(test_settings());
  auto commands = lifecycle.wake(alice, t0);
  CHECK(only<InspectContainer>(commands).name == "vscode-alice");
  CHECK(commands.front().label == "alice");
  CHECK(lifecycle.view("alice").phase == Phase::inspecting);
  CHECK(lifecycle.view("alice").in_flight);
  CHECK(lifecycle.view("alice").operation_started == t0);

  commands = lifecycle.on_result(result_of(commands, Inspected{}), t0 + 10ms);
  const auto& create = only<CreateContainer>(commands);
  CHECK(create.spec.name == "vscode-alice");
  CHECK(create.spec.labels.at(std::string(user_label)) == "Alice@Example");
  CHECK(lifecycle.view("alice").phase == Phase::creating);
  CHECK(lifecycle.view("alice").phase_since == t0 + 10ms);

  commands = lifecycle.on_result(result_of(commands, Created{"c1"}), t0 + 20ms);
  CHECK(only<StartContainer>(commands).id == "c1");
  CHECK(only<StartContainer>(commands).user.username == "Alice@Example");  // whose: the record's
  CHECK(only<StartContainer>(commands).user.label == "alice");
  CHECK(lifecycle.view("alice").phase == Phase::starting);

  commands = lifecycle.on_result(result_of(commands, Started{}), t0 + 30ms);
  const auto& await = only<AwaitReady>(commands);
  CHECK(await.id == "c1");
  CHECK(await.readiness == Readiness::port);
  CHECK(await.deadline == t0 + 30ms + 30s);
  CHECK(lifecycle.view("alice").phase == Phase::waiting_for_ready);
  CHECK(lifecycle.view("alice").readiness == Readiness::port);

  const ReadyResult ready{ReadyOutcome::ready, managed_container("c1", ContainerState::running)};
  commands = lifecycle.on_result(result_of(commands, ready), t0 + 40ms);
  CHECK(commands.empty());
  const auto view = lifecycle.view("alice");
  CHECK(view.phase == Phase::ready);
  CHECK_FALSE(view.in_flight);
  CHECK_FALSE(view.failure);
  CHECK_FALSE(view.readiness);
  CHECK(view.operation_started == t0);
  REQUIRE(view.container);
  CHECK(view.container->state == ContainerState::running);
  CHECK(view.username == "Alice@Example");
  // Ready: further wakes start nothing.
  CHECK(lifecycle.wake(alice, t0 + 1s).empty());
}

TEST_CASE("late create and start events of a run a check already saw ready change nothing", "[lifecycle]") {
  Lifecycle lifecycle(test_settings());
  auto commands = lifecycle.wake(alice, t0);
  commands = lifecycle.on_result(result_of(commands, Inspected{}), t0 + 10ms);
  commands = lifecycle.on_result(result_of(commands, Created{"c1"}), t0 + 20ms);
  commands = lifecycle.on_result(result_of(commands, Started{}), t0 + 30ms);
  const ReadyResult ready{ReadyOutcome::ready, managed_container("c1", ContainerState::running)};
  commands = lifecycle.on_result(result_of(commands, ready), t0 + 50ms);
  REQUIRE(lifecycle.view("alice").ready_checked == t0 + 50ms);

  // The runtime's events for the create and the start above, late (Podman's come after the
  // operation has seen the container listen).
  CHECK(lifecycle.on_event(ContainerEvent{EventKind::created, "c1", "alice", Health::none, {}, {}}, t0 + 70ms).empty());
  CHECK(lifecycle.view("alice").phase == Phase::ready);
  CHECK(lifecycle.on_event(ContainerEvent{EventKind::started, "c1", "alice", Health::none, {}, {}}, t0 + 80ms).empty());
  const auto view = lifecycle.view("alice");
  CHECK(view.phase == Phase::ready);
  CHECK(view.ready_checked == t0 + 50ms);
  // Within ready_check_valid_for, a wake (the director still sends the user here) starts no
  // second check: the page says the container is unreachable instead.
  CHECK(lifecycle.wake(alice, t0 + 10s).empty());
}

TEST_CASE("inspect answering not_found is an absent container", "[lifecycle]") {
  Lifecycle lifecycle(test_settings());
  auto commands = lifecycle.wake(alice, t0);
  commands = lifecycle.on_result(result_of(commands, CallFailure{CallError::not_found, "no such container"}), t0);
  only<CreateContainer>(commands);
}

TEST_CASE("a stopped managed container is started, not created", "[lifecycle]") {
  for (const auto state : {ContainerState::exited, ContainerState::created, ContainerState::unknown}) {
    Lifecycle lifecycle(test_settings());
    auto commands = lifecycle.wake(alice, t0);
    commands = lifecycle.on_result(result_of(commands, Inspected{managed_container("old", state)}), t0);
    CHECK(only<StartContainer>(commands).id == "old");
    CHECK(only<StartContainer>(commands).user.username == "Alice@Example");
    CHECK(only<StartContainer>(commands).user.label == "alice");
    commands = lifecycle.on_result(result_of(commands, Started{}), t0);
    CHECK(only<AwaitReady>(commands).id == "old");
  }
}

TEST_CASE("a running managed container is only awaited", "[lifecycle]") {
  for (const auto state : {ContainerState::running, ContainerState::restarting}) {
    Lifecycle lifecycle(test_settings());
    auto commands = lifecycle.wake(alice, t0);
    commands = lifecycle.on_result(result_of(commands, Inspected{managed_container("c9", state)}), t0 + 5ms);
    const auto& await = only<AwaitReady>(commands);
    CHECK(await.id == "c9");
    CHECK(await.deadline == t0 + 5ms + 30s);
  }
}

TEST_CASE("paused, dead or removing containers fail the operation as exited", "[lifecycle]") {
  for (const auto state : {ContainerState::paused, ContainerState::dead, ContainerState::removing}) {
    Lifecycle lifecycle(test_settings());
    auto commands = lifecycle.wake(alice, t0);
    commands = lifecycle.on_result(result_of(commands, Inspected{managed_container("c9", state)}), t0);
    CHECK(commands.empty());
    const auto view = lifecycle.view("alice");
    CHECK(view.phase == Phase::failed);
    REQUIRE(view.failure);
    CHECK(view.failure->kind == FailureKind::exited);
  }
}

TEST_CASE("a container of that name the director did not create is never touched", "[lifecycle]") {
  Lifecycle lifecycle(test_settings());
  auto commands = lifecycle.wake(alice, t0);
  auto foreign = managed_container("f1", ContainerState::exited);
  foreign.managed = false;
  commands = lifecycle.on_result(result_of(commands, Inspected{foreign}), t0);
  CHECK(commands.empty());
  const auto view = lifecycle.view("alice");
  CHECK(view.phase == Phase::failed);
  REQUIRE(view.failure);
  CHECK(view.failure->kind == FailureKind::name_taken);
  CHECK(view.failure->detail.find("vscode-alice") != std::string::npos);
  REQUIRE(view.failure->container);
  CHECK(view.failure->container->id == "f1");
}

TEST_CASE("readiness is the health check when the template, the image or the container has one", "[lifecycle]") {
  SECTION("template check, new container") {
    auto settings = test_settings();
    settings.container_template.health_check.command = {"true"};
    Lifecycle lifecycle(settings);
    CHECK(only<AwaitReady>(wake_to_await(lifecycle, t0)).readiness == Readiness::health_check);
    CHECK(lifecycle.view("alice").readiness == Readiness::health_check);
  }
  SECTION("image check, new container") {
    auto settings = test_settings();
    settings.image_has_health_check = true;
    Lifecycle lifecycle(settings);
    CHECK(only<AwaitReady>(wake_to_await(lifecycle, t0)).readiness == Readiness::health_check);
  }
  SECTION("the inspected running container reports a health state") {
    Lifecycle lifecycle(test_settings());
    auto commands = lifecycle.wake(alice, t0);
    commands = lifecycle.on_result(
        result_of(commands, Inspected{managed_container("c1", ContainerState::running, Health::starting)}), t0);
    CHECK(only<AwaitReady>(commands).readiness == Readiness::health_check);
  }
  SECTION("the inspected stopped container reports a health state") {
    Lifecycle lifecycle(test_settings());
    auto commands = lifecycle.wake(alice, t0);
    commands = lifecycle.on_result(
        result_of(commands, Inspected{managed_container("c1", ContainerState::exited, Health::unhealthy)}), t0);
    commands = lifecycle.on_result(result_of(commands, Started{}), t0);
    CHECK(only<AwaitReady>(commands).readiness == Readiness::health_check);
  }
  SECTION("none of them: the port") {
    Lifecycle lifecycle(test_settings());
    auto commands = lifecycle.wake(alice, t0);
    commands = lifecycle.on_result(result_of(commands, Inspected{managed_container("c1", ContainerState::running)}), t0);
    CHECK(only<AwaitReady>(commands).readiness == Readiness::port);
  }
}

TEST_CASE("200 wakes while one operation is in flight make one InspectContainer", "[lifecycle][single-flight]") {
  Lifecycle lifecycle(test_settings());
  std::size_t inspects = 0;
  std::vector<Command> first;
  for (int i = 0; i < 200; ++i) {
    auto commands = lifecycle.wake(alice, t0 + std::chrono::milliseconds(i));
    for (const auto& command : commands) {
      if (std::holds_alternative<InspectContainer>(command.action)) ++inspects;
    }
    if (!commands.empty()) first = commands;
  }
  CHECK(inspects == 1);
  CHECK(lifecycle.view("alice").operation_started == t0);
  // And at every later step too.
  auto commands = lifecycle.on_result(result_of(first, Inspected{}), t0 + 1s);
  only<CreateContainer>(commands);
  for (int i = 0; i < 200; ++i) CHECK(lifecycle.wake(alice, t0 + 1s).empty());
  commands = lifecycle.on_result(result_of(commands, Created{"c1"}), t0 + 1s);
  for (int i = 0; i < 200; ++i) CHECK(lifecycle.wake(alice, t0 + 1s).empty());
  commands = lifecycle.on_result(result_of(commands, Started{}), t0 + 1s);
  for (int i = 0; i < 200; ++i) CHECK(lifecycle.wake(alice, t0 + 1s).empty());
  only<AwaitReady>(commands);
}

TEST_CASE("users are independent: one in flight does not hold another", "[lifecycle][single-flight]") {
  Lifecycle lifecycle(test_settings());
  const auto first = lifecycle.wake(alice, t0);
  const auto second = lifecycle.wake(UserIdentity{"bob", "bob"}, t0);
  CHECK(only<InspectContainer>(first).name == "vscode-alice");
  CHECK(only<InspectContainer>(second).name == "vscode-bob");
  CHECK(first.front().operation != second.front().operation);
}

TEST_CASE("create conflict: inspect once more, then handle what another spawner created", "[lifecycle]") {
  Lifecycle lifecycle(test_settings());
  auto commands = lifecycle.wake(alice, t0);
  commands = lifecycle.on_result(result_of(commands, Inspected{}), t0);
  only<CreateContainer>(commands);
  commands = lifecycle.on_result(result_of(commands, CallFailure{CallError::conflict, "name in use"}), t0);
  CHECK(only<InspectContainer>(commands).name == "vscode-alice");
  CHECK(lifecycle.view("alice").phase == Phase::inspecting);

  SECTION("now running: awaited") {
    commands = lifecycle.on_result(result_of(commands, Inspected{managed_container("other", ContainerState::running)}), t0);
    CHECK(only<AwaitReady>(commands).id == "other");
  }
  SECTION("now stopped: started") {
    commands = lifecycle.on_result(result_of(commands, Inspected{managed_container("other", ContainerState::created)}), t0);
    CHECK(only<StartContainer>(commands).id == "other");
  }
  SECTION("absent again, and a second conflict: limits_refused, no loop") {
    commands = lifecycle.on_result(result_of(commands, Inspected{}), t0);
    only<CreateContainer>(commands);
    commands = lifecycle.on_result(result_of(commands, CallFailure{CallError::conflict, "name in use"}), t0);
    CHECK(commands.empty());
    REQUIRE(lifecycle.view("alice").failure);
    CHECK(lifecycle.view("alice").failure->kind == FailureKind::limits_refused);
    CHECK(lifecycle.view("alice").failure->detail == "name in use");
  }
}

TEST_CASE("create with the image missing pulls it, then creates once more", "[lifecycle]") {
  Lifecycle lifecycle(test_settings());
  auto commands = lifecycle.wake(alice, t0);
  commands = lifecycle.on_result(result_of(commands, Inspected{}), t0);
  commands = lifecycle.on_result(result_of(commands, CallFailure{CallError::image_missing, "no such image"}), t0 + 1ms);
  CHECK(only<PullImage>(commands).image == "localhost/busybox:test");
  CHECK(lifecycle.view("alice").phase == Phase::pulling);

  SECTION("pulled: create, start, await") {
    commands = lifecycle.on_result(result_of(commands, Pulled{}), t0 + 2ms);
    only<CreateContainer>(commands);
    CHECK(lifecycle.view("alice").phase == Phase::creating);
    SECTION("still missing after the pull: image_missing, no second pull") {
      commands = lifecycle.on_result(result_of(commands, CallFailure{CallError::image_missing, "still missing"}), t0);
      CHECK(commands.empty());
      REQUIRE(lifecycle.view("alice").failure);
      CHECK(lifecycle.view("alice").failure->kind == FailureKind::image_missing);
    }
    SECTION("created") {
      commands = lifecycle.on_result(result_of(commands, Created{"c1"}), t0);
      only<StartContainer>(commands);
    }
  }
  SECTION("the pull fails: image_missing with the runtime's message") {
    commands = lifecycle.on_result(result_of(commands, CallFailure{CallError::not_found, "manifest unknown"}), t0);
    CHECK(commands.empty());
    const auto view = lifecycle.view("alice");
    CHECK(view.phase == Phase::failed);
    REQUIRE(view.failure);
    CHECK(view.failure->kind == FailureKind::image_missing);
    CHECK(view.failure->detail == "manifest unknown");
  }
}

TEST_CASE("with pulling off, a missing image fails at once", "[lifecycle]") {
  auto settings = test_settings();
  settings.pull_missing_images = false;
  Lifecycle lifecycle(settings);
  auto commands = lifecycle.wake(alice, t0);
  commands = lifecycle.on_result(result_of(commands, Inspected{}), t0);
  commands = lifecycle.on_result(result_of(commands, CallFailure{CallError::image_missing, "no such image"}), t0);
  CHECK(commands.empty());
  REQUIRE(lifecycle.view("alice").failure);
  CHECK(lifecycle.view("alice").failure->kind == FailureKind::image_missing);
  CHECK(lifecycle.view("alice").failure->detail == "no such image");
}

TEST_CASE("runtime errors map to failure kinds", "[lifecycle]") {
  struct Case {
    std::size_t fail_at;  // 0 inspect, 1 create, 2 start, 3 await
    CallError error;
    FailureKind kind;
  };
  const std::vector<Case> cases = {
      {0, CallError::unavailable, FailureKind::runtime_unavailable},
      {0, CallError::refused, FailureKind::runtime_unavailable},
      {1, CallError::unavailable, FailureKind::runtime_unavailable},
      {1, CallError::refused, FailureKind::limits_refused},
      {1, CallError::not_found, FailureKind::limits_refused},
      {2, CallError::unavailable, FailureKind::runtime_unavailable},
      {2, CallError::refused, FailureKind::limits_refused},
      {2, CallError::conflict, FailureKind::limits_refused},
      {2, CallError::not_found, FailureKind::exited},
      {3, CallError::unavailable, FailureKind::runtime_unavailable},
  };
  for (const auto& c : cases) {
    CAPTURE(c.fail_at, static_cast<int>(c.error));
    Lifecycle lifecycle(test_settings());
    auto commands = lifecycle.wake(alice, t0);
    const std::vector<ResultValue> successes = {Inspected{}, Created{"c1"}, Started{}};
    for (std::size_t step = 0; step < c.fail_at; ++step) commands = lifecycle.on_result(result_of(commands, successes[step]), t0);
    commands = lifecycle.on_result(result_of(commands, CallFailure{c.error, "the runtime says no"}), t0 + 3ms);
    CHECK(commands.empty());
    const auto view = lifecycle.view("alice");
    CHECK(view.phase == Phase::failed);
    CHECK(view.phase_since == t0 + 3ms);
    CHECK_FALSE(view.in_flight);
    REQUIRE(view.failure);
    CHECK(view.failure->kind == c.kind);
    CHECK(view.failure->detail.find("the runtime says no") != std::string::npos);
  }
}

TEST_CASE("await ready outcomes", "[lifecycle]") {
  Lifecycle lifecycle(test_settings());
  auto commands = wake_to_await(lifecycle, t0);
  auto exited = managed_container("c1", ContainerState::exited);
  exited.exit_code = 3;
  exited.oom_killed = true;
  SECTION("exited") {
    lifecycle.on_result(result_of(commands, ReadyResult{ReadyOutcome::exited, exited}), t0);
    const auto view = lifecycle.view("alice");
    REQUIRE(view.failure);
    CHECK(view.failure->kind == FailureKind::exited);
    CHECK(view.failure->detail.find("exit code 3") != std::string::npos);
    CHECK(view.failure->detail.find("memory") != std::string::npos);
    REQUIRE(view.failure->container);
    CHECK(view.failure->container->exit_code == 3);
  }
  SECTION("unhealthy") {
    lifecycle.on_result(result_of(commands, ReadyResult{ReadyOutcome::unhealthy, std::nullopt}), t0);
    REQUIRE(lifecycle.view("alice").failure);
    CHECK(lifecycle.view("alice").failure->kind == FailureKind::unhealthy);
  }
  SECTION("timed out") {
    lifecycle.on_result(result_of(commands, ReadyResult{ReadyOutcome::timed_out, std::nullopt}), t0);
    REQUIRE(lifecycle.view("alice").failure);
    CHECK(lifecycle.view("alice").failure->kind == FailureKind::not_ready);
  }
}

TEST_CASE("after a failure, wakes within retry_after start nothing, later ones retry", "[lifecycle][retry]") {
  Lifecycle lifecycle(test_settings());
  auto commands = lifecycle.wake(alice, t0);
  lifecycle.on_result(result_of(commands, CallFailure{CallError::unavailable, "down"}), t0 + 100ms);
  CHECK(lifecycle.wake(alice, t0 + 100ms).empty());
  CHECK(lifecycle.wake(alice, t0 + 2099ms).empty());
  CHECK(lifecycle.view("alice").phase == Phase::failed);
  commands = lifecycle.wake(alice, t0 + 2100ms);
  only<InspectContainer>(commands);
  const auto view = lifecycle.view("alice");
  CHECK(view.phase == Phase::inspecting);
  CHECK_FALSE(view.failure);
  CHECK(view.operation_started == t0 + 2100ms);
}

TEST_CASE("results of stale operations are ignored", "[lifecycle][stale]") {
  Lifecycle lifecycle(test_settings());
  auto first = lifecycle.wake(alice, t0);
  lifecycle.on_result(result_of(first, CallFailure{CallError::unavailable, "down"}), t0);
  auto second = lifecycle.wake(alice, t0 + 5s);
  REQUIRE(second.front().operation != first.front().operation);
  // A late duplicate of the first operation's result changes nothing.
  CHECK(lifecycle.on_result(result_of(first, Inspected{}), t0 + 5s).empty());
  CHECK(lifecycle.view("alice").phase == Phase::inspecting);
  // A result of the wrong kind for the step, of the current operation, is ignored too.
  CHECK(lifecycle.on_result(result_of(second, Started{}), t0 + 5s).empty());
  CHECK(lifecycle.view("alice").phase == Phase::inspecting);
  // A result for a label never seen.
  CHECK(lifecycle.on_result(Result{"nobody", 1, Inspected{}}, t0).empty());
  CHECK(lifecycle.view("nobody").phase == Phase::absent);
  // The current one still works.
  only<CreateContainer>(lifecycle.on_result(result_of(second, Inspected{}), t0 + 5s));
}

TEST_CASE("an AwaitReady result after the container died is ignored", "[lifecycle][stale][events]") {
  Lifecycle lifecycle(test_settings());
  const auto commands = wake_to_await(lifecycle, t0);
  lifecycle.on_event(ContainerEvent{EventKind::died, "c1", "alice", Health::none, 137, {}}, t0 + 1s);
  auto view = lifecycle.view("alice");
  CHECK(view.phase == Phase::failed);
  REQUIRE(view.failure);
  CHECK(view.failure->kind == FailureKind::exited);
  CHECK(view.failure->detail.find("137") != std::string::npos);
  REQUIRE(view.container);
  CHECK(view.container->exit_code == 137);
  // The I/O layer's own report of the same exit comes late: not reported twice.
  CHECK(lifecycle.on_result(result_of(commands, ReadyResult{ReadyOutcome::exited, std::nullopt}), t0 + 2s).empty());
  view = lifecycle.view("alice");
  CHECK(view.phase_since == t0 + 1s);
  // Nor does a late "ready" resurrect it.
  lifecycle.on_result(result_of(commands, ReadyResult{ReadyOutcome::ready, std::nullopt}), t0 + 2s);
  CHECK(lifecycle.view("alice").phase == Phase::failed);
}

TEST_CASE("a died event's error (the kubelet cannot pull the image) reaches the failure and its container",
          "[lifecycle][events]") {
  Lifecycle lifecycle(test_settings());
  const auto commands = wake_to_await(lifecycle, t0);
  const std::string why = "ImagePullBackOff: Back-off pulling image \"registry.example/ide:1.2\"";
  ContainerEvent died{EventKind::died, "c1", "alice", Health::none, std::nullopt, "Alice@Example"};
  died.error = why;
  lifecycle.on_event(died, t0 + 1s);
  auto view = lifecycle.view("alice");
  CHECK(view.phase == Phase::failed);
  REQUIRE(view.failure);
  CHECK(view.failure->kind == FailureKind::exited);
  CHECK(view.failure->detail.find(why) != std::string::npos);
  REQUIRE(view.failure->container);
  CHECK(view.failure->container->error == why);
  REQUIRE(view.container);
  CHECK(view.container->error == why);

  // A later wake retries (start: a Kubernetes runtime makes a new Pod); once that runs, the old
  // error is not the container's any more.
  auto retry = lifecycle.wake(alice, t0 + 5s);
  auto failed_pod = managed_container("c1", ContainerState::exited);
  failed_pod.error = why;
  retry = lifecycle.on_result(result_of(retry, Inspected{failed_pod}), t0 + 5s);
  only<StartContainer>(retry);
  lifecycle.on_event(ContainerEvent{EventKind::started, "c1", "alice", Health::none, std::nullopt, "Alice@Example"}, t0 + 6s);
  REQUIRE(lifecycle.view("alice").container);
  CHECK(lifecycle.view("alice").container->error.empty());
}

TEST_CASE("a retry's new run does not carry the old run's error, even when the old Pod's stop comes late",
          "[lifecycle][events]") {
  Lifecycle lifecycle(test_settings());
  wake_to_await(lifecycle, t0);
  const std::string why = "ImagePullBackOff: Back-off pulling image \"registry.example/ide:1.2\"";
  ContainerEvent died{EventKind::died, "c1", "alice", Health::none, std::nullopt, "Alice@Example"};
  died.error = why;
  lifecycle.on_event(died, t0 + 1s);
  REQUIRE(lifecycle.view("alice").phase == Phase::failed);

  // The retry: the old Pod inspected (same name: the same id on Kubernetes), started again.
  auto retry = lifecycle.wake(alice, t0 + 5s);
  auto failed_pod = managed_container("c1", ContainerState::exited);
  failed_pod.error = why;
  failed_pod.oom_killed = true;
  failed_pod.exit_code = 137;
  retry = lifecycle.on_result(result_of(retry, Inspected{failed_pod}), t0 + 5s);
  retry = lifecycle.on_result(result_of(retry, Started{}), t0 + 6s);
  REQUIRE(lifecycle.view("alice").container);
  CHECK(lifecycle.view("alice").container->error.empty());
  CHECK_FALSE(lifecycle.view("alice").container->oom_killed);
  CHECK(lifecycle.view("alice").container->exit_code == 0);

  // The old Pod's deletion reported after the new one was made: the wake fails, without the
  // old run's message.
  lifecycle.on_event(ContainerEvent{EventKind::stopped, "c1", "alice", Health::none, std::nullopt, "Alice@Example"},
                     t0 + 7s);
  const auto view = lifecycle.view("alice");
  CHECK(view.phase == Phase::failed);
  REQUIRE(view.failure);
  CHECK(view.failure->detail.find("ImagePullBackOff") == std::string::npos);
  CHECK(view.failure->detail.find("137") == std::string::npos);
}

TEST_CASE("events while starting", "[lifecycle][events][stale]") {
  Lifecycle lifecycle(test_settings());
  auto commands = lifecycle.wake(alice, t0);
  commands = lifecycle.on_result(result_of(commands, Inspected{}), t0);
  commands = lifecycle.on_result(result_of(commands, Created{"c1"}), t0);
  REQUIRE(lifecycle.view("alice").phase == Phase::starting);
  SECTION("died before the start call returned: the operation goes on, AwaitReady finds out") {
    lifecycle.on_event(ContainerEvent{EventKind::died, "c1", "alice", Health::none, 1, {}}, t0);
    CHECK(lifecycle.view("alice").phase == Phase::starting);
    commands = lifecycle.on_result(result_of(commands, Started{}), t0);
    only<AwaitReady>(commands);
    lifecycle.on_result(result_of(commands, ReadyResult{ReadyOutcome::exited, std::nullopt}), t0);
    REQUIRE(lifecycle.view("alice").failure);
    CHECK(lifecycle.view("alice").failure->kind == FailureKind::exited);
  }
  SECTION("destroyed: absent, and the start's result is stale") {
    lifecycle.on_event(ContainerEvent{EventKind::destroyed, "c1", "alice", Health::none, {}, {}}, t0);
    CHECK(lifecycle.view("alice").phase == Phase::absent);
    CHECK(lifecycle.on_result(result_of(commands, Started{}), t0).empty());
    CHECK(lifecycle.view("alice").phase == Phase::absent);
  }
}

TEST_CASE("runtime events", "[lifecycle][events]") {
  Lifecycle lifecycle(test_settings());
  auto commands = wake_to_await(lifecycle, t0);

  SECTION("unhealthy while waiting: AwaitReady decides, reported once") {
    CHECK(lifecycle.on_event(ContainerEvent{EventKind::health, "c1", "alice", Health::unhealthy, {}, {}}, t0).empty());
    CHECK(lifecycle.view("alice").phase == Phase::waiting_for_ready);
    REQUIRE(lifecycle.view("alice").container);
    CHECK(lifecycle.view("alice").container->health == Health::unhealthy);
    lifecycle.on_result(result_of(commands, ReadyResult{ReadyOutcome::unhealthy, std::nullopt}), t0);
    REQUIRE(lifecycle.view("alice").failure);
    CHECK(lifecycle.view("alice").failure->kind == FailureKind::unhealthy);
  }
  SECTION("destroyed while waiting: absent, the operation ends") {
    lifecycle.on_event(ContainerEvent{EventKind::destroyed, "c1", "alice", Health::none, {}, {}}, t0 + 1s);
    CHECK(lifecycle.view("alice").phase == Phase::absent);
    CHECK_FALSE(lifecycle.view("alice").in_flight);
    CHECK(lifecycle.on_result(result_of(commands, ReadyResult{ReadyOutcome::ready, std::nullopt}), t0).empty());
    CHECK(lifecycle.view("alice").phase == Phase::absent);
    only<InspectContainer>(lifecycle.wake(alice, t0 + 2s));
  }
  SECTION("events of another container id are ignored") {
    lifecycle.on_event(ContainerEvent{EventKind::died, "old", "alice", Health::none, 1, {}}, t0);
    lifecycle.on_event(ContainerEvent{EventKind::destroyed, "old", "alice", Health::none, {}, {}}, t0);
    CHECK(lifecycle.view("alice").phase == Phase::waiting_for_ready);
  }
  SECTION("once ready") {
    lifecycle.on_result(result_of(commands, ReadyResult{ReadyOutcome::ready, std::nullopt}), t0 + 1s);
    REQUIRE(lifecycle.view("alice").phase == Phase::ready);
    SECTION("unhealthy: absent, so that a wake awaits it again; healthy again: ready") {
      lifecycle.on_event(ContainerEvent{EventKind::health, "c1", "alice", Health::unhealthy, {}, {}}, t0 + 2s);
      CHECK(lifecycle.view("alice").phase == Phase::absent);
      CHECK(lifecycle.view("alice").container->health == Health::unhealthy);
      lifecycle.on_event(ContainerEvent{EventKind::health, "c1", "alice", Health::healthy, {}, {}}, t0 + 3s);
      CHECK(lifecycle.view("alice").phase == Phase::ready);
      CHECK(lifecycle.view("alice").phase_since == t0 + 3s);
    }
    SECTION("unhealthy, then a wake: inspect, and the health check is what is awaited") {
      lifecycle.on_event(ContainerEvent{EventKind::health, "c1", "alice", Health::unhealthy, {}, {}}, t0 + 2s);
      auto again = lifecycle.wake(alice, t0 + 3s);
      again = lifecycle.on_result(
          result_of(again, Inspected{managed_container("c1", ContainerState::running, Health::unhealthy)}), t0 + 3s);
      CHECK(only<AwaitReady>(again).readiness == Readiness::health_check);
    }
    SECTION("died: absent, and the next wake starts it") {
      lifecycle.on_event(ContainerEvent{EventKind::died, "c1", "alice", Health::none, 0, {}}, t0 + 2s);
      CHECK(lifecycle.view("alice").phase == Phase::absent);
      CHECK(lifecycle.view("alice").phase_since == t0 + 2s);
      CHECK(lifecycle.view("alice").container->state == ContainerState::exited);
      CHECK_FALSE(lifecycle.view("alice").failure);
      only<InspectContainer>(lifecycle.wake(alice, t0 + 2s));
    }
    SECTION("stopped: absent") {
      lifecycle.on_event(ContainerEvent{EventKind::stopped, "c1", "alice", Health::none, {}, {}}, t0 + 2s);
      CHECK(lifecycle.view("alice").phase == Phase::absent);
    }
    SECTION("destroyed: absent, nothing known") {
      lifecycle.on_event(ContainerEvent{EventKind::destroyed, "c1", "alice", Health::none, {}, {}}, t0 + 2s);
      CHECK(lifecycle.view("alice").phase == Phase::absent);
      CHECK_FALSE(lifecycle.view("alice").container);
      CHECK(lifecycle.views().empty());
    }
    SECTION("stopped and started again outside an operation: ready again") {
      lifecycle.on_event(ContainerEvent{EventKind::stopped, "c1", "alice", Health::none, {}, {}}, t0 + 2s);
      lifecycle.on_event(ContainerEvent{EventKind::started, "c1", "alice", Health::none, {}, {}}, t0 + 3s);
      CHECK(lifecycle.view("alice").phase == Phase::ready);
      CHECK(lifecycle.view("alice").container->state == ContainerState::running);
    }
  }
}

TEST_CASE("a ready user sent here is checked again unless a check passed recently", "[lifecycle]") {
  auto settings = test_settings();
  settings.ready_check_valid_for = 30s;
  Lifecycle lifecycle(settings);
  SECTION("ready from a snapshot only: the first wake inspects and awaits it") {
    lifecycle.on_snapshot({managed_container("c1", ContainerState::running)}, t0);
    REQUIRE(lifecycle.view("alice").phase == Phase::ready);
    CHECK_FALSE(lifecycle.view("alice").ready_checked);
    auto commands = lifecycle.wake(alice, t0 + 1s);
    only<InspectContainer>(commands);
    CHECK(lifecycle.view("alice").phase == Phase::inspecting);
    commands = lifecycle.on_result(result_of(commands, Inspected{managed_container("c1", ContainerState::running)}),
                                   t0 + 1s);
    only<AwaitReady>(commands);
    lifecycle.on_result(result_of(commands, ReadyResult{ReadyOutcome::ready, std::nullopt}), t0 + 2s);
    CHECK(lifecycle.view("alice").ready_checked == t0 + 2s);
    CHECK(lifecycle.wake(alice, t0 + 3s).empty());
  }
  SECTION("a passed check stands for ready_check_valid_for") {
    auto commands = wake_to_await(lifecycle, t0);
    lifecycle.on_result(result_of(commands, ReadyResult{ReadyOutcome::ready, std::nullopt}), t0 + 1s);
    CHECK(lifecycle.wake(alice, t0 + 30s).empty());
    only<InspectContainer>(lifecycle.wake(alice, t0 + 31s));
  }
  SECTION("a restart outside an operation voids the passed check") {
    auto commands = wake_to_await(lifecycle, t0);
    lifecycle.on_result(result_of(commands, ReadyResult{ReadyOutcome::ready, std::nullopt}), t0 + 1s);
    // A restart: the runtime reports the old run's end, then the new start.
    lifecycle.on_event(ContainerEvent{EventKind::died, "c1", "alice", Health::none, 137, {}}, t0 + 2s);
    lifecycle.on_event(ContainerEvent{EventKind::started, "c1", "alice", Health::none, {}, {}}, t0 + 2s);
    CHECK(lifecycle.view("alice").phase == Phase::ready);
    only<InspectContainer>(lifecycle.wake(alice, t0 + 3s));
  }
}

TEST_CASE("events while no operation knows the user", "[lifecycle][events]") {
  Lifecycle lifecycle(test_settings());
  SECTION("started elsewhere: ready, the director finds it") {
    lifecycle.on_event(ContainerEvent{EventKind::started, "c7", "carol", Health::none, {}, {}}, t0);
    const auto view = lifecycle.view("carol");
    CHECK(view.phase == Phase::ready);
    REQUIRE(view.container);
    CHECK(view.container->id == "c7");
    CHECK(view.container->name == "vscode-carol");
  }
  SECTION("started elsewhere with a health check: ready once healthy") {
    lifecycle.on_snapshot({managed_container("c1", ContainerState::exited, Health::unhealthy)}, t0);
    CHECK(lifecycle.view("alice").phase == Phase::absent);
    lifecycle.on_event(ContainerEvent{EventKind::started, "c1", "alice", Health::none, {}, {}}, t0 + 1s);
    CHECK(lifecycle.view("alice").phase == Phase::absent);
    CHECK(lifecycle.view("alice").container->health == Health::starting);
    lifecycle.on_event(ContainerEvent{EventKind::health, "c1", "alice", Health::healthy, {}, {}}, t0 + 2s);
    CHECK(lifecycle.view("alice").phase == Phase::ready);
  }
  SECTION("a new container under the name replaces the old one's knowledge") {
    lifecycle.on_snapshot({managed_container("old", ContainerState::running)}, t0);
    CHECK(lifecycle.view("alice").phase == Phase::ready);
    lifecycle.on_event(ContainerEvent{EventKind::created, "new", "alice", Health::none, {}, {}}, t0 + 1s);
    CHECK(lifecycle.view("alice").container->id == "new");
    CHECK(lifecycle.view("alice").phase == Phase::absent);
  }
  SECTION("a destroyed container leaves a failed user failed") {
    auto commands = lifecycle.wake(alice, t0);
    commands = lifecycle.on_result(result_of(commands, Inspected{managed_container("c1", ContainerState::dead)}), t0);
    REQUIRE(lifecycle.view("alice").phase == Phase::failed);
    lifecycle.on_event(ContainerEvent{EventKind::destroyed, "c1", "alice", Health::none, {}, {}}, t0 + 1s);
    CHECK(lifecycle.view("alice").phase == Phase::failed);
    CHECK_FALSE(lifecycle.view("alice").container);
    REQUIRE(lifecycle.view("alice").failure);
    CHECK(lifecycle.view("alice").failure->container->id == "c1");
  }
  SECTION("a death of an unknown container records nothing") {
    lifecycle.on_event(ContainerEvent{EventKind::died, "c7", "carol", Health::none, 1, {}}, t0);
    CHECK(lifecycle.views().empty());
  }
  SECTION("a start during an operation leaves the operation in charge") {
    auto commands = lifecycle.wake(alice, t0);
    commands = lifecycle.on_result(result_of(commands, Inspected{}), t0);
    commands = lifecycle.on_result(result_of(commands, Created{"c1"}), t0);
    lifecycle.on_event(ContainerEvent{EventKind::created, "c1", "alice", Health::none, {}, {}}, t0);
    lifecycle.on_event(ContainerEvent{EventKind::started, "c1", "alice", Health::none, {}, {}}, t0);
    CHECK(lifecycle.view("alice").phase == Phase::starting);
    only<AwaitReady>(lifecycle.on_result(result_of(commands, Started{}), t0));
  }
}

TEST_CASE("snapshots replace what is known about containers", "[lifecycle][snapshot]") {
  Lifecycle lifecycle(test_settings());
  auto bob = managed_container("b1", ContainerState::running, Health::healthy);
  bob.label = "bob";
  bob.username = "bob";
  auto carol = managed_container("k1", ContainerState::running, Health::starting);
  carol.label = "carol";
  auto dave = managed_container("d1", ContainerState::exited);
  dave.label = "dave";
  auto erin = managed_container("e1", ContainerState::running);
  erin.label = "erin";
  auto foreign = managed_container("x1", ContainerState::running);
  foreign.label = "frank";
  foreign.managed = false;
  lifecycle.on_snapshot({bob, carol, dave, erin, foreign}, t0);
  CHECK(lifecycle.view("bob").phase == Phase::ready);          // healthy
  CHECK(lifecycle.view("bob").username == "bob");
  CHECK(lifecycle.view("carol").phase == Phase::absent);       // its check has not passed yet
  CHECK(lifecycle.view("dave").phase == Phase::absent);        // stopped
  REQUIRE(lifecycle.view("dave").container);
  CHECK(lifecycle.view("erin").phase == Phase::ready);         // no health check, running
  CHECK_FALSE(lifecycle.view("frank").container);              // not managed: not the director's
  auto counts = lifecycle.count_by_phase();
  CHECK(counts.size() == 8);
  CHECK(counts[Phase::ready] == 2);
  CHECK(counts[Phase::absent] == 2);
  CHECK(counts[Phase::failed] == 0);

  // A later snapshot without bob: bob's container is gone, bob is no longer ready.
  lifecycle.on_snapshot({carol, dave, erin}, t0 + 1s);
  CHECK(lifecycle.view("bob").phase == Phase::absent);
  CHECK_FALSE(lifecycle.view("bob").container);
  CHECK(lifecycle.views().size() == 3);
}

TEST_CASE("a snapshot with two containers for one label takes the running one", "[lifecycle][snapshot]") {
  Lifecycle lifecycle(test_settings());
  lifecycle.on_snapshot({managed_container("gone", ContainerState::removing), managed_container("live", ContainerState::running),
                         managed_container("old", ContainerState::exited)},
                        t0);
  REQUIRE(lifecycle.view("alice").container);
  CHECK(lifecycle.view("alice").container->id == "live");
  CHECK(lifecycle.view("alice").phase == Phase::ready);
}

TEST_CASE("a snapshot during an operation updates the container but not the operation", "[lifecycle][snapshot]") {
  Lifecycle lifecycle(test_settings());
  auto commands = wake_to_await(lifecycle, t0);
  lifecycle.on_snapshot({managed_container("c1", ContainerState::running, Health::healthy)}, t0 + 1s);
  auto view = lifecycle.view("alice");
  CHECK(view.phase == Phase::waiting_for_ready);
  CHECK(view.in_flight);
  CHECK(view.container->health == Health::healthy);
  lifecycle.on_result(result_of(commands, ReadyResult{ReadyOutcome::ready, std::nullopt}), t0 + 2s);
  CHECK(lifecycle.view("alice").phase == Phase::ready);
}

TEST_CASE("a failed user stays failed through a snapshot unless the container now serves", "[lifecycle][snapshot]") {
  Lifecycle lifecycle(test_settings());
  auto commands = lifecycle.wake(alice, t0);
  lifecycle.on_result(result_of(commands, CallFailure{CallError::unavailable, "down"}), t0);
  lifecycle.on_snapshot({}, t0 + 1s);
  CHECK(lifecycle.view("alice").phase == Phase::failed);
  lifecycle.on_snapshot({managed_container("c1", ContainerState::running)}, t0 + 2s);
  CHECK(lifecycle.view("alice").phase == Phase::ready);
  CHECK_FALSE(lifecycle.view("alice").failure);
}

TEST_CASE("views and phase names", "[lifecycle]") {
  Lifecycle lifecycle(test_settings());
  CHECK(lifecycle.view("nobody").label == "nobody");
  CHECK(lifecycle.view("nobody").phase == Phase::absent);
  CHECK_FALSE(lifecycle.view("nobody").in_flight);
  CHECK(lifecycle.wake(UserIdentity{"x", ""}, t0).empty());  // no label: nothing to name
  lifecycle.wake(alice, t0);
  lifecycle.wake(UserIdentity{"bob", "bob"}, t0);
  const auto all = lifecycle.views();
  REQUIRE(all.size() == 2);
  CHECK(all[0].label == "alice");
  CHECK(all[1].label == "bob");
  CHECK(lifecycle.count_by_phase()[Phase::inspecting] == 2);
  CHECK(to_string(Phase::waiting_for_ready) == "waiting_for_ready");
  CHECK(to_string(Phase::absent) == "absent");
  CHECK(to_string(FailureKind::runtime_unavailable) == "runtime_unavailable");
  CHECK(to_string(FailureKind::not_ready) == "not_ready");
}

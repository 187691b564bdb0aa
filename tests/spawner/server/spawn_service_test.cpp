// SpawnService with a fake runtime (a fake is fine for a unit test of one class: the real
// runtime is DockerRuntime, tested against Podman in tests/spawner/runtime), a real dnsmasq and
// a real loopback listener standing in for the container's port.
#include "server/spawn_service.hpp"

#include "run_until.hpp"
#include "service_fixture.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/strand.hpp>
#include <catch2/catch.hpp>

#include <thread>
#include <vector>

namespace {

using namespace director::spawner;
using director::spawner::test::run_until;

using Fixture = director::spawner::test::ServiceFixture;

const core::UserIdentity alice{"alice", "alice"};

}  // namespace

TEST_CASE("a wake answers at once and the container becomes ready when its port accepts") {
  Fixture fixture;
  auto& service = fixture.make_service();
  const auto view = service.wake(alice);
  CHECK(view.in_flight);
  CHECK(view.phase == core::Phase::inspecting);
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase("alice") == core::Phase::ready; }));
  CHECK(fixture.runtime.creates == 1);
  CHECK(fixture.runtime.starts == 1);
  CHECK(fixture.runtime.containers.at("vscode-alice").state == core::ContainerState::running);
  CHECK(fixture.metrics.serialize({}).find("director_spawner_spawns_total{outcome=\"ready\"} 1") != std::string::npos);
  CHECK(service.operations_in_flight() == 0);
}

TEST_CASE("a runtime command that throws ends the operation as failed, the next wake retries") {
  Fixture fixture;
  fixture.runtime.create_throws = true;
  auto& service = fixture.make_service();
  service.wake(alice);
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase("alice") == core::Phase::failed; }));
  CHECK_FALSE(service.view("alice").in_flight);
  CHECK(service.operations_in_flight() == 0);
  fixture.runtime.create_throws = false;
  service.wake(alice);
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase("alice") == core::Phase::ready; }));
  CHECK(fixture.runtime.creates == 2);
}

TEST_CASE("a command left suspended at shutdown may be destroyed after the service") {
  Fixture fixture;
  fixture.runtime.call_delay = std::chrono::hours(1);
  auto& service = fixture.make_service();
  service.wake(alice);
  fixture.io.poll();
  CHECK(service.operations_in_flight() == 1);
  service.stop();
  fixture.service.reset();  // as main's run() does: the service goes before the io_context
  // The io_context (declared first) destroys the suspended frame last; ASan catches a write into
  // the destroyed service.
}

TEST_CASE("200 concurrent wakes create one container") {
  Fixture fixture;
  fixture.runtime.call_delay = std::chrono::milliseconds(20);
  auto& service = fixture.make_service();
  for (int i = 0; i < 200; ++i) service.wake(alice);
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase("alice") == core::Phase::ready; }));
  for (int i = 0; i < 200; ++i) CHECK(service.wake(alice).phase == core::Phase::ready);
  CHECK(fixture.runtime.creates == 1);
  CHECK(fixture.runtime.starts == 1);
}

TEST_CASE("a container whose port never accepts fails as not ready, with its logs") {
  Fixture fixture;
  fixture.container.close();
  fixture.lifecycle.ready_timeout = std::chrono::milliseconds(300);
  auto& service = fixture.make_service();
  service.wake(alice);
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase("alice") == core::Phase::failed; }));
  const auto view = service.view("alice");
  REQUIRE(view.failure);
  CHECK(view.failure->kind == core::FailureKind::not_ready);
  REQUIRE(run_until(fixture.io, [&] { return !service.logs("alice").empty(); }));
  CHECK(service.logs("alice") == fixture.runtime.logs_text);
}

TEST_CASE("the log lines shown are the current container's, fetched once however often asked") {
  Fixture fixture;
  auto& service = fixture.make_service();
  core::UserView view;
  view.label = "alice";
  view.container = director::spawner::test::managed_running("alice");
  view.container->id = "first";
  fixture.runtime.logs_text = "the first container's line\n";
  service.refresh_logs(view);
  service.refresh_logs(view);
  REQUIRE(run_until(fixture.io, [&] { return !service.logs("alice").empty(); }));
  CHECK(fixture.runtime.log_reads == 1);
  service.refresh_logs(view);  // within logs_refresh: not again
  director::spawner::test::run_for(fixture.io, std::chrono::milliseconds(20));
  CHECK(fixture.runtime.log_reads == 1);

  // A new container under the same label: its lines, never the previous one's.
  view.container->id = "second";
  fixture.runtime.logs_text = "the second container's line\n";
  service.refresh_logs(view);
  CHECK(service.logs("alice").empty());
  REQUIRE(run_until(fixture.io, [&] { return !service.logs("alice").empty(); }));
  CHECK(service.logs("alice") == "the second container's line\n");
  CHECK(fixture.runtime.log_reads == 2);
}

TEST_CASE("a container that exits before it is ready fails as exited") {
  Fixture fixture;
  fixture.container.close();
  fixture.runtime.start_exits = true;
  auto& service = fixture.make_service();
  service.wake(alice);
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase("alice") == core::Phase::failed; }));
  CHECK(service.view("alice").failure->kind == core::FailureKind::exited);
}

TEST_CASE("health readiness waits for the health check") {
  Fixture fixture;
  fixture.container.close();  // the port plays no part
  fixture.lifecycle.container_template.health_check.command = {"true"};
  fixture.runtime.health_after_start = core::Health::starting;
  fixture.runtime.inspects_until_healthy = 3;
  auto& service = fixture.make_service();
  service.wake(alice);
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase("alice") == core::Phase::ready; }));
  CHECK(fixture.runtime.containers.at("vscode-alice").health == core::Health::healthy);
}

TEST_CASE("a health check unknown at startup decides once an inspect shows it, not the port") {
  Fixture fixture;  // the port accepts; neither the template nor (as far as startup knew) the image has a check
  fixture.runtime.health_after_start = core::Health::unhealthy;
  auto& service = fixture.make_service();
  service.wake(alice);
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase("alice") == core::Phase::failed; }));
  CHECK(service.view("alice").failure->kind == core::FailureKind::unhealthy);
}

TEST_CASE("an unhealthy container fails as unhealthy") {
  Fixture fixture;
  fixture.lifecycle.container_template.health_check.command = {"true"};
  fixture.runtime.health_after_start = core::Health::unhealthy;
  auto& service = fixture.make_service();
  service.wake(alice);
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase("alice") == core::Phase::failed; }));
  CHECK(service.view("alice").failure->kind == core::FailureKind::unhealthy);
}

TEST_CASE("a runtime that is down fails the wake, the next wake after it is back succeeds") {
  Fixture fixture;
  fixture.runtime.available = false;
  auto& service = fixture.make_service();
  service.wake(alice);
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase("alice") == core::Phase::failed; }));
  CHECK(service.view("alice").failure->kind == core::FailureKind::runtime_unavailable);
  fixture.runtime.available = true;
  service.wake(alice);
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase("alice") == core::Phase::ready; }));
  CHECK(fixture.runtime.creates == 1);
}

TEST_CASE("a container that dies once ready is started again by the next wake") {
  Fixture fixture;
  auto& service = fixture.make_service();
  service.wake(alice);
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase("alice") == core::Phase::ready; }));
  auto& container = fixture.runtime.containers.at("vscode-alice");
  container.state = core::ContainerState::exited;
  service.on_event(core::ContainerEvent{core::EventKind::died, container.id, "alice", core::Health::none, 137, {}});
  CHECK(fixture.phase("alice") == core::Phase::absent);
  service.wake(alice);
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase("alice") == core::Phase::ready; }));
  CHECK(fixture.runtime.creates == 1);
  CHECK(fixture.runtime.starts == 2);
}

TEST_CASE("a stop ends readiness waits and starts no command") {
  Fixture fixture;
  fixture.container.close();
  auto& service = fixture.make_service();
  service.wake(alice);
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase("alice") == core::Phase::waiting_for_ready; }));
  service.stop();
  REQUIRE(run_until(fixture.io, [&] { return service.operations_in_flight() == 0; }, std::chrono::milliseconds(2000)));
}

TEST_CASE("200 wakes from four threads on a four-thread context create one container") {
  Fixture fixture;
  fixture.runtime.call_delay = std::chrono::milliseconds(5);
  // The runtime is awaited from one strand (DockerRuntime's rule), as main.cpp does.
  fixture.service = std::make_unique<server::SpawnService>(boost::asio::make_strand(fixture.io), fixture.lifecycle,
                                                           fixture.settings, fixture.runtime, fixture.resolver,
                                                           fixture.metrics);
  auto work = boost::asio::make_work_guard(fixture.io);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&] { fixture.io.run(); });
  std::vector<std::thread> wakers;
  for (int t = 0; t < 4; ++t) {
    wakers.emplace_back([&] {
      for (int i = 0; i < 50; ++i) fixture.service->wake(alice);
    });
  }
  for (auto& waker : wakers) waker.join();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (fixture.phase("alice") != core::Phase::ready && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const auto phase = fixture.phase("alice");
  work.reset();
  fixture.service->stop();
  fixture.io.stop();
  for (auto& thread : threads) thread.join();
  CHECK(phase == core::Phase::ready);
  CHECK(fixture.runtime.creates == 1);
}

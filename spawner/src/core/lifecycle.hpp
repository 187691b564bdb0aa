// The per-user container lifecycle, as a state machine that does no I/O (like the agent's
// Director returning a CheckPlan): every input returns the runtime commands to run, and their
// results come back as inputs. The I/O layer (server/spawn_service) runs the commands against
// a runtime::Runtime and feeds back what happened; the page and the event feed read views.
//
// Per user (by label), at most one operation is in flight however many requests arrive: a wake
// while one runs returns no command. Each command carries the operation's number; a result of
// an operation that is no longer current (the user's state was reset by a runtime event or a
// snapshot meanwhile) is ignored.
//
// An operation: inspect the container by name, then
//   absent                -> create (pull first when the image is missing and pulling is on) -> start -> await ready
//   exists, stopped       -> start -> await ready
//   exists, running       -> await ready
//   exists, not managed   -> failed (name_taken): never touched
// In detail:
// - inspect: not_found is "absent"; any other CallFailure fails it (runtime_unavailable). A container
//   that is created/exited/unknown is started; running or restarting is awaited; paused, dead
//   or being removed fails it (exited: the runtime says why).
// - create: conflict (another spawner created it meanwhile) -> inspect once more, then as
//   above (a second conflict: limits_refused); image_missing -> pull when pulling is on, then
//   create once more (pull fails: image_missing, the runtime's message); refused or not_found
//   (e.g. a network the template names does not exist): limits_refused.
// - start: refused or conflict: limits_refused; not_found (removed meanwhile): exited.
// - await ready: Readiness::health_check when the template has a check, the image has one
//   (LifecycleSettings::image_has_health_check) or the inspected container reports a Health
//   other than none; else Readiness::port. Deadline: `now` of the input that issues it + ready_timeout.
//   ReadyOutcome ready -> ready; exited -> failed(exited); unhealthy -> failed(unhealthy);
//   timed_out -> failed(not_ready).
// - unavailable anywhere: failed(runtime_unavailable).
// Runtime events (on_event) of the user's current container: died or stopped while
// waiting_for_ready -> failed(exited, the event's exit code and error: so the kubelet's
// "cannot pull" reaches the page) and the pending AwaitReady result is ignored; health
// unhealthy while waiting: nothing (AwaitReady reports it, once); destroyed -> absent (an
// operation in flight past creation ends). Events of another container id are ignored, except
// created/started (a new container under the user's name).
// Outside an operation, events and snapshots keep one rule: a user whose container is running
// with health none or healthy is ready (started by anyone: the director finds it); a ready
// user whose container is not (stopped, died, gone, or its health check turned unhealthy) is
// absent, so the next wake inspects it again and awaits it or shows why it fails. A start
// resets a known health to starting (as the runtime does); a creation, a start event or a
// start the operation made clears the container's error, OOM flag and exit code (a died
// event's set them). A failed user stays failed until its container
// serves. Such a ready user is not checked: a wake of theirs (HAProxy sent them
// here, so the container is not alive for the director) starts an operation, as does one later
// than ready_check_valid_for after the last passed check.
// Not thread-safe: the I/O layer keeps it on one strand.
#pragma once

#include "core/container.hpp"
#include "core/container_template.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace director::spawner::core {

// Where a user's container is on its way to serving: the loading page and /status show it.
enum class Phase : std::uint8_t {
  absent,             // nothing in flight, no running container known
  inspecting,         // asking the runtime what exists under the user's name
  pulling,            // pulling the image
  creating,           // creating the container (and its volume)
  starting,           // starting it
  waiting_for_ready,  // started: waiting for its health check, or its port when it has none
  ready,              // serving: the director will route the user to it
  failed,             // the last operation failed: see Failure
};
std::string_view to_string(Phase phase) noexcept;

// Why an operation failed: each has its own page and log reason (to_string is that reason).
enum class FailureKind : std::uint8_t {
  runtime_unavailable,  // the runtime API did not answer, or answered 5xx
  image_missing,        // the image is not there and pulling is off or failed
  name_taken,           // a container of that name exists that this project did not create
  limits_refused,       // the runtime refused to create or start it (4xx: limits, bad template)
  exited,               // it stopped before it was ready
  unhealthy,            // its health check says unhealthy
  not_ready,            // running, but not ready within ready_timeout
};
std::string_view to_string(FailureKind kind) noexcept;

struct Failure {
  FailureKind kind = FailureKind::runtime_unavailable;
  std::string detail;               // the runtime's message, for the page and the log
  std::optional<ContainerStatus> container;  // what the runtime last said about the container
};

// How readiness is decided: the container's own health check when it has one, else its port.
enum class Readiness : std::uint8_t { health_check, port };

// --- Commands: what the I/O layer must do. Each result goes back through on_result. ---
struct InspectContainer { std::string name; };
struct PullImage { std::string image; };
struct CreateContainer { ContainerSpec spec; };
// `user`: whose container it is (the record's username and label), as CreateContainer's spec
// is rendered for: a runtime that makes anything at start (Kubernetes' Pod) makes it for them.
struct StartContainer {
  std::string id;
  UserIdentity user;
};
// Wait until the container is ready (Readiness), has exited, or the deadline passes; the
// I/O layer polls the runtime (health) or connects to <container host>:<port> (port).
struct AwaitReady {
  std::string id;
  Readiness readiness = Readiness::port;
  TimePoint deadline;
};
using Action = std::variant<InspectContainer, PullImage, CreateContainer, StartContainer, AwaitReady>;

struct Command {
  std::string label;
  std::uint64_t operation = 0;  // echo it back in the Result
  Action action;
};

// --- Results of commands. ---
// A runtime call that failed, classified by the runtime client (runtime/runtime.hpp maps its
// errors onto these).
enum class CallError : std::uint8_t { unavailable, not_found, conflict, refused, image_missing };
struct CallFailure {
  CallError error = CallError::unavailable;
  std::string message;
};

struct Inspected { std::optional<ContainerStatus> container; };  // nullopt: no such container
struct Pulled {};
struct Created { std::string id; };
struct Started {};  // also when it was already running
enum class ReadyOutcome : std::uint8_t { ready, exited, unhealthy, timed_out };
struct ReadyResult {
  ReadyOutcome outcome = ReadyOutcome::ready;
  std::optional<ContainerStatus> container;  // the last inspect, for the failure page
};
using ResultValue = std::variant<CallFailure, Inspected, Pulled, Created, Started, ReadyResult>;

struct Result {
  std::string label;
  std::uint64_t operation = 0;
  ResultValue value;
};

// The configured members come from config::Config (main.cpp) and have no defaults of their own.
struct LifecycleSettings {
  ContainerTemplate container_template;
  bool pull_missing_images = false;             // else: image_missing at once
  std::chrono::milliseconds ready_timeout{};
  // A navigation this soon after a failure shows the failure again instead of retrying.
  std::chrono::milliseconds retry_after{2000};
  // How long a passed readiness check (an AwaitReady that ended ready) stands: a wake from a
  // ready user later than this, or whose readiness no check confirmed (a container found
  // running through an event or a snapshot), starts an operation (inspect, await ready) -
  // HAProxy sending the user here is evidence the container is not alive.
  std::chrono::milliseconds ready_check_valid_for{30'000};
  // Whether the template's image has a health check of its own (Runtime::image_has_health_check,
  // asked by the I/O layer): a container created from it is then awaited by its health check.
  bool image_has_health_check = false;
};

// What the page, /status and the event feed see of one user.
struct UserView {
  std::string label;
  std::string username;
  Phase phase = Phase::absent;
  TimePoint phase_since{};
  std::optional<Failure> failure;   // set when phase == failed
  std::optional<ContainerStatus> container;  // the runtime's last word on the user's container
  bool in_flight = false;
  // When the current (or last) operation started: the wake that began it. Time to ready is
  // measured from here. Epoch (TimePoint{}) when no operation ever ran.
  TimePoint operation_started{};
  // How readiness is awaited; set while phase == waiting_for_ready.
  std::optional<Readiness> readiness;
  // When a readiness check last passed (an AwaitReady ended ready); unset when none did since
  // the container last changed (a ready phase from an event or a snapshot only).
  std::optional<TimePoint> ready_checked;
};

class Lifecycle {
 public:
  explicit Lifecycle(LifecycleSettings settings);

  // A page navigation from `user` (the wake policy allowed it). Starts an operation unless one
  // is in flight, a readiness check passed less than ready_check_valid_for ago (the user is
  // ready), or it failed less than retry_after ago.
  std::vector<Command> wake(const UserIdentity& user, TimePoint now);

  // The result of a command this Lifecycle returned. Returns the next commands.
  std::vector<Command> on_result(const Result& result, TimePoint now);

  // A runtime event for a managed container (the rules in the comment at the top). Returns
  // commands when an operation in flight must react: none does today (an operation the event
  // ends simply ignores its pending result), but the I/O layer runs whatever comes back.
  std::vector<Command> on_event(const ContainerEvent& event, TimePoint now);

  // The full list of managed containers (at startup and after the event stream reconnects):
  // replaces what is known about containers; operations in flight go on.
  void on_snapshot(const std::vector<ContainerStatus>& containers, TimePoint now);

  // The user's view; phase absent for a label never seen.
  UserView view(std::string_view label) const;
  // Every known user, by label.
  std::vector<UserView> views() const;
  // Users by phase, for the metrics gauge: every phase, zero included. Users without an
  // operation, failure or known container are not kept, so `absent` counts only those whose
  // container is known (e.g. stopped).
  std::map<Phase, std::size_t> count_by_phase() const;

  const LifecycleSettings& settings() const noexcept { return settings_; }

 private:
  // What an operation waits for: the result type that may come back.
  enum class Step : std::uint8_t { none, inspect, pull, create, start, await_ready };
  struct Record {
    std::string username;
    Phase phase = Phase::absent;
    TimePoint phase_since{};
    std::optional<Failure> failure;
    std::optional<ContainerStatus> container;
    std::uint64_t operation = 0;  // the current operation; 0 or ended: results are stale
    Step step = Step::none;       // none: no operation in flight
    TimePoint operation_started{};
    bool inspected_after_conflict = false;
    bool pulled = false;
    std::optional<Readiness> readiness;
    std::optional<TimePoint> ready_checked;
  };
  using Records = std::map<std::string, Record, std::less<>>;

  static void enter(Record& record, Phase phase, TimePoint now);
  void fail(Record& record, FailureKind kind, std::string detail, TimePoint now);
  static void end_operation(Record& record);
  std::vector<Command> issue(const std::string& label, Record& record, Phase phase, Step step, Action action,
                             TimePoint now);
  std::vector<Command> after_inspect(const std::string& label, Record& record, const Inspected& inspected,
                                     TimePoint now);
  std::vector<Command> create(const std::string& label, Record& record, TimePoint now);
  std::vector<Command> await_ready(const std::string& label, Record& record, Readiness readiness, TimePoint now);
  std::vector<Command> on_call_failure(const std::string& label, Record& record, const CallFailure& failure,
                                       TimePoint now);
  // Outside an operation: the phase that the container's state implies (the rule above).
  static void settle(Record& record, TimePoint now);
  static UserView view_of(const std::string& label, const Record& record);
  void forget_if_empty(Records::iterator at);

  LifecycleSettings settings_;
  Records records_;  // by label
  std::uint64_t last_operation_ = 0;
};

}  // namespace director::spawner::core

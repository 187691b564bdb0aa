#include "core/lifecycle.hpp"

#include <utility>

namespace director::spawner::core {

std::string_view to_string(Phase phase) noexcept {
  switch (phase) {
    case Phase::absent: break;
    case Phase::inspecting: return "inspecting";
    case Phase::pulling: return "pulling";
    case Phase::creating: return "creating";
    case Phase::starting: return "starting";
    case Phase::waiting_for_ready: return "waiting_for_ready";
    case Phase::ready: return "ready";
    case Phase::failed: return "failed";
  }
  return "absent";
}

std::string_view to_string(FailureKind kind) noexcept {
  switch (kind) {
    case FailureKind::runtime_unavailable: break;
    case FailureKind::image_missing: return "image_missing";
    case FailureKind::name_taken: return "name_taken";
    case FailureKind::limits_refused: return "limits_refused";
    case FailureKind::exited: return "exited";
    case FailureKind::unhealthy: return "unhealthy";
    case FailureKind::not_ready: return "not_ready";
  }
  return "runtime_unavailable";
}

namespace {

// Why a container stopped, for the failure page and the log.
std::string exit_detail(const std::optional<ContainerStatus>& container, std::string_view what) {
  std::string detail(what);
  if (!container) return detail;
  detail += " (exit code " + std::to_string(container->exit_code);
  if (container->oom_killed) detail += ", killed for lack of memory";
  if (!container->error.empty()) detail += ", " + container->error;
  detail += ')';
  return detail;
}

bool is_ready(const ContainerStatus& container) {
  return container.state == ContainerState::running &&
         (container.health == Health::none || container.health == Health::healthy);
}

}  // namespace

Lifecycle::Lifecycle(LifecycleSettings settings) : settings_(std::move(settings)) {}

void Lifecycle::enter(Record& record, Phase phase, TimePoint now) {
  if (record.phase != phase) record.phase_since = now;
  record.phase = phase;
  if (phase != Phase::failed) record.failure.reset();
  if (phase != Phase::ready) record.ready_checked.reset();
}

void Lifecycle::end_operation(Record& record) { record.step = Step::none; }

void Lifecycle::settle(Record& record, TimePoint now) {
  if (record.step != Step::none) return;
  if (record.container && is_ready(*record.container)) {
    enter(record, Phase::ready, now);
  } else if (record.phase == Phase::ready) {
    enter(record, Phase::absent, now);
  }
}

void Lifecycle::fail(Record& record, FailureKind kind, std::string detail, TimePoint now) {
  end_operation(record);
  enter(record, Phase::failed, now);
  record.failure = Failure{kind, std::move(detail), record.container};
}

std::vector<Command> Lifecycle::issue(const std::string& label, Record& record, Phase phase, Step step,
                                      Action action, TimePoint now) {
  enter(record, phase, now);
  record.step = step;
  std::vector<Command> commands;
  commands.push_back(Command{label, record.operation, std::move(action)});
  return commands;
}

std::vector<Command> Lifecycle::wake(const UserIdentity& user, TimePoint now) {
  if (user.label.empty()) return {};
  auto& record = records_[user.label];
  if (!user.username.empty()) record.username = user.username;
  if (record.step != Step::none) return {};
  if (record.phase == Phase::ready && record.ready_checked &&
      now - *record.ready_checked < settings_.ready_check_valid_for) {
    return {};
  }
  if (record.phase == Phase::failed && now - record.phase_since < settings_.retry_after) return {};
  record.operation = ++last_operation_;
  record.operation_started = now;
  record.inspected_after_conflict = false;
  record.pulled = false;
  record.readiness.reset();
  return issue(user.label, record, Phase::inspecting, Step::inspect,
               InspectContainer{container_name(settings_.container_template, user.label)}, now);
}

std::vector<Command> Lifecycle::create(const std::string& label, Record& record, TimePoint now) {
  return issue(label, record, Phase::creating, Step::create,
               CreateContainer{render(settings_.container_template, UserIdentity{record.username, label})}, now);
}

std::vector<Command> Lifecycle::await_ready(const std::string& label, Record& record, Readiness readiness,
                                            TimePoint now) {
  record.readiness = readiness;
  const std::string id = record.container ? record.container->id : std::string();
  return issue(label, record, Phase::waiting_for_ready, Step::await_ready,
               AwaitReady{id, readiness, now + settings_.ready_timeout}, now);
}

std::vector<Command> Lifecycle::after_inspect(const std::string& label, Record& record, const Inspected& inspected,
                                              TimePoint now) {
  record.container = inspected.container;
  if (!inspected.container) return create(label, record, now);
  const auto& container = *inspected.container;
  if (!container.managed) {
    fail(record, FailureKind::name_taken,
         "a container named " + container.name + " exists that the director did not create", now);
    return {};
  }
  const bool has_check = !settings_.container_template.health_check.command.empty() ||
                         settings_.image_has_health_check || container.health != Health::none;
  const auto readiness = has_check ? Readiness::health_check : Readiness::port;
  switch (container.state) {
    case ContainerState::running:
    case ContainerState::restarting:
      return await_ready(label, record, readiness, now);
    case ContainerState::created:
    case ContainerState::exited:
    case ContainerState::unknown:
      record.readiness = readiness;  // kept for after the start
      return issue(label, record, Phase::starting, Step::start, StartContainer{container.id, UserIdentity{record.username, label}}, now);
    case ContainerState::paused:
    case ContainerState::dead:
    case ContainerState::removing:
      break;
  }
  fail(record, FailureKind::exited,
       "the container is " + std::string(to_string(container.state)) + " and cannot be started", now);
  return {};
}

std::vector<Command> Lifecycle::on_call_failure(const std::string& label, Record& record,
                                                const CallFailure& failure, TimePoint now) {
  if (failure.error == CallError::unavailable) {
    fail(record, FailureKind::runtime_unavailable, failure.message, now);
    return {};
  }
  switch (record.step) {
    case Step::inspect:
      if (failure.error == CallError::not_found) return after_inspect(label, record, Inspected{}, now);
      fail(record, FailureKind::runtime_unavailable, failure.message, now);
      return {};
    case Step::create:
      if (failure.error == CallError::conflict && !record.inspected_after_conflict) {
        record.inspected_after_conflict = true;
        return issue(label, record, Phase::inspecting, Step::inspect,
                     InspectContainer{container_name(settings_.container_template, label)}, now);
      }
      if (failure.error == CallError::image_missing) {
        if (settings_.pull_missing_images && !record.pulled) {
          record.pulled = true;
          return issue(label, record, Phase::pulling, Step::pull, PullImage{settings_.container_template.image}, now);
        }
        fail(record, FailureKind::image_missing, failure.message, now);
        return {};
      }
      fail(record, FailureKind::limits_refused, failure.message, now);
      return {};
    case Step::pull:
      fail(record, FailureKind::image_missing, failure.message, now);
      return {};
    case Step::start:
      if (failure.error == CallError::not_found) {
        record.container.reset();
        fail(record, FailureKind::exited, "the container was removed before it started: " + failure.message, now);
        return {};
      }
      fail(record, FailureKind::limits_refused, failure.message, now);
      return {};
    case Step::await_ready:
    case Step::none:
      break;
  }
  fail(record, FailureKind::runtime_unavailable, failure.message, now);
  return {};
}

std::vector<Command> Lifecycle::on_result(const Result& result, TimePoint now) {
  const auto found = records_.find(result.label);
  if (found == records_.end()) return {};
  const std::string& label = found->first;
  Record& record = found->second;
  if (record.step == Step::none || result.operation != record.operation) return {};  // stale

  if (const auto* failure = std::get_if<CallFailure>(&result.value)) {
    return on_call_failure(label, record, *failure, now);
  }
  switch (record.step) {
    case Step::inspect:
      if (const auto* inspected = std::get_if<Inspected>(&result.value)) {
        return after_inspect(label, record, *inspected, now);
      }
      break;
    case Step::pull:
      if (std::holds_alternative<Pulled>(result.value)) return create(label, record, now);
      break;
    case Step::create:
      if (const auto* created = std::get_if<Created>(&result.value)) {
        ContainerStatus container;
        container.id = created->id;
        container.name = container_name(settings_.container_template, label);
        container.managed = true;
        container.label = label;
        container.username = record.username;
        container.state = ContainerState::created;
        record.container = std::move(container);
        const bool has_check = !settings_.container_template.health_check.command.empty() ||
                               settings_.image_has_health_check;
        record.readiness = has_check ? Readiness::health_check : Readiness::port;
        return issue(label, record, Phase::starting, Step::start, StartContainer{created->id, UserIdentity{record.username, label}}, now);
      }
      break;
    case Step::start:
      if (std::holds_alternative<Started>(result.value)) {
        // A new run: what the last one ended with is not this one's (on Kubernetes the new Pod
        // has the old one's name, so no created event of a new id clears it).
        if (record.container) {
          record.container->state = ContainerState::running;
          record.container->error.clear();
          record.container->oom_killed = false;
          record.container->exit_code = 0;
        }
        return await_ready(label, record, record.readiness.value_or(Readiness::port), now);
      }
      break;
    case Step::await_ready:
      if (const auto* ready = std::get_if<ReadyResult>(&result.value)) {
        if (ready->container) record.container = ready->container;
        switch (ready->outcome) {
          case ReadyOutcome::ready:
            end_operation(record);
            enter(record, Phase::ready, now);
            record.ready_checked = now;
            return {};
          case ReadyOutcome::exited:
            fail(record, FailureKind::exited, exit_detail(record.container, "it exited before it was ready"), now);
            return {};
          case ReadyOutcome::unhealthy:
            fail(record, FailureKind::unhealthy, "its health check reports unhealthy", now);
            return {};
          case ReadyOutcome::timed_out:
            fail(record, FailureKind::not_ready,
                 "not ready within " + std::to_string(settings_.ready_timeout.count()) + " ms", now);
            return {};
        }
      }
      break;
    case Step::none:
      break;
  }
  return {};  // a result of another kind than the command asked for: not this operation's
}

std::vector<Command> Lifecycle::on_event(const ContainerEvent& event, TimePoint now) {
  auto found = records_.find(event.label);
  if (found == records_.end()) {
    if (event.label.empty() || (event.kind != EventKind::created && event.kind != EventKind::started)) return {};
    found = records_.try_emplace(event.label).first;
  }
  Record& record = found->second;
  const bool same_container = !record.container || record.container->id.empty() || event.id.empty() ||
                              record.container->id == event.id;
  if (!same_container) {
    if (event.kind != EventKind::created && event.kind != EventKind::started) return {};  // an older container
    record.container.reset();
  }
  // A container id is created once: its create event, when the id is already known (the
  // operation that created it is past that, the runtime's events come after the fact), is old
  // news and must not roll the container back to "created" (that ended `ready`, and the next
  // wake checked a container already checked).
  if (event.kind == EventKind::created && record.container && !event.id.empty() && record.container->id == event.id) {
    return {};
  }
  if (!record.container && event.kind != EventKind::destroyed) {
    ContainerStatus container;
    container.id = event.id;
    container.managed = true;
    container.label = event.label;
    container.username = record.username;
    container.name = container_name(settings_.container_template, event.label);
    record.container = std::move(container);
  }
  switch (event.kind) {
    case EventKind::created:
      record.container->state = ContainerState::created;
      record.container->error.clear();
      break;
    case EventKind::started: {
      // The runtime announces a start after the fact: the start of an operation whose
      // readiness check has already passed can arrive with the user ready and checked, and
      // says nothing new then (seen with Podman: a container listening 20 ms after its start
      // is checked before the event comes). Any other start is a run no check has seen: a
      // restart comes after a stopped or died event, which ended `ready`.
      const bool checked_run = record.phase == Phase::ready && record.ready_checked;
      record.container->state = ContainerState::running;
      record.container->error.clear();  // a run: why an earlier one did not is old news
      if (!checked_run) {
        record.ready_checked.reset();
        if (record.container->health != Health::none) record.container->health = Health::starting;
      }
      break;
    }
    case EventKind::stopped:
    case EventKind::died:
      record.container->state = ContainerState::exited;
      if (event.exit_code) record.container->exit_code = *event.exit_code;
      if (!event.error.empty()) record.container->error = event.error;  // the failure page's
      if (record.step == Step::await_ready) {
        fail(record, FailureKind::exited, exit_detail(record.container, "it exited before it was ready"), now);
      }
      break;
    case EventKind::health:
      record.container->health = event.health;
      break;
    case EventKind::destroyed:
      record.container.reset();
      if (record.step == Step::start || record.step == Step::await_ready) end_operation(record);
      if (record.step == Step::none && record.phase != Phase::failed) enter(record, Phase::absent, now);
      break;
  }
  settle(record, now);
  forget_if_empty(found);
  return {};
}

void Lifecycle::on_snapshot(const std::vector<ContainerStatus>& containers, TimePoint now) {
  std::map<std::string_view, const ContainerStatus*, std::less<>> by_label;
  for (const auto& container : containers) {
    if (!container.managed || container.label.empty()) continue;
    auto& known = by_label[container.label];
    // Two containers for one label (one being removed, say): the running one is the user's.
    if (!known || (known->state != ContainerState::running && container.state == ContainerState::running)) {
      known = &container;
    }
  }
  for (const auto& [label, container] : by_label) {
    auto& record = records_[std::string(label)];
    if (record.username.empty()) record.username = container->username;
  }
  for (auto at = records_.begin(); at != records_.end();) {
    auto& record = at->second;
    const auto known = by_label.find(at->first);
    if (known == by_label.end()) {
      record.container.reset();
    } else {
      record.container = *known->second;
    }
    settle(record, now);
    const auto next = std::next(at);
    forget_if_empty(at);
    at = next;
  }
}

void Lifecycle::forget_if_empty(Records::iterator at) {
  const auto& record = at->second;
  if (record.step == Step::none && record.phase == Phase::absent && !record.failure && !record.container) {
    records_.erase(at);
  }
}

UserView Lifecycle::view_of(const std::string& label, const Record& record) {
  UserView view;
  view.label = label;
  view.username = record.username;
  view.phase = record.phase;
  view.phase_since = record.phase_since;
  view.failure = record.failure;
  view.container = record.container;
  view.in_flight = record.step != Step::none;
  view.operation_started = record.operation_started;
  if (record.phase == Phase::waiting_for_ready) view.readiness = record.readiness;
  view.ready_checked = record.ready_checked;
  return view;
}

UserView Lifecycle::view(std::string_view label) const {
  const auto found = records_.find(label);
  if (found == records_.end()) {
    UserView view;
    view.label = std::string(label);
    return view;
  }
  return view_of(found->first, found->second);
}

std::vector<UserView> Lifecycle::views() const {
  std::vector<UserView> all;
  all.reserve(records_.size());
  for (const auto& [label, record] : records_) all.push_back(view_of(label, record));
  return all;
}

std::map<Phase, std::size_t> Lifecycle::count_by_phase() const {
  std::map<Phase, std::size_t> counts;
  for (auto phase : {Phase::absent, Phase::inspecting, Phase::pulling, Phase::creating, Phase::starting,
                     Phase::waiting_for_ready, Phase::ready, Phase::failed}) {
    counts[phase] = 0;
  }
  for (const auto& [label, record] : records_) ++counts[record.phase];
  return counts;
}

}  // namespace director::spawner::core

#include "server/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <string>

namespace director::server {
namespace {

std::atomic<config::LogLevel> current_level{config::LogLevel::info};
std::mutex output_mutex;

std::string_view level_name(config::LogLevel level) {
  switch (level) {
    case config::LogLevel::error: return "error";
    case config::LogLevel::warn: return "warn";
    case config::LogLevel::info: return "info";
    case config::LogLevel::debug: return "debug";
  }
  return "info";
}

}  // namespace

void set_log_level(config::LogLevel level) noexcept { current_level.store(level, std::memory_order_relaxed); }

bool log_enabled(config::LogLevel level) noexcept {
  return static_cast<int>(level) <= static_cast<int>(current_level.load(std::memory_order_relaxed));
}

void log(config::LogLevel level, std::string_view line) {
  if (!log_enabled(level)) return;
  const auto now = std::chrono::system_clock::now();
  const auto seconds = std::chrono::system_clock::to_time_t(now);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char stamp[32];
  const auto length = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  const std::lock_guard lock(output_mutex);
  std::fprintf(stderr, "%.*s.%03dZ %s %.*s\n", static_cast<int>(length), stamp, static_cast<int>(millis),
               level_name(level).data(), static_cast<int>(line.size()), line.data());
}

}  // namespace director::server

// Line-oriented logging to stderr, safe from any thread. Nothing is logged per request at the
// default level: only startup, state changes and errors.
#pragma once

#include "config/config.hpp"

#include <string_view>

namespace director::server {

void set_log_level(config::LogLevel level) noexcept;
bool log_enabled(config::LogLevel level) noexcept;
void log(config::LogLevel level, std::string_view line);

}  // namespace director::server

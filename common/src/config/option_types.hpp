// The vocabulary every program's configuration shares (no JSON here: a program's config.hpp
// includes this, its config.cpp includes option_table.hpp): where a value came from, what the
// command line asks for, and how the environment is read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace director::config_table {

// Where an option's value came from. Later sources win: default < file < environment < flag.
enum class Source : std::uint8_t { default_value, file, environment, flag };
std::string_view to_string(Source source) noexcept;

// Where each value came from, by option key; an option absent here has its default.
using Sources = std::map<std::string, Source, std::less<>>;

// The largest configuration file read, in bytes.
inline constexpr std::size_t max_config_file_size = 1024 * 1024;

// What the command line asks for. help_markdown prints the option reference as Markdown.
// health asks the program running with this configuration for GET /readyz on its http_listen.
// A program offers the commands it lists in its Program (option_table.hpp); run is the default.
enum class Command : std::uint8_t { run, help, help_markdown, version, check_config, health };

template <typename Config>
struct Invocation {
  Command command = Command::run;
  Config config;
};

// The number of I/O threads to run for a `threads` option: itself, or the core count when 0.
unsigned effective_threads(unsigned configured) noexcept;

// Looks up an environment variable; std::nullopt when unset.
using EnvironmentLookup = std::function<std::optional<std::string>(std::string_view name)>;
EnvironmentLookup process_environment();

// A value refused by an option: what the option accepts (all of it, never only the rule the
// value broke), without the option's name and the value (the engine adds them).
using Failure = std::optional<std::string>;
inline constexpr Failure accepted = std::nullopt;

}  // namespace director::config_table

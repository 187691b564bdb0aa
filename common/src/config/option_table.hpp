// The option-table engine: one table of options per program (the agent's, the spawner's), each
// option described once, drives parsing from the three sources (a JSON file, the environment,
// flags; precedence default < file < environment < flag), validation with messages that name
// the option, the value and what is accepted, --help, the Markdown reference (--help-markdown)
// and the effective configuration as JSON with the source of each value (--check-config).
//
// Every source hands an option's `apply` text: a file's JSON value is converted to text first
// (file_text), so the file, the environment and the flags share validation. A file key takes the
// JSON type that `show` prints for the default (string, integer, boolean or array of strings), so
// the options in --check-config's output are valid file syntax. `apply` returns, on any refusal,
// the whole of what the option accepts (never only the rule the value broke): --help-markdown
// prints that text as the option's accepted values.
//
// Templated over the program's Config, which must be default-constructible (its defaults are the
// options' defaults) and have a member `Sources sources`.
#pragma once

#include "config/option_types.hpp"
#include "config/values.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <functional>
#include <iomanip>
#include <limits>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace director::config_table {

template <typename Config>
struct Option {
  std::string_view key;          // JSON key in the configuration file and --check-config output
  std::string_view environment;  // environment variable
  std::string_view flag;         // --flag VALUE
  std::string_view help;
  std::function<Failure(Config&, std::string_view)> apply;
  std::function<nlohmann::ordered_json(const Config&)> show;
  bool secret = false;           // redacted by values() when set to a non-empty value
  // The value is a string or a JSON array spelled as JSON text in the environment and on the
  // command line ("[\"a\",\"b,c\"]"); in the file, a string is passed as is and an array as its
  // JSON text, so array entries may hold commas. `apply` parses the text.
  bool json_text = false;
};

// A command-line flag that takes no value and selects a command.
struct CommandFlag {
  std::string_view flag;
  Command command;
  std::string help;  // for --help; lines after the first are indented under the first
};

// --help, --help-markdown, --version, --check-config and --health, which every program has
// (`noun` names the program in --health's help: "agent").
std::vector<CommandFlag> standard_commands(std::string_view noun);

// What differs between programs besides their options.
struct Program {
  std::string_view name;                  // "director-agent"
  std::string_view description;           // --help's lines under the usage line
  std::vector<CommandFlag> commands;      // the command flags it accepts ("-h" is --help's alias)
  // Keys to_json prints that are not options.
  std::vector<std::string_view> output_only_keys = {"effective_threads", "version", "sources"};
  std::string_view config_key = "config"; // the option naming the configuration file
};

// The help's lines about the commands, one flag each, under the usage line and the description.
void print_help_header(std::ostream& out, const Program& program);

// --- helpers the tables share (option_table.cpp) ---------------------------------------------

// A value from the environment or the command line, as messages show it: quoted, control bytes
// escaped (a message is one line and sends nothing to the terminal), at most 80 bytes.
std::string in_quotes(std::string_view value);
// A JSON value in a message: compact, escaped to ASCII, and short.
std::string shown(const nlohmann::ordered_json& value);

enum class JsonKind : std::uint8_t { text, integer, boolean, list };
JsonKind json_kind(const nlohmann::ordered_json& shape);
std::string_view describe(JsonKind kind);   // "a string", "an integer", ...
std::string_view type_name(JsonKind kind);  // "string", "integer", ...
// The text form of a file value, as the environment variable would spell it: lists joined with
// commas. std::nullopt with `problem` empty: the JSON type is wrong; with `problem` set: the
// value is refused (`problem` says what is accepted).
std::optional<std::string> file_text(const nlohmann::ordered_json& value, JsonKind kind, std::string& problem);

// A json_text option's file value as text: a string as is, an array as its JSON text;
// std::nullopt for any other type.
std::optional<std::string> json_text_of(const nlohmann::ordered_json& value);

std::size_t edit_distance(std::string_view a, std::string_view b);

// The file's JSON object (at most max_config_file_size bytes, no duplicate key), or what is
// wrong with the file.
std::variant<nlohmann::ordered_json, std::string> read_json_object(const std::string& path);

// A Markdown table cell: pipes escaped, no line breaks, and no HTML ("PREFIX-<label>" would
// otherwise be read as a <label> element and vanish).
std::string markdown_cell(std::string_view text);

// --- the engine ---------------------------------------------------------------------------------

template <typename Config>
class OptionTable {
 public:
  using Entry = Option<Config>;
  // Checks that hold between options, after every source applied.
  using Consistency = std::function<Failure(const Config&)>;

  OptionTable(Program program, std::vector<Entry> options)
      : program_(std::move(program)), options_(std::move(options)) {}

  const Program& program() const noexcept { return program_; }
  std::span<const Entry> options() const noexcept { return options_; }

  const Entry* find(std::string_view key) const {
    const auto found = std::find_if(options_.begin(), options_.end(), [&](const Entry& o) { return o.key == key; });
    return found == options_.end() ? nullptr : &*found;
  }

  // Parses arguments (without argv[0]), the environment and the configuration file they name. On
  // failure, the message names the offending flag, variable or file key, the value, and what is
  // accepted; for a file that cannot be read or parsed, the file and the reason. --help,
  // --help-markdown and --version read no file and validate no value.
  std::variant<Invocation<Config>, std::string> parse(std::span<const std::string_view> arguments,
                                                      const EnvironmentLookup& environment,
                                                      const Consistency& check_consistency) const {
    Invocation<Config> invocation;
    std::vector<Assignment> from_environment;
    std::vector<Assignment> from_flags;
    for (const auto& option : options_) {
      auto value = environment(option.environment);
      if (!value) continue;
      auto shown_value = in_quotes(*value);
      from_environment.push_back(
          {&option, std::move(*value), Source::environment, std::string(option.environment), std::move(shown_value)});
    }
    for (std::size_t i = 0; i < arguments.size(); ++i) {
      const auto argument = arguments[i];
      if (const auto command = command_of(argument)) {
        invocation.command = *command;
        continue;
      }
      // --flag VALUE or --flag=VALUE
      const auto equals = argument.find('=');
      const auto name = argument.substr(0, equals);
      const auto option = std::find_if(options_.begin(), options_.end(), [&](const Entry& o) { return o.flag == name; });
      if (option == options_.end()) return "unknown argument " + in_quotes(argument) + unknown_argument_hint(name);
      std::string_view value;
      if (equals != std::string_view::npos) {
        value = argument.substr(equals + 1);
      } else if (i + 1 < arguments.size()) {
        value = arguments[++i];
      } else {
        return "missing value for " + std::string(name) + ": expected " + accepted_values(*option) + " (see --help)";
      }
      from_flags.push_back({&*option, std::string(value), Source::flag, std::string(option->flag), in_quotes(value)});
    }
    if (invocation.command == Command::help || invocation.command == Command::help_markdown ||
        invocation.command == Command::version)
      return invocation;

    // The file named by the last flag, else by the environment variable; read before anything
    // applies, applied first, so the environment and the flags override it.
    std::vector<Assignment> from_file;
    std::string path;
    for (const auto* list : {&from_environment, &from_flags}) {
      for (const auto& assignment : *list) {
        if (assignment.option->key != program_.config_key) continue;
        Config scratch;
        if (auto expected = assignment.option->apply(scratch, assignment.value))
          return describe_failure(assignment, *expected);
        path = assignment.value;
      }
    }
    if (!path.empty()) {
      auto read = read_config_file(path);
      if (auto* error = std::get_if<std::string>(&read)) return std::move(*error);
      from_file = std::get<std::vector<Assignment>>(std::move(read));
    }

    auto& config = invocation.config;
    for (const auto* list : {&from_file, &from_environment, &from_flags}) {
      for (const auto& assignment : *list) {
        if (auto expected = assignment.option->apply(config, assignment.value))
          return describe_failure(assignment, *expected);
        config.sources.insert_or_assign(std::string(assignment.option->key), assignment.source);
      }
    }
    if (check_consistency) {
      if (auto problem = check_consistency(config)) return *problem;
    }
    return invocation;
  }

  // What an option accepts, in its parser's own words: the failure it reports for a value that
  // no option accepts. Keeps --help-style references in step with validation.
  std::string accepted_values(const Entry& option) const {
    Config scratch;
    const auto failure = option.apply(scratch, "\x01");
    return failure ? *failure : std::string("any text");
  }

  JsonKind json_kind_of(const Entry& option) const { return json_kind(option.show(Config{})); }

  // "key (VARIABLE, --flag) is VALUE (SOURCE)", for messages about two options at once.
  std::string described(const Config& config, std::string_view key) const {
    const auto* option = find(key);
    if (option == nullptr) return std::string(key);
    const auto source = config.sources.find(key);
    const auto from = source == config.sources.end() ? Source::default_value : source->second;
    return std::string(key) + " (" + std::string(option->environment) + ", " + std::string(option->flag) + ") is " +
           shown(option->show(config)) + " (" + std::string(to_string(from)) + ")";
  }

  // The usage, the commands, then two lines per option: flag, variable, file key and type; then
  // the help text.
  void print_help(std::ostream& out) const {
    print_help_header(out, program_);
    print_options(out);
  }

  void print_options(std::ostream& out) const {
    for (const auto& option : options_) {
      out << "  " << std::left << std::setw(30) << (std::string(option.flag) + " VALUE ") << std::setw(28)
          << option.environment;
      if (option.key == program_.config_key) out << "(not in the file)";
      else out << '"' << option.key << "\": " << type_name(json_kind_of(option));
      out << "\n      " << option.help << '\n';
    }
  }

  // The option reference as a Markdown table.
  void print_markdown(std::ostream& out) const {
    out << "| JSON key | environment variable | flag | JSON type | default | accepted values | meaning |\n"
           "|---|---|---|---|---|---|---|\n";
    const Config defaults;
    for (const auto& option : options_) {
      const bool in_file = option.key != program_.config_key;
      out << "| " << (in_file ? "`" + std::string(option.key) + "`" : std::string("(not in the file)")) << " | `"
          << option.environment << "` | `" << option.flag << "` | "
          << (in_file ? type_name(json_kind_of(option)) : std::string_view("string")) << " | `"
          << markdown_cell(shown(option.show(defaults))) << "` | " << markdown_cell(accepted_values(option)) << " | "
          << markdown_cell(option.help) << " |\n";
    }
  }

  // One key per option, in table order (secret options redacted when set, unless empty: an
  // empty value hides nothing, and so reads back as itself).
  nlohmann::ordered_json values(const Config& config) const {
    nlohmann::ordered_json json = nlohmann::ordered_json::object();
    for (const auto& option : options_) {
      const bool set = config.sources.find(option.key) != config.sources.end();
      auto shown_value = option.show(config);
      const bool hidden = option.secret && set && !shown_value.empty() && shown_value != "";
      json[std::string(option.key)] = hidden ? nlohmann::ordered_json("(redacted)") : std::move(shown_value);
    }
    return json;
  }

  // The effective configuration: one key per option (values()), then effective_threads,
  // version, and sources. Without the config key and the output-only keys it is a valid
  // configuration file. Config must have `unsigned effective_threads() const`.
  std::string to_json(const Config& config, std::string_view version) const {
    auto json = values(config);
    json["effective_threads"] = config.effective_threads();
    json["version"] = version;
    json["sources"] = sources(config);
    return json.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  }

  // A refusal when listeners on the endpoints of options `a` and `b` could not both be bound.
  Failure check_bindable(const Config& config, std::string_view a, const boost::asio::ip::tcp::endpoint& a_endpoint,
                         std::string_view b, const boost::asio::ip::tcp::endpoint& b_endpoint) const {
    if (!overlaps(a_endpoint, b_endpoint)) return accepted;
    return "inconsistent options: " + described(config, a) + ", " + described(config, b) +
           "; they must be addresses that can both be bound (different ports, or different specific addresses)";
  }

  // Where each option's value came from: default, file, environment or flag.
  nlohmann::ordered_json sources(const Config& config) const {
    nlohmann::ordered_json json = nlohmann::ordered_json::object();
    for (const auto& option : options_) {
      const auto source = config.sources.find(option.key);
      json[std::string(option.key)] = to_string(source == config.sources.end() ? Source::default_value : source->second);
    }
    return json;
  }

 private:
  // One value for one option from one source, as text, not yet validated.
  struct Assignment {
    const Entry* option = nullptr;
    std::string value;   // what apply() validates
    Source source = Source::default_value;
    std::string origin;  // for messages: "--flag", "VARIABLE" or "key in FILE"
    std::string shown;   // the value as messages show it
  };

  static std::string describe_failure(const Assignment& assignment, std::string_view expected) {
    return "invalid value " + assignment.shown + " for " + assignment.origin + ": expected " + std::string(expected);
  }

  std::optional<Command> command_of(std::string_view argument) const {
    const auto matches = [&](const CommandFlag& command) {
      return command.flag == argument || (argument == "-h" && command.command == Command::help);
    };
    const auto found = std::find_if(program_.commands.begin(), program_.commands.end(), matches);
    if (found == program_.commands.end()) return std::nullopt;
    return found->command;
  }

  // The file's options, in file order, converted to text; or what is wrong with the file.
  std::variant<std::vector<Assignment>, std::string> read_config_file(const std::string& path) const {
    using Json = nlohmann::ordered_json;
    auto read = read_json_object(path);
    if (auto* error = std::get_if<std::string>(&read)) return std::move(*error);
    const auto& document = std::get<Json>(read);
    std::vector<Assignment> assignments;
    for (const auto& [key, value] : document.items()) {
      const auto* option = find(key);
      if (option == nullptr) return "unknown key " + shown(Json(key)) + " in " + path + unknown_key_hint(key);
      if (option->key == program_.config_key)
        return "key \"" + std::string(program_.config_key) + "\" in " + path + ": a configuration file cannot name another one";
      const auto kind = json_kind_of(*option);
      std::string problem;
      auto converted = option->json_text ? json_text_of(value) : file_text(value, kind, problem);
      Assignment assignment{option, {}, Source::file, std::string(option->key) + " in " + path, shown(value)};
      if (!converted && !problem.empty()) return describe_failure(assignment, problem);
      if (!converted)
        return "wrong type for " + assignment.origin + ": expected " +
               std::string(option->json_text ? "a string or an array of strings" : describe(kind)) + ", got " +
               value.type_name() + " " + assignment.shown;
      assignment.value = std::move(*converted);
      assignments.push_back(std::move(assignment));
    }
    return assignments;
  }

  // A hint for an unknown file key: the key it was probably meant to be.
  std::string unknown_key_hint(std::string_view key) const {
    if (std::find(program_.output_only_keys.begin(), program_.output_only_keys.end(), key) !=
        program_.output_only_keys.end())
      return " (--check-config prints it, but it is not an option)";
    // Spelled as the environment variable or the flag?
    for (const auto& option : options_) {
      if (key == option.environment || key == option.flag || key == option.flag.substr(2))
        return "; did you mean \"" + std::string(option.key) + "\"?";
    }
    std::string normalized;
    for (const char c : key) normalized += c == '-' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const Entry* closest = nullptr;
    std::size_t best = std::numeric_limits<std::size_t>::max();
    for (const auto& option : options_) {
      const auto distance = edit_distance(normalized, option.key);
      if (distance < best) {
        best = distance;
        closest = &option;
      }
    }
    if (closest != nullptr && best <= std::max<std::size_t>(2, closest->key.size() / 4))
      return "; did you mean \"" + std::string(closest->key) + "\"?";
    return " (" + std::string(program_.name) + " --help lists the keys)";
  }

  // A hint for an unknown argument (`name` is the part before any '='): the flag it was probably
  // meant to be, spelled as a flag, a variable, a key, or close to one.
  std::string unknown_argument_hint(std::string_view name) const {
    std::string normalized;
    const auto start = name.find_first_not_of('-');
    if (start != std::string_view::npos) {
      for (const char c : name.substr(start))
        normalized += c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    std::vector<std::string_view> candidates;
    for (const auto& command : program_.commands) candidates.push_back(command.flag);
    for (const auto& option : options_) {
      if (name == option.environment || name == option.key) return "; did you mean " + std::string(option.flag) + "?";
      candidates.push_back(option.flag);
    }
    std::string_view closest;
    std::size_t best = std::numeric_limits<std::size_t>::max();
    for (const auto candidate : candidates) {
      const auto distance = edit_distance(normalized, candidate.substr(2));
      if (distance < best) {
        best = distance;
        closest = candidate;
      }
    }
    if (!normalized.empty() && best <= std::max<std::size_t>(2, closest.size() / 4))
      return "; did you mean " + std::string(closest) + "?";
    return " (see --help)";
  }

  Program program_;
  std::vector<Entry> options_;
};

}  // namespace director::config_table

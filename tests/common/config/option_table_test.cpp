// The engine's behaviour that neither program's table pins: secret options, json_text options,
// a program's own commands and names in its messages.
#include "config/option_table.hpp"

#include "temp_config_file.hpp"

#include <catch2/catch.hpp>

#include <sstream>

namespace {

using namespace director::config_table;

struct Settings {
  std::string token;
  std::vector<std::string> words;
  std::uint16_t port = 80;
  std::string config_file;
  Sources sources;
  unsigned effective_threads() const noexcept { return 1; }
};

const OptionTable<Settings>& table() {
  static const OptionTable<Settings> table(
      Program{.name = "demo-program",
              .description = "A demonstration.",
              .commands = {{"--help", Command::help, "print this help and exit"},
                           {"--check-config", Command::check_config, "check\nand exit"}}},
      {{"config", "DEMO_CONFIG", "--config", "the file",
        [](Settings& s, std::string_view v) { return set_config_path(s.config_file, v); },
        [](const Settings& s) -> nlohmann::ordered_json { return s.config_file; }},
       {"token", "DEMO_TOKEN", "--token", "a secret",
        [](Settings& s, std::string_view v) -> Failure {
          if (v.empty()) return "a non-empty token";
          s.token = v;
          return accepted;
        },
        [](const Settings& s) -> nlohmann::ordered_json { return s.token; }, true},
       {"words", "DEMO_WORDS", "--words", "words, a JSON array",
        [](Settings& s, std::string_view v) -> Failure {
          const auto json = nlohmann::json::parse(v, nullptr, false);
          if (json.is_discarded() || !json.is_array()) return "a JSON array of strings";
          s.words = json.get<std::vector<std::string>>();
          return accepted;
        },
        [](const Settings& s) -> nlohmann::ordered_json { return s.words; }, false, true},
       {"port", "DEMO_PORT", "--port", "a port", [](Settings& s, std::string_view v) { return set_port(s.port, v); },
        [](const Settings& s) -> nlohmann::ordered_json { return s.port; }}});
  return table;
}

std::variant<Invocation<Settings>, std::string> parse(std::vector<std::string_view> arguments,
                                                      std::map<std::string, std::string> environment = {}) {
  return table().parse(
      arguments,
      [&](std::string_view name) -> std::optional<std::string> {
        const auto found = environment.find(std::string(name));
        if (found == environment.end()) return std::nullopt;
        return found->second;
      },
      [](const Settings& s) -> Failure {
        if (s.port == 81) return "port 81 is " + table().described(s, "port");
        return accepted;
      });
}

std::string error_of(const std::variant<Invocation<Settings>, std::string>& parsed) {
  const auto* error = std::get_if<std::string>(&parsed);
  return error == nullptr ? std::string() : *error;
}

using TempFile = director::test::TempConfigFile;

}  // namespace

TEST_CASE("a secret option is redacted once set, and shown at its default") {
  const auto defaults = std::get<Invocation<Settings>>(parse({}));
  CHECK(table().values(defaults.config).at("token") == "");
  const auto set = std::get<Invocation<Settings>>(parse({"--token", "hunter2"}));
  CHECK(set.config.token == "hunter2");
  const auto json = table().to_json(set.config, "1.2.3");
  CHECK(json.find("hunter2") == std::string::npos);
  CHECK(json ==
        R"json({"config":"","token":"(redacted)","words":[],"port":80,"effective_threads":1,"version":"1.2.3",)json"
        R"json("sources":{"config":"default","token":"flag","words":"default","port":"default"}})json");
}

TEST_CASE("a json_text option takes JSON text from the environment and flags, an array from the file") {
  CHECK(std::get<Invocation<Settings>>(parse({}, {{"DEMO_WORDS", R"(["a,b","c"])"}})).config.words ==
        std::vector<std::string>{"a,b", "c"});
  TempFile file(R"({"words": ["x,y"]})");
  CHECK(std::get<Invocation<Settings>>(parse({"--config", file.path()})).config.words ==
        std::vector<std::string>{"x,y"});
  TempFile wrong(R"({"words": {"a": 1}})");
  CHECK(error_of(parse({"--config", wrong.path()})) ==
        "wrong type for words in " + wrong.path() + ": expected a string or an array of strings, got object {\"a\":1}");
  CHECK(error_of(parse({"--words", "a"})) == "invalid value 'a' for --words: expected a JSON array of strings");
}

TEST_CASE("the program's commands, names and consistency check are its own") {
  CHECK(std::get<Invocation<Settings>>(parse({"-h"})).command == Command::help);
  CHECK(std::get<Invocation<Settings>>(parse({"--check-config"})).command == Command::check_config);
  CHECK(error_of(parse({"--version"})) == "unknown argument '--version' (see --help)");
  CHECK(error_of(parse({"--chek-config"})) == "unknown argument '--chek-config'; did you mean --check-config?");
  TempFile far(R"({"qqqqqqqq": 1})");
  CHECK(error_of(parse({"--config", far.path()})) ==
        "unknown key \"qqqqqqqq\" in " + far.path() + " (demo-program --help lists the keys)");
  CHECK(error_of(parse({}, {{"DEMO_PORT", "81"}})) == "port 81 is port (DEMO_PORT, --port) is 81 (environment)");
  std::ostringstream help;
  table().print_help(help);
  CHECK(help.str().starts_with("Usage: demo-program [OPTIONS]\nA demonstration.\n\n"));
  CHECK(help.str().find("  --help             print this help and exit\n"
                        "  --check-config     check\n"
                        "                     and exit\n\n") != std::string::npos);
  CHECK(help.str().find("  --token VALUE                 DEMO_TOKEN                  \"token\": string\n      a secret\n") !=
        std::string::npos);
}

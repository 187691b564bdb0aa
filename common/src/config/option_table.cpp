#include "config/option_table.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <system_error>
#include <thread>

namespace director::config_table {
namespace {

// The file's text, at most max_config_file_size bytes, or why it cannot be read.
std::optional<std::string> read_bounded(const std::string& path, std::string& error) {
  const auto describe_errno = [&](std::string_view what) {
    error = std::string(what) + " " + path + ": " + std::generic_category().message(errno);
  };
  struct Close {
    void operator()(std::FILE* file) const noexcept { std::fclose(file); }
  };
  const std::unique_ptr<std::FILE, Close> file(std::fopen(path.c_str(), "rb"));
  if (!file) {
    describe_errno("cannot open configuration file");
    return std::nullopt;
  }
  std::string text(max_config_file_size + 1, '\0');
  const auto size = std::fread(text.data(), 1, text.size(), file.get());
  if (std::ferror(file.get()) != 0) {
    describe_errno("cannot read configuration file");
    return std::nullopt;
  }
  if (size > max_config_file_size) {
    error = "configuration file " + path + " is larger than " + std::to_string(max_config_file_size) + " bytes";
    return std::nullopt;
  }
  text.resize(size);
  return text;
}

// nlohmann's message without its "[json.exception.parse_error.101] " prefix.
std::string_view exception_message(const char* what) {
  std::string_view message(what);
  if (!message.empty() && message.front() == '[') {
    const auto end = message.find("] ");
    if (end != std::string_view::npos) message.remove_prefix(end + 2);
  }
  return message;
}

}  // namespace

std::string_view to_string(Source source) noexcept {
  switch (source) {
    case Source::default_value: return "default";
    case Source::file: return "file";
    case Source::environment: return "environment";
    case Source::flag: return "flag";
  }
  return "default";
}

unsigned effective_threads(unsigned configured) noexcept {
  if (configured != 0) return configured;
  return std::max(1U, std::thread::hardware_concurrency());
}

EnvironmentLookup process_environment() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* value = std::getenv(std::string(name).c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

std::vector<CommandFlag> standard_commands(std::string_view noun) {
  return {
      {"--help", Command::help, "print this help and exit"},
      {"--help-markdown", Command::help_markdown, "print the option reference as a Markdown table and exit"},
      {"--version", Command::version, "print the version and exit"},
      {"--check-config", Command::check_config,
       "validate the configuration, print it as JSON (with the source of\neach value) and exit"},
      {"--health", Command::health,
       "ask the " + std::string(noun) +
           " running with this configuration for GET /readyz on\n"
           "http_listen (loopback when it is 0.0.0.0 or ::); exit 0 when it is\n"
           "ready, 1 otherwise with the reason on stderr (container health checks)"},
  };
}

void print_help_header(std::ostream& out, const Program& program) {
  out << "Usage: " << program.name << " [OPTIONS]\n"
      << program.description << "\n\n"
         "Every option has a flag (--flag VALUE or --flag=VALUE), an environment variable and a\n"
         "key in the JSON file named by --config. Precedence, lowest first: default, file,\n"
         "environment, flag.\n\n";
  constexpr int flag_width = 19;
  for (const auto& command : program.commands) {
    out << "  " << std::left << std::setw(flag_width) << command.flag;
    for (const char c : command.help) {
      out << c;
      if (c == '\n') out << std::string(2 + flag_width, ' ');
    }
    out << '\n';
  }
  out << '\n';
}

std::string in_quotes(std::string_view value) {
  constexpr std::size_t longest = 80;
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "'";
  for (const char c : value.substr(0, longest)) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\\') {
      out += "\\\\";
    } else if (byte < 0x20 || byte == 0x7f) {
      out += "\\x";
      out += hex[byte >> 4];
      out += hex[byte & 0xf];
    } else {
      out += c;
    }
  }
  out += value.size() > longest ? "'..." : "'";
  return out;
}

std::string shown(const nlohmann::ordered_json& value) {
  auto text = value.dump(-1, ' ', true, nlohmann::ordered_json::error_handler_t::replace);
  constexpr std::size_t longest = 80;
  if (text.size() > longest) text = text.substr(0, longest) + "...";
  return text;
}

JsonKind json_kind(const nlohmann::ordered_json& shape) {
  if (shape.is_number_integer()) return JsonKind::integer;
  if (shape.is_boolean()) return JsonKind::boolean;
  if (shape.is_array()) return JsonKind::list;
  return JsonKind::text;
}

std::string_view describe(JsonKind kind) {
  switch (kind) {
    case JsonKind::text: return "a string";
    case JsonKind::integer: return "an integer";
    case JsonKind::boolean: return "true or false";
    case JsonKind::list: return "an array of strings";
  }
  return "a string";
}

std::string_view type_name(JsonKind kind) {
  switch (kind) {
    case JsonKind::text: return "string";
    case JsonKind::integer: return "integer";
    case JsonKind::boolean: return "boolean";
    case JsonKind::list: return "array of strings";
  }
  return "string";
}

std::optional<std::string> file_text(const nlohmann::ordered_json& value, JsonKind kind, std::string& problem) {
  switch (kind) {
    case JsonKind::text:
      if (value.is_string()) return value.get<std::string>();
      return std::nullopt;
    case JsonKind::integer:
      if (value.is_number_integer()) return value.dump();
      return std::nullopt;
    case JsonKind::boolean:
      if (value.is_boolean()) return std::string(value.get<bool>() ? "true" : "false");
      return std::nullopt;
    case JsonKind::list: {
      if (!value.is_array()) return std::nullopt;
      std::string joined;
      bool first = true;
      for (const auto& element : value) {
        if (!element.is_string()) return std::nullopt;
        const auto& text = element.get_ref<const std::string&>();
        if (text.empty() || text.find(',') != std::string::npos) {
          problem = "one non-empty entry per array element, without commas";
          return std::nullopt;
        }
        if (!first) joined += ',';
        joined += text;
        first = false;
      }
      return joined;
    }
  }
  return std::nullopt;
}

std::optional<std::string> json_text_of(const nlohmann::ordered_json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_array()) return value.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  return std::nullopt;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const auto above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0U : 1U)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::variant<nlohmann::ordered_json, std::string> read_json_object(const std::string& path) {
  using Json = nlohmann::ordered_json;
  std::string error;
  const auto text = read_bounded(path, error);
  if (!text) return error;
  if (text->find_first_not_of(" \t\r\n") == std::string::npos)
    return "configuration file " + path + " is empty: it must hold one JSON object, e.g. {\"container_port\": 8080}";
  Json document;
  std::set<std::string, std::less<>> seen;
  std::string duplicate;
  try {
    document = Json::parse(*text, [&](int depth, Json::parse_event_t event, Json& parsed) {
      if (depth == 1 && event == Json::parse_event_t::key && parsed.is_string()) {
        if (!seen.insert(parsed.get<std::string>()).second && duplicate.empty()) duplicate = shown(parsed);
      }
      return true;
    });
  } catch (const Json::exception& failure) {
    return "malformed configuration file " + path + ": " + std::string(exception_message(failure.what()));
  }
  if (!document.is_object())
    return "configuration file " + path + " must hold one JSON object, e.g. {\"container_port\": 8080}";
  if (!duplicate.empty()) return "duplicate key " + duplicate + " in " + path;
  return document;
}

std::string markdown_cell(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += ' ';
    else if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else out += c;
  }
  return out;
}

}  // namespace director::config_table

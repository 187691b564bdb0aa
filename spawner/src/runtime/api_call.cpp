#include "runtime/api_call.hpp"

#include "runtime/json_fields.hpp"

#include <cctype>
#include <cstddef>
#include <utility>

namespace director::spawner::runtime {
namespace {

constexpr std::size_t max_message = 300;

std::string one_line(std::string_view text) {
  std::string line;
  for (const char c : text.substr(0, max_message)) {
    line += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line;
}

}  // namespace

RuntimeError unavailable(std::string message) { return RuntimeError{core::CallError::unavailable, 0, std::move(message)}; }

bool succeeded(unsigned http_status) { return http_status / 100 == 2; }

std::string url_encode(std::string_view value) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string encoded;
  for (const char c : value) {
    const auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
      encoded += c;
    } else {
      encoded += '%';
      encoded += hex[byte >> 4];
      encoded += hex[byte & 0xF];
    }
  }
  return encoded;
}

std::string error_message(std::string_view body) {
  const json_fields::Json json = json_fields::parse(body);
  if (const std::string message = json_fields::string_at(json, "message"); !message.empty()) return message;
  return one_line(body);
}

}  // namespace director::spawner::runtime

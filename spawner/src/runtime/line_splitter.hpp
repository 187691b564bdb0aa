// Splits a streamed body into lines (the runtimes' event and watch streams, a pull's progress),
// every line bounded.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace director::spawner::runtime {

class LineSplitter {
 public:
  explicit LineSplitter(std::size_t max_line) : max_line_(max_line) {}

  // Feeds `data`, calling `on_line` with each complete line (without its '\n'); false when a
  // line is longer than max_line (the caller ends the stream).
  template <typename OnLine>
  bool feed(std::string_view data, OnLine&& on_line) {
    for (;;) {
      const auto end = data.find('\n');
      if (end == std::string_view::npos) break;
      pending_.append(data.substr(0, end));
      if (pending_.size() > max_line_) return false;
      on_line(std::string_view(pending_));
      pending_.clear();
      data.remove_prefix(end + 1);
    }
    pending_.append(data);
    return pending_.size() <= max_line_;
  }
  // What is left without a newline at the end of the stream.
  std::string_view rest() const noexcept { return pending_; }

 private:
  std::size_t max_line_;
  std::string pending_;
};

}  // namespace director::spawner::runtime

// plugin_log.h - where edgeseg's TensorRT plugins report problems.
//
// TensorRT hands a plugin library an ILoggerFinder through its exported setLoggerFinder(); the
// logger it finds is the one of the builder or runtime that called the plugin, so messages land
// in the user's TensorRT log.  Before TensorRT has called setLoggerFinder (a host test, a library
// loaded by hand) messages go to stderr instead.
#pragma once

#include <NvInferRuntime.h>

#include <string>
#include <type_traits>

namespace edgeseg {
namespace plugin {

// Remembers the finder (the first non-null one wins, as TensorRT may call this more than once).
void set_logger_finder(nvinfer1::ILoggerFinder* finder) noexcept;

// Logs "<plugin>: <message>" at `severity`.
void log(nvinfer1::ILogger::Severity severity, const char* plugin, const std::string& message) noexcept;

namespace detail {
inline void append(std::string& out, const char* part) { out += part != nullptr ? part : "(null)"; }
inline void append(std::string& out, const std::string& part) { out += part; }
template <typename N, typename = std::enable_if_t<std::is_arithmetic<N>::value>>
void append(std::string& out, N number) {
  out += std::to_string(number);
}
}  // namespace detail

// Logs the concatenation of `parts` (strings and numbers) as an error.  The message is built
// here, inside a try block, because every caller is a noexcept TensorRT interface method: a
// std::bad_alloc while formatting must lose the message, not std::terminate the process.
template <typename... Parts>
void log_error(const char* plugin, const Parts&... parts) noexcept {
  try {
    std::string message;
    (detail::append(message, parts), ...);
    log(nvinfer1::ILogger::Severity::kERROR, plugin, message);
  } catch (...) {
  }
}

}  // namespace plugin
}  // namespace edgeseg

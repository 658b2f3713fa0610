// plugin_log.h - where edgeseg's TensorRT plugins report problems.
//
// TensorRT hands a plugin library an ILoggerFinder through its exported setLoggerFinder(); the
// logger it finds is the one of the builder or runtime that called the plugin, so messages land
// in the user's TensorRT log.  Before TensorRT has called setLoggerFinder (a host test, a library
// loaded by hand) messages go to stderr instead.
#pragma once

#include <NvInferRuntime.h>

#include <string>

namespace edgeseg {
namespace plugin {

// Remembers the finder (the first non-null one wins, as TensorRT may call this more than once).
void set_logger_finder(nvinfer1::ILoggerFinder* finder) noexcept;

// Logs "<plugin>: <message>" at `severity`.
void log(nvinfer1::ILogger::Severity severity, const char* plugin, const std::string& message) noexcept;

inline void log_error(const char* plugin, const std::string& message) noexcept {
  log(nvinfer1::ILogger::Severity::kERROR, plugin, message);
}

}  // namespace plugin
}  // namespace edgeseg

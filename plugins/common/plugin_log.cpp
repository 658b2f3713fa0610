// plugin_log.cpp - see plugin_log.h.
#include "common/plugin_log.h"

#include <cstdio>
#include <mutex>

namespace edgeseg {
namespace plugin {
namespace {

std::mutex g_mutex;
nvinfer1::ILoggerFinder* g_finder = nullptr;

}  // namespace

void set_logger_finder(nvinfer1::ILoggerFinder* finder) noexcept {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_finder == nullptr && finder != nullptr) g_finder = finder;
}

void log(nvinfer1::ILogger::Severity severity, const char* plugin, const std::string& message) noexcept {
  try {
    const std::string line = std::string(plugin) + ": " + message;
    nvinfer1::ILogger* logger = nullptr;
    {
      std::lock_guard<std::mutex> lock(g_mutex);
      // findLogger() must run on the thread of the plugin call that logs, which is this one.
      if (g_finder != nullptr) logger = g_finder->findLogger();
    }
    if (logger != nullptr) {
      logger->log(severity, line.c_str());
    } else {
      std::fprintf(stderr, "[edgeseg plugins] %s\n", line.c_str());
    }
  } catch (...) {
    // Logging must never throw across TensorRT's noexcept interfaces; a lost message is the
    // lesser harm.
  }
}

}  // namespace plugin
}  // namespace edgeseg

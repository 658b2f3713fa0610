// plugin_base.h - what edgeseg's IPluginV3 plugins and their creators have in common.
//
// A plugin is a `final` class deriving from PluginBase<Plugin, Attrs>, where Attrs is the plain
// attribute struct (see plugin_fields.h: `visit`, plus `check()` returning "" or what is wrong).
// The base implements the capability plumbing, identity, clone, serialisation and the parts of
// the build / runtime interfaces that do not depend on the op; the plugin adds output types and
// shapes, format support and enqueue.  CreatorBase<Plugin, Attrs> is the whole creator.
#pragma once

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "common/plugin_fields.h"
#include "common/plugin_log.h"

namespace edgeseg {
namespace plugin {

// Must equal PLUGIN_VERSION / PLUGIN_NAMESPACE of edgeseg/custom_ops.py: TensorRT's ONNX parser
// looks the creator up by the node's op_type, plugin_version and plugin_namespace.
constexpr const char* kPluginVersion = "1";
constexpr const char* kPluginNamespace = "edgeseg";

template <typename Plugin, typename Attrs>
class PluginBase : public nvinfer1::IPluginV3,
                   public nvinfer1::IPluginV3OneCore,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime {
 public:
  explicit PluginBase(const Attrs& attrs) : attrs_(attrs) {}
  ~PluginBase() override = default;

  // IPluginV3
  nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override {
    switch (type) {
      case nvinfer1::PluginCapabilityType::kCORE:
        return static_cast<nvinfer1::IPluginV3OneCore*>(this);
      case nvinfer1::PluginCapabilityType::kBUILD:
        return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
      case nvinfer1::PluginCapabilityType::kRUNTIME:
        return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
  }

  nvinfer1::IPluginV3* clone() noexcept override {
    // The attributes are all a plugin holds; a copy made from them is complete.  Copying them
    // allocates (std::vector members), so out of memory is caught here, not in TensorRT.
    try {
      return new Plugin(attrs_);
    } catch (...) {
      log_error(Plugin::kName, "out of memory cloning the plugin");
      return nullptr;
    }
  }

  // IPluginV3OneCore
  const char* getPluginName() const noexcept override { return Plugin::kName; }
  const char* getPluginVersion() const noexcept override { return kPluginVersion; }
  const char* getPluginNamespace() const noexcept override { return kPluginNamespace; }

  // IPluginV3OneBuild (the op-specific methods are the plugin's)
  int32_t getNbOutputs() const noexcept override { return 1; }
  int32_t configurePlugin(const nvinfer1::DynamicPluginTensorDesc*, int32_t,
                          const nvinfer1::DynamicPluginTensorDesc*, int32_t) noexcept override {
    return 0;
  }

  // IPluginV3OneRuntime
  int32_t onShapeChange(const nvinfer1::PluginTensorDesc*, int32_t, const nvinfer1::PluginTensorDesc*,
                        int32_t) noexcept override {
    return 0;
  }
  nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext*) noexcept override {
    // No per-context resources (no workspace, handles or scratch): a plain copy serves.
    return clone();
  }
  const nvinfer1::PluginFieldCollection* getFieldsToSerialize() noexcept override {
    try {
      writer_ = FieldWriter();
      attrs_.visit(writer_);
      return writer_.collection();
    } catch (...) {
      log_error(Plugin::kName, "out of memory serialising the plugin's fields");
      return nullptr;
    }
  }

  const Attrs& attrs() const { return attrs_; }

 protected:
  Attrs attrs_;

 private:
  FieldWriter writer_;
};

template <typename Plugin, typename Attrs>
class CreatorBase : public nvinfer1::IPluginCreatorV3One {
 public:
  // Runs inside getCreators(), an extern "C" function: nothing may escape it.  Out of memory here
  // leaves the creator advertising no fields, and createPlugin still refuses bad ones.
  CreatorBase() noexcept {
    try {
      Attrs defaults;
      defaults.visit(names_);
    } catch (...) {
      names_ = FieldNames();
      log_error(Plugin::kName, "out of memory listing the plugin's fields");
    }
  }

  // Builds the plugin from the ONNX node's attributes (build phase) or from the fields it
  // serialised (runtime phase); the same fields either way.  nullptr, with the reason logged, if
  // a field is unknown, mistyped or out of range.
  nvinfer1::IPluginV3* createPlugin(const char* name, const nvinfer1::PluginFieldCollection* fc,
                                    nvinfer1::TensorRTPhase) noexcept override {
    try {
      Attrs attrs;
      FieldReader reader(fc, kIdentityFields);
      attrs.visit(reader);
      std::string problem = reader.ok() ? attrs.check() : reader.error();
      if (!problem.empty()) {
        log_error(Plugin::kName, "cannot create layer '", name != nullptr ? name : "", "': ", problem);
        return nullptr;
      }
      return new Plugin(attrs);
    } catch (...) {
      log_error(Plugin::kName, "out of memory creating the plugin");
      return nullptr;
    }
  }

  const nvinfer1::PluginFieldCollection* getFieldNames() noexcept override { return names_.collection(); }
  const char* getPluginName() const noexcept override { return Plugin::kName; }
  const char* getPluginVersion() const noexcept override { return kPluginVersion; }
  const char* getPluginNamespace() const noexcept override { return kPluginNamespace; }

 private:
  FieldNames names_;
};

// What enqueue returns for a launcher's result: 0, or -1 with the CUDA error logged.
inline int32_t launch_status(const char* plugin, cudaError_t status) noexcept {
  if (status == cudaSuccess) return 0;
  log_error(plugin, "kernel launch failed: ", cudaGetErrorString(status));
  return -1;
}

// True for the element types the kernels are instantiated for.
inline bool is_float_or_half(nvinfer1::DataType type) {
  return type == nvinfer1::DataType::kFLOAT || type == nvinfer1::DataType::kHALF;
}

}  // namespace plugin
}  // namespace edgeseg

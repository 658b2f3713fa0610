// plugin_autoregister.cpp - libedgeseg_trt_plugins_autoreg.so: registers edgeseg's plugin
// creators with TensorRT's global registry as soon as it is loaded.
//
// For hosts that dlopen plugin libraries without calling getCreators(): Triton's TensorRT
// backend (--backend-config=tensorrt,plugins=...) and LD_PRELOAD.  edgeseg itself and trtexec
// load libedgeseg_trt_plugins.so through getCreators() instead, which needs no libnvinfer; this
// small library is separate so that those paths do not register the creators twice.  It links
// libnvinfer (getPluginRegistry) and libedgeseg_trt_plugins.so (the creators).
#include <NvInferRuntime.h>

#include <string>

#include "common/plugin_base.h"
#include "common/plugin_log.h"

extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);

namespace {

struct RegisterOnLoad {
  RegisterOnLoad() {
    int32_t count = 0;
    nvinfer1::IPluginCreatorInterface* const* creators = getCreators(count);
    nvinfer1::IPluginRegistry* registry = getPluginRegistry();
    if (registry == nullptr) return;
    for (int32_t i = 0; i < count; ++i) {
      if (!registry->registerCreator(*creators[i], edgeseg::plugin::kPluginNamespace)) {
        edgeseg::plugin::log(nvinfer1::ILogger::Severity::kWARNING, "edgeseg plugins",
                             "a creator was not registered (already registered by another load?)");
      }
    }
  }
};

const RegisterOnLoad register_on_load;

}  // namespace

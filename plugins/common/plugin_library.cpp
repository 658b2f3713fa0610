// plugin_library.cpp - the entry points TensorRT looks up in a plugin library.
//
// IPluginRegistry::loadLibrary, `trtexec --dynamicPlugins` / `--setPluginsToSerialize` and engines
// that embed the library all call getCreators() for the creators and setLoggerFinder() for the
// logger.  The library registers nothing statically (plugin_autoregister.cpp does, for hosts
// that only dlopen it) and references no TensorRT symbol (the interfaces are all virtual).  It is
// still tied to the major version of the headers it was
// built with: TensorRT 11 changed the layout of ILoggerFinder, so a library built for 10.x must
// not be loaded into 11.x (edgeseg checks edgesegPluginTensorRTVersion() before loading it).
#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#include "common/plugin_log.h"
#include "multilevel_roi_align/roi_align_plugin.h"
#include "paste_masks/paste_masks_plugin.h"
#include "zoom_linear/zoom_linear_plugin.h"

#if defined(_WIN32)
#define EDGESEG_EXPORT __declspec(dllexport)
#else
#define EDGESEG_EXPORT __attribute__((visibility("default")))
#endif

extern "C" EDGESEG_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
  static edgeseg::plugin::MultiLevelRoIAlignCreator roi_align;
  static edgeseg::plugin::PasteMasksCreator paste_masks;
  static edgeseg::plugin::ZoomLinearCreator zoom_linear;
  static nvinfer1::IPluginCreatorInterface* const creators[] = {&roi_align, &paste_masks, &zoom_linear};
  nbCreators = static_cast<int32_t>(sizeof(creators) / sizeof(creators[0]));
  return creators;
}

extern "C" EDGESEG_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {
  edgeseg::plugin::set_logger_finder(finder);
}

// The TensorRT version of the headers this library was built with, major * 10000 + minor * 100 +
// patch (e.g. 100300 for 10.3.0): edgeseg refuses to load the library into another major version.
extern "C" EDGESEG_EXPORT int32_t edgesegPluginTensorRTVersion() {
  return NV_TENSORRT_MAJOR * 10000 + NV_TENSORRT_MINOR * 100 + NV_TENSORRT_PATCH;
}

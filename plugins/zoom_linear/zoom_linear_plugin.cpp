// zoom_linear_plugin.cpp - see zoom_linear_plugin.h.
#include "zoom_linear/zoom_linear_plugin.h"

#include <cmath>

#include "zoom_linear/zoom_linear_kernel.h"

namespace edgeseg {
namespace plugin {

using nvinfer1::DataType;

std::string ZoomLinearAttrs::check() const {
  if (height < 1 || width < 1) {
    return "height and width (the zoomed size) must be >= 1, got " + std::to_string(height) + " x " +
           std::to_string(width);
  }
  if (canvas_height < 1 || canvas_width < 1) {
    return "canvas_height and canvas_width must be >= 1, got " + std::to_string(canvas_height) + " x " +
           std::to_string(canvas_width);
  }
  if (top < 0 || left < 0) return "top and left must be >= 0, got " + std::to_string(top) + ", " + std::to_string(left);
  if (static_cast<int64_t>(top) + height > canvas_height || static_cast<int64_t>(left) + width > canvas_width) {
    return "the zoomed image (" + std::to_string(height) + " x " + std::to_string(width) + " at " +
           std::to_string(top) + ", " + std::to_string(left) + ") must lie inside the canvas (" +
           std::to_string(canvas_height) + " x " + std::to_string(canvas_width) + ")";
  }
  if (mean.empty() || mean.size() > static_cast<size_t>(zoom_linear::kMaxMeans)) {
    return "mean must hold 1 to " + std::to_string(zoom_linear::kMaxMeans) + " values, got " +
           std::to_string(mean.size());
  }
  for (float m : mean) {
    if (!std::isfinite(m)) return "mean must hold finite numbers";
  }
  if (static_cast<int64_t>(canvas_height) * canvas_width > INT32_MAX) {
    return "canvas_height * canvas_width must stay below 2^31";
  }
  return "";
}

namespace {
constexpr int32_t kInputs = 2;  // image, value_range
}  // namespace

int32_t ZoomLinearPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, const DataType*,
                                             int32_t nbInputs) const noexcept {
  if (nbOutputs != 1 || nbInputs != kInputs) return -1;
  outputTypes[0] = DataType::kFLOAT;
  return 0;
}

int32_t ZoomLinearPlugin::getOutputShapes(const nvinfer1::DimsExprs* inputs, int32_t nbInputs,
                                          const nvinfer1::DimsExprs*, int32_t, nvinfer1::DimsExprs* outputs,
                                          int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept {
  if (nbOutputs != 1 || nbInputs != kInputs) {
    log_error(kName, "expects 2 inputs (image, value_range) and 1 output, got ", nbInputs, " and ", nbOutputs);
    return -1;
  }
  if (inputs[0].nbDims != 3 || inputs[1].nbDims != 1) {
    log_error(kName, "image must be 3-D [H, W, C] and value_range 1-D [2], got ", inputs[0].nbDims, "-D and ",
              inputs[1].nbDims, "-D");
    return -1;
  }
  outputs[0].nbDims = 3;
  outputs[0].d[0] = inputs[0].d[2];
  outputs[0].d[1] = exprBuilder.constant(attrs_.canvas_height);
  outputs[0].d[2] = exprBuilder.constant(attrs_.canvas_width);
  return 0;
}

bool ZoomLinearPlugin::supportsFormatCombination(int32_t pos, const nvinfer1::DynamicPluginTensorDesc* inOut,
                                                 int32_t nbInputs, int32_t nbOutputs) noexcept {
  if (nbInputs != kInputs || nbOutputs != 1 || pos < 0 || pos > nbInputs) return false;
  // FP32 everywhere, in every precision: the kernel computes in double and truncates, and a half
  // image, range or output would change pixels (values above 2048 are not even integers in half).
  const nvinfer1::PluginTensorDesc& desc = inOut[pos].desc;
  return desc.format == nvinfer1::TensorFormat::kLINEAR && desc.type == DataType::kFLOAT;
}

int32_t ZoomLinearPlugin::configurePlugin(const nvinfer1::DynamicPluginTensorDesc* in, int32_t nbInputs,
                                          const nvinfer1::DynamicPluginTensorDesc*, int32_t) noexcept {
  if (nbInputs != kInputs) return -1;
  // The channel count is static in every graph edgeseg writes; a mean that fits neither one value
  // nor one per channel is refused at build time, not at the first enqueue.  (-1 = not known yet.)
  const int64_t channels = in[0].desc.dims.d[2];
  const int64_t means = static_cast<int64_t>(attrs_.mean.size());
  if (channels > 0 && means != 1 && means != channels) {
    log_error(kName, "mean holds ", means, " values for an image of ", channels, " channels: give 1 or ", channels);
    return -1;
  }
  if (in[1].desc.dims.d[0] > 0 && in[1].desc.dims.d[0] != 2) {
    log_error(kName, "value_range must hold 2 values (min, max), got ", in[1].desc.dims.d[0]);
    return -1;
  }
  return 0;
}

int32_t ZoomLinearPlugin::enqueue(const nvinfer1::PluginTensorDesc* inputDesc, const nvinfer1::PluginTensorDesc*,
                                  const void* const* inputs, void* const* outputs, void*,
                                  cudaStream_t stream) noexcept {
  const nvinfer1::Dims& image = inputDesc[0].dims;
  if (image.nbDims != 3 || inputDesc[1].dims.nbDims != 1 || inputDesc[1].dims.d[0] != 2) {
    log_error(kName, "expects image [H, W, C] and value_range [2]");
    return -1;
  }
  const zoom_linear::ZoomGeometry g = {static_cast<int>(image.d[0]), static_cast<int>(image.d[1]),
                                       static_cast<int>(image.d[2]), attrs_.height,
                                       attrs_.width,                 attrs_.canvas_height,
                                       attrs_.canvas_width,          attrs_.top,
                                       attrs_.left};
  const cudaError_t status =
      zoom_linear::launch_zoom_linear(static_cast<const float*>(inputs[0]), static_cast<const float*>(inputs[1]),
                                      means_, g, static_cast<float*>(outputs[0]), stream);
  return launch_status(kName, status);
}

}  // namespace plugin
}  // namespace edgeseg

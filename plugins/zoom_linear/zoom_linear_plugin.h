// zoom_linear_plugin.h - ZoomLinear as a TensorRT IPluginV3 plugin (and its creator).
//
// Inputs: image [H, W, C] float (integer pixel values), value_range [2] float (min, max of the
// whole image).  Output: [C, canvas_height, canvas_width] float.  Always FP32, in every
// precision: the op computes in double and truncates, so a half input or output would change
// pixels (README.md in this folder).  The kernel: zoom_linear_kernel.h.
#pragma once

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/plugin_base.h"
#include "zoom_linear/zoom_linear_mean.h"

namespace edgeseg {
namespace plugin {

struct ZoomLinearAttrs {
  int32_t height = 0;
  int32_t width = 0;
  int32_t canvas_height = 0;
  int32_t canvas_width = 0;
  int32_t top = 0;
  int32_t left = 0;
  std::vector<float> mean{0.0f};

  template <typename V>
  void visit(V& v) {
    v.int32("height", height);
    v.int32("width", width);
    v.int32("canvas_height", canvas_height);
    v.int32("canvas_width", canvas_width);
    v.int32("top", top);
    v.int32("left", left);
    v.floats("mean", mean);
  }

  // "" when the attributes are usable, else what is wrong with them.
  std::string check() const;
};

class ZoomLinearPlugin final : public PluginBase<ZoomLinearPlugin, ZoomLinearAttrs> {
 public:
  static constexpr const char* kName = "ZoomLinear";

  // The means are read as doubles once, here (zoom_linear_mean.h), not at every enqueue.
  explicit ZoomLinearPlugin(const ZoomLinearAttrs& attrs)
      : PluginBase(attrs), means_(zoom_linear::read_means(attrs.mean.data(), static_cast<int>(attrs.mean.size()))) {}

  int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, const nvinfer1::DataType* inputTypes,
                             int32_t nbInputs) const noexcept override;
  int32_t getOutputShapes(const nvinfer1::DimsExprs* inputs, int32_t nbInputs, const nvinfer1::DimsExprs* shapeInputs,
                          int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                          nvinfer1::IExprBuilder& exprBuilder) noexcept override;
  bool supportsFormatCombination(int32_t pos, const nvinfer1::DynamicPluginTensorDesc* inOut, int32_t nbInputs,
                                 int32_t nbOutputs) noexcept override;
  int32_t configurePlugin(const nvinfer1::DynamicPluginTensorDesc* in, int32_t nbInputs,
                          const nvinfer1::DynamicPluginTensorDesc* out, int32_t nbOutputs) noexcept override;
  int32_t enqueue(const nvinfer1::PluginTensorDesc* inputDesc, const nvinfer1::PluginTensorDesc* outputDesc,
                  const void* const* inputs, void* const* outputs, void* workspace,
                  cudaStream_t stream) noexcept override;

 private:
  zoom_linear::ZoomMeans means_;
};

using ZoomLinearCreator = CreatorBase<ZoomLinearPlugin, ZoomLinearAttrs>;

}  // namespace plugin
}  // namespace edgeseg

// paste_masks_plugin.h - PasteMasks as a TensorRT IPluginV3 plugin (and its creator).
//
// Inputs: masks [K, M, M] float or half; boxes [K, 4] float (x0, y0, x1, y1 in frame pixels);
// count int32 [1] (num_detections): only the first count rows are pasted.  All linear.
// Output: int32 [K, height, width / 4], the bytes of the uint8 planes [K, height, width] four per
// word, because TensorRT plugins cannot have uint8 outputs; rows from count on are not written
// (README.md in this folder).  The kernel: paste_masks_kernel.h.
#pragma once

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>

#include "common/plugin_base.h"

namespace edgeseg {
namespace plugin {

struct PasteMasksAttrs {
  int32_t height = 0;
  int32_t width = 0;
  float threshold = 0.5f;
  int32_t mode = 0;
  int32_t logits = 0;

  template <typename V>
  void visit(V& v) {
    v.int32("height", height);
    v.int32("width", width);
    v.float32("threshold", threshold);
    v.int32("mode", mode);
    v.int32("logits", logits);
  }

  // "" when the attributes are usable, else what is wrong with them.
  std::string check() const;
};

class PasteMasksPlugin final : public PluginBase<PasteMasksPlugin, PasteMasksAttrs> {
 public:
  static constexpr const char* kName = "PasteMasks";

  explicit PasteMasksPlugin(const PasteMasksAttrs& attrs) : PluginBase(attrs) {}

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
};

using PasteMasksCreator = CreatorBase<PasteMasksPlugin, PasteMasksAttrs>;

}  // namespace plugin
}  // namespace edgeseg

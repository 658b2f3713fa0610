// roi_align_plugin.h - MultiLevelRoIAlign as a TensorRT IPluginV3 plugin (and its creator).
//
// Inputs: rois [R, 5] (batch index, x0, y0, x1, y1 in image pixels), then the L pyramid levels
// [N, C, H_l, W_l], finest first.  Output: [R, C, output_height, output_width].  RoIs are float;
// the levels and the output share one type, float or half; all linear.  R may be data-dependent
// (it comes from NMS).
// Attributes and semantics: README.md in this folder; the kernel: roi_align_kernel.h.
#pragma once

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/plugin_base.h"

namespace edgeseg {
namespace plugin {

struct RoiAlignAttrs {
  int32_t output_height = 7;
  int32_t output_width = 7;
  std::vector<float> spatial_scales{0.25f, 0.125f, 0.0625f, 0.03125f};
  int32_t sampling_ratio = 2;
  int32_t aligned = 0;
  float canonical_scale = 224.0f;
  int32_t canonical_level = 4;
  int32_t level_rule = 0;
  int32_t sampling = 0;
  float image_area = 0.0f;

  template <typename V>
  void visit(V& v) {
    v.int32("output_height", output_height);
    v.int32("output_width", output_width);
    v.floats("spatial_scales", spatial_scales);
    v.int32("sampling_ratio", sampling_ratio);
    v.int32("aligned", aligned);
    v.float32("canonical_scale", canonical_scale);
    v.int32("canonical_level", canonical_level);
    v.int32("level_rule", level_rule);
    v.int32("sampling", sampling);
    v.float32("image_area", image_area);
  }

  // "" when the attributes are usable, else what is wrong with them.
  std::string check() const;
};

class MultiLevelRoIAlignPlugin final : public PluginBase<MultiLevelRoIAlignPlugin, RoiAlignAttrs> {
 public:
  static constexpr const char* kName = "MultiLevelRoIAlign";

  explicit MultiLevelRoIAlignPlugin(const RoiAlignAttrs& attrs) : PluginBase(attrs) {}

  int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, const nvinfer1::DataType* inputTypes,
                             int32_t nbInputs) const noexcept override;
  int32_t getOutputShapes(const nvinfer1::DimsExprs* inputs, int32_t nbInputs, const nvinfer1::DimsExprs* shapeInputs,
                          int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                          nvinfer1::IExprBuilder& exprBuilder) noexcept override;
  bool supportsFormatCombination(int32_t pos, const nvinfer1::DynamicPluginTensorDesc* inOut, int32_t nbInputs,
                                 int32_t nbOutputs) noexcept override;
  int32_t enqueue(const nvinfer1::PluginTensorDesc* inputDesc, const nvinfer1::PluginTensorDesc* outputDesc,
                  const void* const* inputs, void* const* outputs, void* workspace,
                  cudaStream_t stream) noexcept override;
};

using MultiLevelRoIAlignCreator = CreatorBase<MultiLevelRoIAlignPlugin, RoiAlignAttrs>;

}  // namespace plugin
}  // namespace edgeseg

// roi_align_plugin.cpp - see roi_align_plugin.h.
#include "multilevel_roi_align/roi_align_plugin.h"

#include <cuda_fp16.h>

#include <cmath>

#include "multilevel_roi_align/roi_align_kernel.h"

namespace edgeseg {
namespace plugin {

using nvinfer1::DataType;

std::string RoiAlignAttrs::check() const {
  if (output_height < 1 || output_width < 1) {
    return "output_height and output_width must be >= 1, got " + std::to_string(output_height) + " x " +
           std::to_string(output_width);
  }
  if (spatial_scales.empty() || spatial_scales.size() > static_cast<size_t>(roi_align::kMaxLevels)) {
    return "spatial_scales must hold 1 to " + std::to_string(roi_align::kMaxLevels) + " values (one per level), got " +
           std::to_string(spatial_scales.size());
  }
  for (float s : spatial_scales) {
    if (!(s > 0.0f) || !std::isfinite(s)) return "spatial_scales must be positive finite numbers";
  }
  if (aligned != 0 && aligned != 1) return "aligned must be 0 or 1, got " + std::to_string(aligned);
  // roi_align_math.h's LevelRule: 0 torchvision, 1 detectron, 2 matterport
  if (level_rule < 0 || level_rule > 2) return "level_rule must be 0, 1 or 2, got " + std::to_string(level_rule);
  // roi_align_math.h's Sampling: 0 roi_align, 1 crop_and_resize
  if (sampling != 0 && sampling != 1) return "sampling must be 0 or 1, got " + std::to_string(sampling);
  // A library from before sampling 1 drops the field unread; it refuses level_rule 2, so requiring
  // the pair makes an old library fail on such a node instead of running RoIAlign on normalised rois.
  if (sampling == 1 && level_rule != 2) {
    return "sampling 1 (crop_and_resize) requires level_rule 2 (matterport), got level_rule " +
           std::to_string(level_rule) +
           ": plugin libraries from before sampling 1 drop the attribute unread and would run RoIAlign on the "
           "normalised rois without an error; they refuse level_rule 2, so the pairing makes them fail instead";
  }
  if (!(image_area >= 0.0f) || !std::isfinite(image_area)) return "image_area must be a finite number >= 0";
  if (level_rule == 2 && !(image_area > 0.0f)) {
    return "image_area must be > 0 with level_rule 2 (matterport): the molded image's height * width in pixels";
  }
  if (!(canonical_scale > 0.0f) || !std::isfinite(canonical_scale)) {
    return "canonical_scale must be a positive finite number";
  }
  return "";
}

int32_t MultiLevelRoIAlignPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs,
                                                     const DataType* inputTypes, int32_t nbInputs) const noexcept {
  if (nbOutputs != 1 || nbInputs < 2) return -1;
  outputTypes[0] = inputTypes[1];  // pooled features keep the features' type
  return 0;
}

int32_t MultiLevelRoIAlignPlugin::getOutputShapes(const nvinfer1::DimsExprs* inputs, int32_t nbInputs,
                                                  const nvinfer1::DimsExprs*, int32_t, nvinfer1::DimsExprs* outputs,
                                                  int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept {
  const int32_t levels = static_cast<int32_t>(attrs_.spatial_scales.size());
  if (nbOutputs != 1 || nbInputs != 1 + levels) {
    log_error(kName, "expects 1 + ", levels, " inputs (rois, then one feature map per entry of spatial_scales), got ",
              nbInputs);
    return -1;
  }
  if (inputs[0].nbDims != 2) {
    log_error(kName, "rois must be 2-D [R, 5], got ", inputs[0].nbDims, "-D");
    return -1;
  }
  for (int32_t l = 1; l < nbInputs; ++l) {
    if (inputs[l].nbDims != 4) {
      log_error(kName, "feature map ", l - 1, " must be 4-D [N, C, H, W], got ", inputs[l].nbDims, "-D");
      return -1;
    }
  }
  outputs[0].nbDims = 4;
  outputs[0].d[0] = inputs[0].d[0];
  outputs[0].d[1] = inputs[1].d[1];
  outputs[0].d[2] = exprBuilder.constant(attrs_.output_height);
  outputs[0].d[3] = exprBuilder.constant(attrs_.output_width);
  return 0;
}

bool MultiLevelRoIAlignPlugin::supportsFormatCombination(int32_t pos, const nvinfer1::DynamicPluginTensorDesc* inOut,
                                                         int32_t nbInputs, int32_t nbOutputs) noexcept {
  if (pos < 0 || pos >= nbInputs + nbOutputs) return false;
  const nvinfer1::PluginTensorDesc& desc = inOut[pos].desc;
  if (desc.format != nvinfer1::TensorFormat::kLINEAR) return false;
  // RoIs stay FP32 whatever the features' type: FP16 rounds image coordinates between 1024 and
  // 2048 to whole pixels (coarser beyond), which moves samples and can change a RoI's level.
  if (pos == 0) return desc.type == DataType::kFLOAT;
  // One kernel instantiation per feature type: every level and the output share it.
  return is_float_or_half(desc.type) && (pos == 1 || desc.type == inOut[1].desc.type);
}

namespace {

template <typename T>
cudaError_t launch(const RoiAlignAttrs& a, const nvinfer1::PluginTensorDesc* in, const void* const* inputs,
                   int32_t levels, void* output, cudaStream_t stream) {
  roi_align::FeaturePyramid<T> pyramid{};
  pyramid.num_levels = levels;
  for (int32_t l = 0; l < levels; ++l) {
    pyramid.features[l] = static_cast<const T*>(inputs[1 + l]);
    pyramid.heights[l] = static_cast<int>(in[1 + l].dims.d[2]);
    pyramid.widths[l] = static_cast<int>(in[1 + l].dims.d[3]);
    pyramid.spatial_scales[l] = a.spatial_scales[static_cast<size_t>(l)];
  }
  return roi_align::launch_multilevel_roi_align<T>(
      pyramid, static_cast<int>(in[1].dims.d[0]), static_cast<int>(in[1].dims.d[1]), static_cast<const float*>(inputs[0]),
      in[0].dims.d[0], a.output_height, a.output_width, a.sampling_ratio, a.aligned != 0, a.canonical_scale,
      a.canonical_level, a.level_rule, a.image_area, a.sampling, static_cast<T*>(output), stream);
}

}  // namespace

int32_t MultiLevelRoIAlignPlugin::enqueue(const nvinfer1::PluginTensorDesc* inputDesc,
                                          const nvinfer1::PluginTensorDesc*, const void* const* inputs,
                                          void* const* outputs, void*, cudaStream_t stream) noexcept {
  const int32_t levels = static_cast<int32_t>(attrs_.spatial_scales.size());
  if (inputDesc[0].dims.d[1] != 5) {
    log_error(kName, "rois must be [R, 5] (batch index, x0, y0, x1, y1), got ", inputDesc[0].dims.d[1], " columns");
    return -1;
  }
  for (int32_t l = 1; l <= levels; ++l) {
    if (inputDesc[l].dims.d[0] != inputDesc[1].dims.d[0] || inputDesc[l].dims.d[1] != inputDesc[1].dims.d[1]) {
      log_error(kName, "every feature map must have the same batch size and channels");
      return -1;
    }
  }
  const cudaError_t status = inputDesc[1].type == DataType::kHALF
                                 ? launch<__half>(attrs_, inputDesc, inputs, levels, outputs[0], stream)
                                 : launch<float>(attrs_, inputDesc, inputs, levels, outputs[0], stream);
  return launch_status(kName, status);
}

}  // namespace plugin
}  // namespace edgeseg

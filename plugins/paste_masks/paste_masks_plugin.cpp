// paste_masks_plugin.cpp - see paste_masks_plugin.h.
#include "paste_masks/paste_masks_plugin.h"

#include <cuda_fp16.h>

#include "paste_masks/paste_masks_kernel.h"

namespace edgeseg {
namespace plugin {

using nvinfer1::DataType;

namespace {
constexpr int32_t kBytesPerWord = 4;  // uint8 mask bytes per int32 output element
}

std::string PasteMasksAttrs::check() const {
  if (height < 1 || width < 1) {
    return "height and width (the frame size) must be >= 1, got " + std::to_string(height) + " x " +
           std::to_string(width);
  }
  if (width % kBytesPerWord != 0) {
    return "width must be a multiple of 4 (the output holds four mask bytes per int32), got " + std::to_string(width);
  }
  if (static_cast<int64_t>(height) * width > INT32_MAX) return "height * width must stay below 2^31";
  if (mode != 0 && mode != 1 && mode != 2) {
    return "mode must be 0 (torchvision), 1 (continuous) or 2 (zoom), got " + std::to_string(mode);
  }
  if (logits != 0 && logits != 1) return "logits must be 0 or 1, got " + std::to_string(logits);
  return "";
}

namespace {
// masks, boxes, count.  (Graphs written before the count input existed have two inputs; they run
// on ONNX Runtime, and are refused here with the fix, since enqueue cannot tell the two apart.)
constexpr int32_t kInputs = 3;
bool known_inputs(int32_t nbInputs) { return nbInputs == kInputs; }
}  // namespace

int32_t PasteMasksPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, const DataType*,
                                             int32_t nbInputs) const noexcept {
  if (nbOutputs != 1 || !known_inputs(nbInputs)) return -1;
  outputTypes[0] = DataType::kINT32;
  return 0;
}

int32_t PasteMasksPlugin::getOutputShapes(const nvinfer1::DimsExprs* inputs, int32_t nbInputs,
                                          const nvinfer1::DimsExprs*, int32_t, nvinfer1::DimsExprs* outputs,
                                          int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept {
  if (nbOutputs != 1 || !known_inputs(nbInputs)) {
    log_error(kName, "expects 3 inputs (masks, boxes, count), got ", nbInputs,
              "; a file written before PasteMasks had its count input: convert the model again");
    return -1;
  }
  if (inputs[0].nbDims != 3 || inputs[1].nbDims != 2 || inputs[2].nbDims != 1) {
    log_error(kName, "masks must be 3-D [K, M, M], boxes 2-D [K, 4] and count 1-D [1], got ", inputs[0].nbDims,
              "-D, ", inputs[1].nbDims, "-D and ", inputs[2].nbDims, "-D");
    return -1;
  }
  outputs[0].nbDims = 3;
  outputs[0].d[0] = inputs[0].d[0];
  outputs[0].d[1] = exprBuilder.constant(attrs_.height);
  outputs[0].d[2] = exprBuilder.constant(attrs_.width / kBytesPerWord);
  return 0;
}

bool PasteMasksPlugin::supportsFormatCombination(int32_t pos, const nvinfer1::DynamicPluginTensorDesc* inOut,
                                                 int32_t nbInputs, int32_t nbOutputs) noexcept {
  if (!known_inputs(nbInputs) || nbOutputs != 1 || pos < 0 || pos > nbInputs) return false;
  const nvinfer1::PluginTensorDesc& desc = inOut[pos].desc;
  if (desc.format != nvinfer1::TensorFormat::kLINEAR) return false;
  if (pos == 0) return is_float_or_half(desc.type);  // mask probabilities: FP16 is enough
  // Boxes stay FP32 whatever the masks' type: FP16 rounds frame coordinates above 1024 to whole
  // pixels, or coarser, and the paste rectangle with them.
  if (pos == 1) return desc.type == DataType::kFLOAT;
  return desc.type == DataType::kINT32;  // count, and the packed output
}

int32_t PasteMasksPlugin::configurePlugin(const nvinfer1::DynamicPluginTensorDesc* in, int32_t nbInputs,
                                          const nvinfer1::DynamicPluginTensorDesc*, int32_t) noexcept {
  if (!known_inputs(nbInputs)) return -1;
  // The mask side is static in every graph edgeseg writes; reject a kernel-incompatible one at
  // build time rather than at the first enqueue.  (-1 = not known yet.)
  const int64_t side = in[0].desc.dims.d[1];
  if (side > paste_masks::kMaxMaskSize || in[0].max.d[1] > paste_masks::kMaxMaskSize) {
    log_error(kName, "masks larger than ", paste_masks::kMaxMaskSize, " x ", paste_masks::kMaxMaskSize,
              " are not supported");
    return -1;
  }
  return 0;
}

int32_t PasteMasksPlugin::enqueue(const nvinfer1::PluginTensorDesc* inputDesc, const nvinfer1::PluginTensorDesc*,
                                  const void* const* inputs, void* const* outputs, void*,
                                  cudaStream_t stream) noexcept {
  const int64_t rows = inputDesc[0].dims.d[0];
  const int side = static_cast<int>(inputDesc[0].dims.d[1]);
  if (inputDesc[0].dims.d[2] != side || inputDesc[1].dims.d[0] != rows || inputDesc[1].dims.d[1] != 4 ||
      inputDesc[2].dims.nbDims != 1 || inputDesc[2].dims.d[0] < 1) {
    log_error(kName, "expects masks [K, M, M], boxes [K, 4] and count [1]");
    return -1;
  }
  // The count stays on the device: the kernel reads it, so nothing waits for the host.
  const int32_t* count = static_cast<const int32_t*>(inputs[2]);
  const float* boxes = static_cast<const float*>(inputs[1]);
  uint8_t* planes = static_cast<uint8_t*>(outputs[0]);  // the int32 output, written as bytes
  const cudaError_t status =
      inputDesc[0].type == DataType::kHALF
          ? paste_masks::launch_paste_masks<__half>(static_cast<const __half*>(inputs[0]), boxes, count, rows, side,
                                                    attrs_.height, attrs_.width, attrs_.threshold, attrs_.mode,
                                                    attrs_.logits != 0, planes, stream)
          : paste_masks::launch_paste_masks<float>(static_cast<const float*>(inputs[0]), boxes, count, rows, side,
                                                   attrs_.height, attrs_.width, attrs_.threshold, attrs_.mode,
                                                   attrs_.logits != 0, planes, stream);
  return launch_status(kName, status);
}

}  // namespace plugin
}  // namespace edgeseg

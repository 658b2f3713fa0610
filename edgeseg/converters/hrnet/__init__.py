"""HRNetV2 semantic segmentation: architectures, PyTorch model, ONNX export."""

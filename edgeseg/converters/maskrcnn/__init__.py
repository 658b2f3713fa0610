"""Mask R-CNN (torchvision) to a static, TensorRT-ready ONNX graph with two custom ops."""

"""The TensorRT side of edgeseg: importing TensorRT and cuda-python, the plugin library, the
engine builder and INT8 calibration. The TensorRT inference backend is
:mod:`edgeseg.backends.tensorrt`. Nothing here imports torch; all of it needs an NVIDIA GPU."""

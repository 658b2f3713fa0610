"""edgeseg: segmentation models converted from PyTorch, run on ONNX Runtime (CPU) or TensorRT (GPU).

    import edgeseg
    model = edgeseg.load("hrnet.onnx")
    result = model(frame)          # frame: HxWx3 uint8 BGR, any size
    result.label_map               # HxW uint8 class ids, frame coordinates

Importing this package never imports torch: the runtime needs numpy, OpenCV and a backend.
Without any OpenCV the import fails with an error naming the two ways to get one (pip's, or
JetPack's on a Jetson).
"""

from edgeseg.opencv_origin import require_opencv

require_opencv()


from edgeseg.errors import (
    ArgumentError,
    BackendUnavailableError,
    EdgesegError,
    FrameError,
    ModelFileError,
    OutputError,
    SourceError,
)
from edgeseg.metadata import ModelMetadata
from edgeseg.model import Model, load
from edgeseg.result import InstanceResult, SemanticResult
from edgeseg.version import __version__

__all__ = [
    "ArgumentError",
    "BackendUnavailableError",
    "EdgesegError",
    "FrameError",
    "InstanceResult",
    "Model",
    "ModelFileError",
    "ModelMetadata",
    "OutputError",
    "SemanticResult",
    "SourceError",
    "__version__",
    "load",
]

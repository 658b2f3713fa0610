from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.democlip import demo_photos


def gpu_missing() -> str | None:
    """Why tests marked ``gpu`` cannot run here (TensorRT, cuda-python or a GPU missing), or None."""
    from edgeseg.errors import BackendUnavailableError
    from edgeseg.trt.gpu_imports import check, import_cudart, import_tensorrt

    try:
        import_tensorrt()
        check(import_cudart().cudaGetDeviceCount(), "cudaGetDeviceCount")
    except BackendUnavailableError as exc:
        return str(exc)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if "gpu" in item.keywords]
    reason = gpu_missing() if gpu_items else None
    if reason:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=f"needs an NVIDIA GPU with TensorRT: {reason}"))


@pytest.fixture(scope="session", autouse=True)
def _calibration_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """INT8 conversions in the tests keep their calibration statistics in a temporary folder,
    never in the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGESEG_CACHE_DIR", str(tmp_path_factory.mktemp("edgeseg-cache")))
        yield


@pytest.fixture(scope="session")
def photos() -> list[np.ndarray]:
    """Real photos (scikit-image's bundled data), BGR uint8."""
    return demo_photos()


@dataclass
class ExportedHRNet:
    model: object  # edgeseg.converters.hrnet.model.HRNetV2
    path: Path
    frame_hw: tuple[int, int]
    input_hw: tuple[int, int]


def _export(tmp: Path, photos: list[np.ndarray], arch: str, num_classes: int, frame_hw: tuple[int, int],
            input_hw: tuple[int, int] | None, align_corners: bool, name: str) -> ExportedHRNet:
    from edgeseg.converters.hrnet.export import export_hrnet
    from tests.hrnet_helpers import calibrated_hrnet

    model = calibrated_hrnet(arch, num_classes, photos, align_corners=align_corners)
    path = tmp / name
    export_hrnet(model, path, frame_hw, input_hw)
    return ExportedHRNet(model, path, frame_hw, input_hw or frame_hw)


@pytest.fixture(scope="session")
def hrnet_small(tmp_path_factory: pytest.TempPathFactory, photos: list[np.ndarray]) -> ExportedHRNet:
    """W18-Small-v1, 19 classes, frame 320x480, exported once per session."""
    return _export(tmp_path_factory.mktemp("hrnet"), photos, "w18_small_v1", 19, (320, 480), None, False,
                   "small.onnx")


@pytest.fixture(scope="session")
def hrnet_resized(tmp_path_factory: pytest.TempPathFactory, photos: list[np.ndarray]) -> ExportedHRNet:
    """W18-Small-v2 with the OCR-branch upsampling (align_corners) running at a smaller input size
    than its odd-sized frame: exercises the in-graph resize."""
    return _export(tmp_path_factory.mktemp("hrnet"), photos, "w18_small_v2", 7, (301, 453), (224, 320), True,
                   "resized.onnx")


def frame_count(path: Path) -> int:
    """Frames OpenCV decodes from a video file."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def fit(photo: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    return cv2.resize(photo, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)


@dataclass
class ExportedMaskRCNN:
    torch_model: object  # torchvision MaskRCNN with the same weights
    path: Path
    frame_hw: tuple[int, int]


@pytest.fixture(scope="session")
def maskrcnn_cli(tmp_path_factory: pytest.TempPathFactory) -> ExportedMaskRCNN:
    """`edgeseg convert maskrcnn --random-weights --score-thresh 0` at 400x600, once per session.
    Random weights are seeded, so ``build_arch`` gives the same model for the PyTorch side."""
    import edgeseg.cli as cli
    from edgeseg.converters.maskrcnn.archs import build_arch

    path = tmp_path_factory.mktemp("maskrcnn") / "maskrcnn.onnx"
    code = cli.main(["convert", "maskrcnn", "--arch", "resnet50_fpn", "--random-weights", "--classes", "coco",
                     "--score-thresh", "0", "--frame", "400x600", "-o", str(path), "-q"])
    assert code == 0
    model = build_arch("resnet50_fpn", 91)
    model.roi_heads.score_thresh = 0.0
    return ExportedMaskRCNN(model, path, (400, 600))


def _export_maskrcnn(tmp: Path, arch: str, frame_hw: tuple[int, int]) -> ExportedMaskRCNN:
    from edgeseg.converters.maskrcnn.archs import build_arch
    from edgeseg.converters.maskrcnn.export import export_maskrcnn
    from edgeseg.converters.maskrcnn.graph import GraphOptions

    model = build_arch(arch, 91)
    model.roi_heads.score_thresh = 0.0  # random weights: keep enough detections to compare
    path = tmp / f"{arch}_{frame_hw[0]}x{frame_hw[1]}.onnx"
    export_maskrcnn(model, path, frame_hw, GraphOptions(score_thresh=0.0), arch=f"maskrcnn_{arch}")
    return ExportedMaskRCNN(model, path, frame_hw)


@pytest.fixture(scope="session")
def maskrcnn_v1_800x800(tmp_path_factory: pytest.TempPathFactory) -> ExportedMaskRCNN:
    """resnet50_fpn at a square 800x800 frame, random weights, score threshold 0."""
    return _export_maskrcnn(tmp_path_factory.mktemp("maskrcnn"), "resnet50_fpn", (800, 800))


@pytest.fixture(scope="session")
def maskrcnn_v2_400x600(tmp_path_factory: pytest.TempPathFactory) -> ExportedMaskRCNN:
    """resnet50_fpn_v2 at 400x600, random weights, score threshold 0."""
    return _export_maskrcnn(tmp_path_factory.mktemp("maskrcnn"), "resnet50_fpn_v2", (400, 600))

"""Bad frames and bad model files give typed errors with exact, actionable messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import edgeseg
from edgeseg.errors import FrameError, ModelFileError
from tests.conftest import ExportedHRNet


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((64, 64, 3), np.float32),
         "frame must be uint8 (0..255 BGR), got float32; convert with np.clip(frame, 0, 255).astype(np.uint8)"),
        (np.zeros((64, 64), np.uint8),
         "frame has 1 channel (shape (64, 64)); models take 3-channel BGR: "
         "convert with cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)"),
        (np.zeros((64, 64, 1), np.uint8),
         "frame has 1 channel (shape (64, 64, 1)); models take 3-channel BGR: "
         "convert with cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)"),
        (np.zeros((64, 64, 4), np.uint8),
         "frame has 4 channels (shape (64, 64, 4)); drop alpha with cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)"),
        (np.zeros((0, 64, 3), np.uint8),
         "frame is empty (shape (0, 64, 3)); check that the source delivered an image"),
        (np.zeros((2, 64, 64, 3), np.uint8), "frame must have shape HxWx3 (BGR), got shape (2, 64, 64, 3)"),
        ([[0, 0, 0]], "frame must be a numpy array (HxWx3 uint8 BGR), got list"),
    ],
)
def test_bad_frames(hrnet_small: ExportedHRNet, frame: object, message: str) -> None:
    model = edgeseg.load(hrnet_small.path)
    with pytest.raises(FrameError) as info:
        model(frame)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_non_contiguous_frame_is_accepted(hrnet_small: ExportedHRNet) -> None:
    model = edgeseg.load(hrnet_small.path)
    big = np.random.default_rng(0).integers(0, 255, (320, 960, 3), dtype=np.uint8)
    view = big[:, ::2]
    np.testing.assert_array_equal(model.semantic(view).label_map, model.semantic(np.ascontiguousarray(view)).label_map)


def test_missing_and_foreign_model_files(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"nothere\.onnx: no such model file; convert one with `edgeseg convert`$"):
        edgeseg.load(tmp_path / "nothere.onnx")
    (tmp_path / "model.txt").write_text("hello")
    with pytest.raises(ModelFileError) as info:
        edgeseg.load(tmp_path / "model.txt")
    assert str(info.value) == (
        "model.txt: unknown model file type '.txt'; edgeseg loads .onnx files written by `edgeseg convert` and "
        ".engine files written by `edgeseg build`"
    )
    (tmp_path / "garbage.onnx").write_bytes(b"\x00\x01not protobuf")
    with pytest.raises(ModelFileError, match=r"^garbage\.onnx: ONNX Runtime cannot load it \("):
        edgeseg.load(tmp_path / "garbage.onnx")


def plain_onnx(path: Path) -> None:
    """An ONNX file that edgeseg did not write (no metadata)."""
    node = helper.make_node("Identity", ["frame"], ["label_map"])
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("frame", TensorProto.UINT8, [4, 4, 3])],
        [helper.make_tensor_value_info("label_map", TensorProto.UINT8, [4, 4, 3])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_onnx_without_edgeseg_metadata(tmp_path: Path) -> None:
    plain_onnx(tmp_path / "plain.onnx")
    with pytest.raises(ModelFileError) as info:
        edgeseg.load(tmp_path / "plain.onnx")
    assert str(info.value) == (
        "plain.onnx: no edgeseg metadata; it was not written by `edgeseg convert` "
        "(convert the PyTorch model with `edgeseg convert`)"
    )


def test_importing_the_runtime_never_imports_torch() -> None:
    code = (
        "import sys, edgeseg, edgeseg.cli, edgeseg.model, edgeseg.draw, edgeseg.sources, edgeseg.sinks;"
        "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

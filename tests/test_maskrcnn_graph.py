"""Mask R-CNN: the exported graph is static and TensorRT-parsable, and, run through edgeseg.load
(ONNX Runtime segments + the CPU build of our two ops), reproduces torchvision eager on real photos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import edgeseg
from edgeseg.converters.maskrcnn.archs import build_arch
from edgeseg.converters.maskrcnn.export import export_maskrcnn
from edgeseg.converters.maskrcnn.graph import GraphOptions
from edgeseg.converters.parity import box_iou, mask_iou, torchvision_reference
from edgeseg.frames import fit_frame
from edgeseg.result import InstanceResult
from tests.conftest import ExportedMaskRCNN as Exported
from tests.conftest import fit

# Ops TensorRT's ONNX parser supports (onnx-tensorrt docs/operators.md) that this graph may use.
TENSORRT_OPS = {
    "Add", "And", "ArgMax", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose",
    "Div", "Equal", "Exp", "Expand", "Flatten", "Gather", "GatherElements", "Gemm", "Greater", "GreaterOrEqual",
    "Identity", "Less", "Log", "MatMul", "Max", "MaxPool", "Min", "Mul", "NonMaxSuppression", "Not", "Pad",
    "ReduceSum", "Relu", "Reshape", "Resize", "ScatterElements", "ScatterND", "Shape", "Sigmoid", "Slice",
    "Softmax", "Sqrt", "Squeeze", "Sub", "TopK", "Transpose", "Unsqueeze", "Where", "BatchNormalization",
    "Floor", "Range", "Or", "Neg", "Tile",
}
CUSTOM = {"MultiLevelRoIAlign", "PasteMasks"}
FORBIDDEN = {"Loop", "If", "NonZero", "Scan"}
TOP = 50


@pytest.fixture(scope="module")
def v1_400x600(maskrcnn_cli: Exported) -> Exported:
    return maskrcnn_cli


@pytest.fixture(scope="module")
def v1_800x800(maskrcnn_v1_800x800: Exported) -> Exported:
    return maskrcnn_v1_800x800


@pytest.fixture(scope="module")
def v2_400x600(maskrcnn_v2_400x600: Exported) -> Exported:
    return maskrcnn_v2_400x600


def torchvision_eager(model: Any, frame_bgr: np.ndarray) -> dict[str, np.ndarray]:
    torch.set_num_threads(2)
    return torchvision_reference(model, frame_bgr)


def assert_matches_torchvision(ours: InstanceResult, ref: dict[str, np.ndarray]) -> None:
    assert len(ours) >= TOP and len(ref["boxes"]) >= TOP, (len(ours), len(ref["boxes"]))
    np.testing.assert_array_equal(ours.labels[:TOP], ref["labels"][:TOP])
    ious = box_iou(ours.boxes[:TOP], ref["boxes"][:TOP])
    assert ious.min() >= 0.98, f"box IoU min {ious.min():.4f}"
    np.testing.assert_allclose(ours.scores[:TOP], ref["scores"][:TOP], atol=1e-3)
    m = mask_iou(ours.masks[:TOP], ref["masks"][:TOP])
    assert m.mean() >= 0.98, f"mean mask IoU {m.mean():.4f} (min {m.min():.4f})"


@pytest.mark.parametrize(("which", "photo_ids"), [("v1_400x600", [0, 1]), ("v1_800x800", [2]), ("v2_400x600", [3])])
def test_end_to_end_matches_torchvision(which: str, photo_ids: list[int], request: pytest.FixtureRequest,
                                        photos: list[np.ndarray]) -> None:
    exported: Exported = request.getfixturevalue(which)
    model = edgeseg.load(exported.path, threads=2)
    for i in photo_ids:
        frame = fit(photos[i], exported.frame_hw)
        assert_matches_torchvision(model.instances(frame), torchvision_eager(exported.torch_model, frame))


def _dynamic_dims(value: onnx.ValueInfoProto) -> bool:
    dims = value.type.tensor_type.shape.dim
    return not value.type.tensor_type.HasField("shape") or any(not d.HasField("dim_value") for d in dims)


def test_graph_is_static_and_tensorrt_parsable(v1_400x600: Exported) -> None:
    model = onnx.load(str(v1_400x600.path))
    graph = model.graph
    ops = {n.op_type for n in graph.node}
    assert not ops & FORBIDDEN
    assert ops - CUSTOM <= TENSORRT_OPS, sorted(ops - CUSTOM - TENSORRT_OPS)
    assert {n.op_type for n in graph.node if n.domain == "edgeseg"} == CUSTOM
    assert ("edgeseg", 1) in {(o.domain, o.version) for o in model.opset_import}

    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*graph.input, *graph.output)}
    assert shapes == {"frame": [400, 600, 3], "num_detections": [1], "boxes": [100, 4], "scores": [100],
                      "labels": [100], "masks": [100, 400, 150]}
    types = {v.name: onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name
             for v in (*graph.input, *graph.output)}
    assert types == {"frame": "uint8", "num_detections": "int32", "boxes": "float32", "scores": "float32",
                     "labels": "int32", "masks": "int32"}

    # The only data-dependent shapes: NonMaxSuppression's selection and what is computed from it
    # before it is scattered back into a fixed-size vector.
    inferred = onnx.shape_inference.infer_shapes(model).graph
    dynamic = {v.name for v in inferred.value_info if _dynamic_dims(v)}
    origin = {o for n in graph.node if n.op_type == "NonMaxSuppression" for o in n.output}
    for node in graph.node:
        if node.op_type != "NonMaxSuppression" and any(o in dynamic for o in node.output):
            assert any(i in origin for i in node.input), f"{node.op_type} {node.name} has a dynamic output"
            origin.update(node.output)
        if node.op_type == "ScatterElements":
            assert node.output[0] not in dynamic

    # Inputs TensorRT's parser needs as initializers (onnx-tensorrt docs/operators.md).
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    must_be_constant = {"TopK": [1], "NonMaxSuppression": [2, 3, 4], "Slice": [3], "Unsqueeze": [1],
                        "Squeeze": [1], "Conv": [1], "ConvTranspose": [1], "Resize": [2, 3]}
    for node in graph.node:
        for i in must_be_constant.get(node.op_type, []):
            if i < len(node.input) and node.input[i]:
                assert node.input[i] in consts, f"{node.op_type} {node.name}: input {i} is not an initializer"
        if node.op_type == "TopK":
            k = int(consts[node.input[1]].reshape(-1)[0])
            assert 0 < k < 3840, f"TopK K={k} is over TensorRT's limit"
        if node.op_type == "Resize":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attrs.get("mode", b"nearest") in (b"linear", b"nearest")
            assert attrs.get("coordinate_transformation_mode", b"half_pixel") in (
                b"half_pixel", b"pytorch_half_pixel", b"align_corners", b"asymmetric")
            nearest = (b"floor", b"ceil", b"round_prefer_floor", b"round_prefer_ceil")
            assert attrs.get("nearest_mode", b"floor") in nearest
            assert attrs.get("antialias", 0) == 0

    for node in graph.node:
        if node.domain == "edgeseg":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attrs["plugin_version"] == b"1" and attrs["plugin_namespace"] == b"edgeseg"


def test_metadata_describes_the_graph(v1_400x600: Exported) -> None:
    model = edgeseg.load(v1_400x600.path)
    m = model.metadata
    assert (m.kind, m.arch, m.num_classes) == ("instance", "maskrcnn_resnet50_fpn", 91)
    assert m.classes[1] == "person" and m.classes[0] == "__background__"
    assert m.frame_hw == (400, 600) and m.input_hw == (800, 1200)
    assert m.extra["padded_hw"] == [800, 1216] and m.extra["max_detections"] == 100
    assert m.extra["score_thresh"] == 0.0 and m.extra["paste"] == "torchvision"


def test_frame_of_another_size_maps_back(v1_400x600: Exported, photos: list[np.ndarray]) -> None:
    model = edgeseg.load(v1_400x600.path, threads=2)
    photo = photos[4]  # 512x512: scaled to the model's 400x600 and back
    result = model.instances(photo)
    assert result.masks.shape == (len(result), 512, 512) and result.masks.dtype == np.uint8
    direct = model.instances(fit_frame(photo, (400, 600)))  # what the model does to the photo
    sx, sy = 512 / 600, 512 / 400
    np.testing.assert_allclose(result.boxes, direct.boxes * np.array([sx, sy, sx, sy], np.float32), rtol=1e-6)


@pytest.fixture(scope="module")
def v1_thresholded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Score threshold 0.6: random weights then leave fewer detections than K = 100."""
    path = tmp_path_factory.mktemp("maskrcnn") / "thresholded.onnx"
    export_maskrcnn(build_arch("resnet50_fpn", 91), path, (400, 600), GraphOptions(score_thresh=0.6))
    return path


def test_cpu_backend_runs_the_mask_branch_on_detections_only(v1_thresholded: Path,
                                                             photos: list[np.ndarray]) -> None:
    """Trimming the mask branch to the detected rows changes no output byte."""
    from edgeseg.backends.ort import OnnxRuntimeBackend

    names = ["num_detections", "boxes", "scores", "labels", "masks"]
    trimmed = OnnxRuntimeBackend(v1_thresholded, threads=2)
    full = OnnxRuntimeBackend(v1_thresholded, threads=2, trim_rows=False)
    frame = fit(photos[2], (400, 600))
    a, b = trimmed.run({"frame": frame}, names), full.run({"frame": frame}, names)
    assert 0 < int(a["num_detections"][0]) < 100
    for name in names:
        assert a[name].shape == b[name].shape and a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert trimmed._split is not None and trimmed._split.rows is not None

"""ZoomLinear (matterport's molded input) against ``conventions.mold_image`` and skimage, bit for
bit: the CPU build (``edgeseg.ops.zoom_linear``, its fast path and the kernel's per-element
path), the torch stand-in of the converter, the node run by the ONNX Runtime backend, and
matterport's own molded image of case A (``../shared/matterport``; skipped where it is absent)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edgeseg import ops
from edgeseg.converters.maskrcnn.ops import zoom_linear as zoom_linear_torch
from edgeseg.converters.matterport import conventions
from edgeseg.custom_ops import ZOOM_LINEAR, attribute_decimal

SHARED = Path(__file__).resolve().parents[2] / "shared" / "matterport"
MEAN = [123.7, 116.8, 103.9]  # matterport's MEAN_PIXEL

#: (frame H, W, IMAGE_MIN_DIM, IMAGE_MAX_DIM): upsampling, downsampling, scale 1, odd paddings
#: (D - h odd puts the odd row at the bottom), and a zoom factor that is not a short fraction.
CASES = {
    "upsample": (100, 150, 256, 256),
    "downsample": (300, 200, 64, 128),
    "scale_1": (96, 128, 64, 128),
    "odd_padding": (50, 333, 100, 512),
    "odd_both": (77, 131, 100, 193),
}


def frame(h: int, w: int, seed: int, lo: int = 0, hi: int = 256) -> np.ndarray:
    return np.random.default_rng(seed).integers(lo, hi, (h, w, 3), dtype=np.uint8)


def attrs_for(h: int, w: int, min_dim: int, max_dim: int, mean: list[float] = MEAN) -> dict[str, Any]:
    """The op's attributes for matterport's "square" mode (as the converter computes them)."""
    scale = conventions.square_scale(h, w, min_dim, max_dim, 0)
    nh, nw = conventions.scaled_size(h, w, scale)
    return {"height": nh, "width": nw, "canvas_height": max_dim, "canvas_width": max_dim,
            "top": (max_dim - nh) // 2, "left": (max_dim - nw) // 2, "mean": mean}


def run_torch(image: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    x = torch.from_numpy(image).to(torch.float32)
    out = zoom_linear_torch(x, torch.stack([x.min(), x.max()]), **attrs)
    assert out.dtype == torch.float32
    return out.numpy()


def run_cpu(image: np.ndarray, attrs: dict[str, Any], per_element: bool = False) -> np.ndarray:
    x = image.astype(np.float32)
    value_range = np.array([x.min(), x.max()], dtype=np.float32)
    if per_element:
        return ops._zoom_linear(x, value_range, threads=0, per_element=True, **attrs)
    return ops.zoom_linear(x, value_range, **attrs)


def bits(a: np.ndarray) -> np.ndarray:
    """float32 values as their bit patterns: equal bits, not merely equal values."""
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def skimage_reference(image: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    """skimage's resize as matterport calls it, astype(uint8), the zero canvas, minus the mean in
    float64, cast to float32; [C, canvas_h, canvas_w]."""
    from skimage.transform import resize

    h, w = int(attrs["height"]), int(attrs["width"])
    zoomed = image if (h, w) == image.shape[:2] else resize(
        image, (h, w), order=1, mode="constant", cval=0, clip=True, preserve_range=True, anti_aliasing=False)
    canvas = np.zeros((int(attrs["canvas_height"]), int(attrs["canvas_width"]), image.shape[2]),
                      dtype=np.uint8)
    top, left = int(attrs["top"]), int(attrs["left"])
    canvas[top:top + h, left:left + w] = zoomed.astype(np.uint8)
    molded = (canvas.astype(np.float64) - np.asarray(attrs["mean"], dtype=np.float64)).astype(np.float32)
    return molded.transpose(2, 0, 1)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("pixels", [(0, 256), (7, 241)], ids=["full_range", "narrow_range"])
def test_torch_stand_in_is_mold_image(case: str, pixels: tuple[int, int]) -> None:
    h, w, min_dim, max_dim = CASES[case]
    image = frame(h, w, seed=len(case), lo=pixels[0], hi=pixels[1])
    molded, window, _ = conventions.mold_image(image, min_dim, max_dim, 0, MEAN)
    attrs = attrs_for(h, w, min_dim, max_dim)
    assert window == (attrs["top"], attrs["left"], int(attrs["top"]) + int(attrs["height"]),
                      int(attrs["left"]) + int(attrs["width"]))
    out = run_torch(image, attrs)
    assert out.shape == (3, max_dim, max_dim)
    assert np.array_equal(bits(out), bits(molded.transpose(2, 0, 1)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_torch_stand_in_is_skimage_resize(case: str) -> None:
    h, w, min_dim, max_dim = CASES[case]
    image = frame(h, w, seed=100 + len(case), lo=3, hi=250)
    attrs = attrs_for(h, w, min_dim, max_dim)
    assert np.array_equal(bits(run_torch(image, attrs)), bits(skimage_reference(image, attrs)))


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("pixels", [(0, 256), (7, 241)], ids=["full_range", "narrow_range"])
def test_cpu_build_is_mold_image(case: str, pixels: tuple[int, int]) -> None:
    h, w, min_dim, max_dim = CASES[case]
    image = frame(h, w, seed=len(case), lo=pixels[0], hi=pixels[1])
    molded, _, _ = conventions.mold_image(image, min_dim, max_dim, 0, MEAN)
    attrs = attrs_for(h, w, min_dim, max_dim)
    expected = bits(molded.transpose(2, 0, 1))
    fast, per_element = run_cpu(image, attrs), run_cpu(image, attrs, per_element=True)
    assert fast.shape == per_element.shape == (3, max_dim, max_dim) and fast.dtype == np.float32
    assert np.array_equal(bits(fast), expected)
    assert np.array_equal(bits(per_element), expected)


@pytest.mark.parametrize("case", sorted(CASES))
def test_cpu_build_is_skimage_resize_and_the_torch_stand_in(case: str) -> None:
    h, w, min_dim, max_dim = CASES[case]
    image = frame(h, w, seed=100 + len(case), lo=3, hi=250)
    attrs = attrs_for(h, w, min_dim, max_dim)
    out = bits(run_cpu(image, attrs))
    assert np.array_equal(out, bits(skimage_reference(image, attrs)))
    assert np.array_equal(out, bits(run_torch(image, attrs)))


@pytest.mark.parametrize(("size", "canvas", "offset"), [
    ((1, 1), (3, 2), (1, 1)),      # everything from one sample
    ((40, 3), (41, 5), (0, 2)),    # strongly anisotropic: up along y, down along x
    ((5, 9), (5, 9), (0, 0)),      # no padding at all
])
def test_cpu_build_on_other_geometries(size: tuple[int, int], canvas: tuple[int, int],
                                       offset: tuple[int, int]) -> None:
    image = frame(7, 11, seed=3)
    attrs = {"height": size[0], "width": size[1], "canvas_height": canvas[0], "canvas_width": canvas[1],
             "top": offset[0], "left": offset[1], "mean": [0.5, -2.25, 1e-3]}
    expected = bits(skimage_reference(image, attrs))
    assert np.array_equal(bits(run_cpu(image, attrs)), expected)
    assert np.array_equal(bits(run_cpu(image, attrs, per_element=True)), expected)
    assert np.array_equal(bits(run_torch(image, attrs)), expected)


def test_value_range_is_the_ops_input_not_recomputed() -> None:
    """The clip range comes from the graph (ReduceMin / ReduceMax): a narrower one clips more."""
    image = frame(10, 10, seed=9)
    attrs: dict[str, Any] = {"height": 15, "width": 15, "canvas_height": 15, "canvas_width": 15}
    out = ops.zoom_linear(image, np.array([50.0, 60.0], np.float32), **attrs)
    assert out.min() == 50.0 and out.max() == 60.0
    x = torch.from_numpy(image).to(torch.float32)
    assert np.array_equal(bits(out), bits(zoom_linear_torch(x, torch.tensor([50.0, 60.0]), **attrs).numpy()))


def test_mean_attribute_is_read_as_the_decimal_it_was_written_from() -> None:
    """ONNX carries ``mean`` as float32; the op subtracts the decimal it came from (123.7, not
    123.69999695), as matterport's float64 MEAN_PIXEL. The CPU build (zoom_linear_mean.h) and the
    Python rule (``attribute_decimal``, used by the stand-in) agree on every value tried."""
    assert attribute_decimal(123.7) == 123.7 and attribute_decimal(float(np.float32(123.7))) == 123.7
    assert attribute_decimal(0.1) == 0.1 and attribute_decimal(-2.5e-7) == -2.5e-7
    assert attribute_decimal(1 / 3) == 0.33333334  # more digits than float32 holds: its shortest decimal
    rng = np.random.default_rng(11)
    written = [123.7, 116.8, 103.9, 0.0, -0.0, 1e-30, 3.4e38, 0.5, 255.0, 127.5]
    written += list(rng.uniform(-300, 300, 40)) + list(np.round(rng.uniform(0, 256, 40), 3))
    written += [float(v) for v in rng.integers(0, 2**31, 40).astype(np.uint32).view(np.float32)
                if np.isfinite(v)]
    pixels = np.arange(256, dtype=np.float32).reshape(1, 256, 1)
    for start in range(0, len(written), 8):
        means = written[start:start + 8]
        image = np.ascontiguousarray(np.repeat(pixels, len(means), axis=2))
        out = ops.zoom_linear(image, np.array([0, 255], np.float32), height=1, width=256, canvas_height=1,
                              canvas_width=256, mean=means)
        expected = np.stack([(pixels[0, :, 0].astype(np.float64) - attribute_decimal(m)).astype(np.float32)
                             for m in means])
        assert np.array_equal(bits(out[:, 0, :]), bits(expected)), means


def test_one_mean_serves_every_channel() -> None:
    image = frame(20, 30, seed=5)
    attrs = {"height": 31, "width": 17, "canvas_height": 40, "canvas_width": 20, "top": 9, "left": 3}
    one = run_torch(image, {**attrs, "mean": [100.25]})
    each = run_torch(image, {**attrs, "mean": [100.25] * 3})
    assert np.array_equal(bits(one), bits(each))
    assert np.array_equal(bits(one), bits(skimage_reference(image, {**attrs, "mean": [100.25]})))
    assert np.array_equal(bits(run_cpu(image, {**attrs, "mean": [100.25]})), bits(one))


@pytest.mark.parametrize(("attrs", "message"), [
    ({"width": 4, "canvas_height": 4, "canvas_width": 4}, "ZoomLinear: attribute height is required"),
    ({"height": 0, "width": 4, "canvas_height": 4, "canvas_width": 4}, "ZoomLinear: height must be >= 1, got 0"),
    ({"height": 4, "width": 4, "canvas_height": 4, "canvas_width": 4, "top": -1},
     "ZoomLinear: top must be >= 0, got -1"),
    ({"height": 4, "width": 4, "canvas_height": 4, "canvas_width": 4, "left": 2.0},
     "ZoomLinear: left must be an integer, got 2.0"),
    ({"height": 4, "width": 4, "canvas_height": 4, "canvas_width": 4, "mean": [0.0] * 9},
     "ZoomLinear: mean must hold 1 to 8 values, got 9"),
    ({"height": 4, "width": 4, "canvas_height": 6, "canvas_width": 4, "top": 3},
     "ZoomLinear: top + height (3 + 4) exceeds canvas_height (6): the zoomed image must lie inside the canvas"),
    ({"height": 4, "width": 5, "canvas_height": 4, "canvas_width": 4},
     "ZoomLinear: left + width (0 + 5) exceeds canvas_width (4): the zoomed image must lie inside the canvas"),
    ({"height": 4, "width": 4, "canvas_height": 4, "canvas_width": 4, "mean": [1.0, 2.0]},
     "ZoomLinear: mean must hold 1 or C = 3 values, got 2"),
])
def test_attribute_errors_are_typed(attrs: dict[str, Any], message: str) -> None:
    # the numpy API's attributes are keyword parameters: a missing one is Python's TypeError there
    for run in (run_torch, run_cpu) if "height" in attrs else (run_torch,):
        with pytest.raises(ValueError) as err:
            run(frame(4, 4, seed=0), attrs)
        assert str(err.value) == message


@pytest.mark.parametrize(("image", "value_range", "message"), [
    (np.zeros((4, 4)), None, "image must have shape [H, W, C] with H, W, C >= 1; got shape (4, 4)"),
    (np.zeros((4, 0, 3)), None, "image must have shape [H, W, C] with H, W, C >= 1; got shape (4, 0, 3)"),
    (np.zeros((4, 4, 3), dtype=bool), None,
     "image must be a float32 array (integer and float dtypes are converted); got dtype bool"),
    (np.zeros((4, 4, 3)), [1.0, 2.0, 3.0], "value_range must be (min, max), finite, min <= max; got [1.0, 2.0, 3.0]"),
    (np.zeros((4, 4, 3)), [5.0, 2.0], "value_range must be (min, max), finite, min <= max; got [5.0, 2.0]"),
    (np.zeros((4, 4, 3)), [0.0, np.inf], "value_range must be (min, max), finite, min <= max; got [0.0, inf]"),
])
def test_cpu_argument_errors_are_typed(image: np.ndarray, value_range: Any, message: str) -> None:
    with pytest.raises(ValueError) as err:
        ops.zoom_linear(image, value_range, height=4, width=4, canvas_height=4, canvas_width=4)
    assert str(err.value) == message
    with pytest.raises(ValueError, match=r"^mean must be finite; got \[nan\]$"):
        ops.zoom_linear(np.zeros((4, 4, 3)), None, height=4, width=4, canvas_height=4, canvas_width=4,
                        mean=[float("nan")])


def test_image_must_be_hwc() -> None:
    x = torch.zeros((2, 4, 4, 3))
    with pytest.raises(ValueError) as err:
        zoom_linear_torch(x, torch.zeros(2), height=4, width=4, canvas_height=4, canvas_width=4)
    assert str(err.value) == "ZoomLinear: image must be [H, W, C]; got shape [2, 4, 4, 3]"


def test_export_writes_a_typed_zoom_linear_node(tmp_path: Path) -> None:
    import onnx

    class Mold(torch.nn.Module):
        def forward(self, bgr: torch.Tensor) -> torch.Tensor:
            rgb = bgr.flip(2).to(torch.float32)
            return zoom_linear_torch(rgb, torch.stack([rgb.min(), rgb.max()]), height=20, width=30,
                                     canvas_height=32, canvas_width=33, top=6, left=1, mean=MEAN)

    path = tmp_path / "mold.onnx"
    torch.onnx.export(Mold(), (torch.zeros((10, 15, 3), dtype=torch.uint8),), str(path), opset_version=17,
                      dynamo=False, input_names=["frame"], output_names=["molded"])
    model = onnx.load(str(path))
    (node,) = [n for n in model.graph.node if n.domain == "edgeseg"]
    assert node.op_type == ZOOM_LINEAR.op_type
    got = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert got == {"height": 20, "width": 30, "canvas_height": 32, "canvas_width": 33, "top": 6, "left": 1,
                   "mean": pytest.approx(MEAN), "plugin_version": b"1", "plugin_namespace": b"edgeseg"}
    kinds = {a.name: a.type for a in node.attribute}
    assert kinds["mean"] == onnx.AttributeProto.FLOATS and kinds["top"] == onnx.AttributeProto.INT
    out = model.graph.output[0].type.tensor_type
    assert out.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_value for d in out.shape.dim] == [3, 32, 33]


@pytest.mark.parametrize("first", ["graph_input", "after_cast"])
def test_onnx_runtime_backend_runs_the_node(tmp_path: Path, first: str) -> None:
    """The CPU backend's split graph runs ZoomLinear with the CPU build, also as the graph's first
    node (reading the graph input), and gives mold_image's bits."""
    import onnx
    import onnxruntime as ort

    from edgeseg.backends.split_graph import SplitGraph

    h, w, min_dim, max_dim = CASES["odd_both"]
    attrs = attrs_for(h, w, min_dim, max_dim)

    class Mold(torch.nn.Module):
        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            x = pixels if first == "graph_input" else pixels.to(torch.float32)
            return zoom_linear_torch(x, torch.stack([x.min(), x.max()]), **attrs) * 2.0

    dtype = torch.float32 if first == "graph_input" else torch.uint8
    path = tmp_path / "mold.onnx"
    torch.onnx.export(Mold(), (torch.zeros((h, w, 3), dtype=dtype),), str(path), opset_version=17, dynamo=False,
                      input_names=["pixels"], output_names=["molded"])
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))  # as the converters write it
    if first == "graph_input":
        assert model.graph.node[0].op_type != "Cast"
        assert any(n.op_type == "ZoomLinear" and n.input[0] == "pixels" for n in model.graph.node)
    split = SplitGraph(model, lambda m: ort.InferenceSession(m, providers=["CPUExecutionProvider"]))
    image = frame(h, w, seed=21)
    feed = image.astype(np.float32) if first == "graph_input" else image
    (out,) = split.run({"pixels": feed}, ["molded"]).values()
    molded, _, _ = conventions.mold_image(image, min_dim, max_dim, 0, MEAN)
    assert np.array_equal(bits(out), bits(molded.transpose(2, 0, 1) * np.float32(2.0)))


def test_onnx_runtime_backend_runs_a_graph_that_is_only_the_node() -> None:
    """Both inputs straight from the graph's inputs, no ONNX Runtime segment at all."""
    import onnx
    from onnx import TensorProto, helper

    from edgeseg.backends.split_graph import SplitGraph

    attrs = {"height": 9, "width": 20, "canvas_height": 12, "canvas_width": 21, "top": 2, "left": 1, "mean": MEAN}
    node = helper.make_node("ZoomLinear", ["image", "value_range"], ["molded"], domain="edgeseg",
                            **ZOOM_LINEAR.node_attributes(**attrs))
    graph = helper.make_graph(
        [node], "zoom", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [6, 13, 3]),
                         helper.make_tensor_value_info("value_range", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("molded", TensorProto.FLOAT, [3, 12, 21])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("edgeseg", 1)])
    onnx.checker.check_model(model)
    split = SplitGraph(model, lambda m: pytest.fail("no ONNX Runtime segment expected"))
    image = frame(6, 13, seed=8)
    x = image.astype(np.float32)
    out = split.run({"image": x, "value_range": np.array([x.min(), x.max()], np.float32)}, ["molded"])["molded"]
    assert np.array_equal(bits(out), bits(skimage_reference(image, attrs)))


# ---------------------------------------------------------------------------------------------
# matterport's own molded image (case A)

needs_shared = pytest.mark.skipif(not (SHARED / "outputs_caseA.npz").is_file(),
                                  reason=f"matterport reference data not found at {SHARED} (the shared "
                                         "reference folder, ../shared from the checkout): case A needs it")


@pytest.fixture(scope="module")
def case_a() -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
    """(RGB frame, the op's attributes, matterport's molded_image as [C, D, D])."""
    import cv2

    cfg = json.loads((SHARED / "config_caseA.json").read_text())["all_values_as_instance_has_them"]
    bgr = cv2.imread(str(SHARED / "input_caseA.png"), cv2.IMREAD_COLOR)
    assert bgr is not None
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    outputs = np.load(SHARED / "outputs_caseA.npz")
    attrs = attrs_for(rgb.shape[0], rgb.shape[1], cfg["IMAGE_MIN_DIM"], cfg["IMAGE_MAX_DIM"], cfg["MEAN_PIXEL"])
    top, left = int(attrs["top"]), int(attrs["left"])
    assert (top, left, top + int(attrs["height"]), left + int(attrs["width"])) == tuple(
        outputs["window"].tolist())
    molded = outputs["molded_image"].reshape(cfg["IMAGE_MAX_DIM"], cfg["IMAGE_MAX_DIM"], 3).transpose(2, 0, 1)
    return rgb, attrs, molded


@needs_shared
def test_cpu_build_is_matterports_molded_image(case_a: tuple[np.ndarray, dict[str, Any], np.ndarray]) -> None:
    rgb, attrs, molded = case_a
    assert (attrs["height"], attrs["width"]) == (341, 512)
    assert np.array_equal(bits(run_cpu(rgb, attrs)), bits(molded))
    assert np.array_equal(bits(run_cpu(rgb, attrs, per_element=True)), bits(molded))


@needs_shared
def test_torch_stand_in_is_matterports_molded_image(case_a: tuple[np.ndarray, dict[str, Any], np.ndarray]) -> None:
    rgb, attrs, molded = case_a
    assert np.array_equal(bits(run_torch(rgb, attrs)), bits(molded))


# ---------------------------------------------------------------------------------------------
# precision: ZoomLinear is FP32 in, FP32 out, in FP16 and INT8 files


@pytest.fixture(scope="module")
def mold_then_conv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An FP32 file: uint8 frame -> RGB float -> ZoomLinear -> a 3x3 conv (a network layer)."""
    import onnx

    h, w, min_dim, max_dim = CASES["odd_both"]
    attrs = attrs_for(h, w, min_dim, max_dim)

    class MoldConv(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, frame: torch.Tensor) -> torch.Tensor:
            rgb = frame.flip(2).to(torch.float32)
            molded = zoom_linear_torch(rgb, torch.stack([rgb.min(), rgb.max()]), **attrs)
            return torch.as_tensor(self.conv(molded[None]))

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("precision") / "mold_conv.onnx"
    torch.onnx.export(MoldConv(), (torch.zeros((h, w, 3), dtype=torch.uint8),), str(path), opset_version=17,
                      dynamo=False, input_names=["frame"], output_names=["features"])
    onnx.save(onnx.shape_inference.infer_shapes(onnx.load(str(path))), str(path))
    return path


def _zoom_node(model: Any) -> Any:
    (node,) = [n for n in model.graph.node if n.op_type == "ZoomLinear"]
    return node


def _types(model: Any) -> dict[str, int]:
    graph = model.graph
    return {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}


def test_fp16_file_keeps_zoom_linear_fp32_even_when_a_rule_names_it(mold_then_conv: Path) -> None:
    import onnx
    import onnxruntime as ort

    from edgeseg.backends.split_graph import SplitGraph
    from edgeseg.lint import lint_model
    from edgeseg.precision.fp16 import to_fp16

    fp32 = onnx.load(str(mold_then_conv))
    every_node = {n.name for n in fp32.graph.node}
    half = to_fp16(fp32, every_node)  # a rule list that names every node, ZoomLinear included
    zoom, types = _zoom_node(half), _types(half)
    assert [types[name] for name in (*zoom.input, *zoom.output)] == [onnx.TensorProto.FLOAT] * 3
    (conv,) = [n for n in half.graph.node if n.op_type == "Conv"]
    assert types[conv.input[0]] == onnx.TensorProto.FLOAT16  # the network layer did go FP16, after a Cast
    assert not [v for v in lint_model(half) if v.rule == "plugin-types"]

    h, w, _, _ = CASES["odd_both"]
    image = frame(h, w, seed=4)
    runs = {}
    for name, model in (("fp32", fp32), ("fp16", half)):
        split = SplitGraph(model, lambda m: ort.InferenceSession(m, providers=["CPUExecutionProvider"]))
        runs[name] = split.run({"frame": image[:, :, ::-1].copy()}, [zoom.output[0]])[zoom.output[0]]
    assert runs["fp16"].dtype == np.float32 and np.array_equal(bits(runs["fp16"]), bits(runs["fp32"]))


def test_lint_refuses_an_fp16_zoom_linear(mold_then_conv: Path) -> None:
    import onnx

    from edgeseg.lint import lint_model

    model = onnx.load(str(mold_then_conv))
    zoom = _zoom_node(model)
    for value in model.graph.value_info:
        if value.name in (zoom.input[0], zoom.output[0]):
            value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    found = [v for v in lint_model(model) if v.rule == "plugin-types"]
    details = " | ".join(str(v) for v in found)
    assert f"input 0 ({zoom.input[0]!r}) holds coordinates and must be FP32" in details
    assert f"output 0 ({zoom.output[0]!r}) is FP16: ZoomLinear computes in FP32 only" in details


def test_int8_file_quantizes_around_zoom_linear_not_into_it(mold_then_conv: Path, tmp_path: Path) -> None:
    """Custom nodes are never quantized (rules.quantized keeps the ONNX domain only), even when a
    rule names one: the conv after ZoomLinear is, ZoomLinear stays FP32 in and out."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, TensorData, TensorsData, save_tensors_data

    from edgeseg.lint import lint_model
    from edgeseg.precision import int8
    from edgeseg.precision.rules import LayerRule, PrecisionRules

    fp32 = onnx.load(str(mold_then_conv))
    zoom = _zoom_node(fp32)
    (conv,) = [n for n in fp32.graph.node if n.op_type == "Conv"]
    rules = PrecisionRules("test", (LayerRule(zoom.name, "named, to show it is left out"), LayerRule(conv.name, "")))
    nodes = rules.quantized(fp32.graph)
    assert nodes == [conv.name]
    cache = tmp_path / "ranges.json"
    ranges = {conv.input[0]: TensorData(lowest=np.float32(-124.0), highest=np.float32(152.0)),
              conv.output[0]: TensorData(lowest=np.float32(-200.0), highest=np.float32(200.0))}
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, ranges), cache)
    int8.quantize(mold_then_conv, fp32.graph, tmp_path / "int8.onnx", nodes, "minmax", cache)
    q = onnx.shape_inference.infer_shapes(onnx.load(str(tmp_path / "int8.onnx")))
    zoom, types = _zoom_node(q), _types(q)
    assert [types[name] for name in (*zoom.input, *zoom.output)] == [onnx.TensorProto.FLOAT] * 3
    producers = {out: n for n in q.graph.node for out in n.output}
    (qconv,) = [n for n in q.graph.node if n.op_type == "Conv"]
    assert producers[qconv.input[0]].op_type == "DequantizeLinear"  # the conv was quantized
    assert not [v for v in lint_model(q) if v.rule == "plugin-types"]

"""What TensorRT's ONNX parser would refuse, checked on every graph edgeseg writes (edgeseg.lint),
and the rules themselves on small hand-made graphs that break them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeseg.lint import NMS_MAX_CANDIDATES, RULES, TOPK_MAX_K, lint_model
from tests.conftest import ExportedHRNet, ExportedMaskRCNN

# Every arch of both families at two or three frame sizes (with the session fixtures): odd, tiny,
# elongated, resized inside the graph; both paste modes; a small matterport graph (the zoom paste,
# crop_and_resize pooling, ZoomLinear); each also at FP16, some at INT8.
HRNET_CASES = [("w18_small_v1", (64, 64), None), ("w18_small_v2", (120, 333), (96, 256)),
               ("w18", (64, 96), None), ("w18", (97, 131), None), ("w32", (64, 96), None), ("w32", (100, 64), None),
               ("w48", (64, 96), None), ("w48", (65, 65), None)]
MASKRCNN_CASES = [("resnet18_fpn_lite", (64, 96), "continuous"), ("resnet18_fpn_lite", (257, 401), "torchvision"),
                  ("resnet18_fpn_lite", (720, 1280), "torchvision"), ("resnet50_fpn_v2", (96, 128), "continuous")]
#: matterport: a small Config (ResNet-50, IMAGE_MAX_DIM 256, thin FPN and heads), random weights,
#: a frame the graph zooms up and pads
MATTERPORT_CONFIG = {"BACKBONE": "resnet50", "NUM_CLASSES": 3, "IMAGE_MIN_DIM": 256, "IMAGE_MAX_DIM": 256,
                     "IMAGES_PER_GPU": 1, "TOP_DOWN_PYRAMID_SIZE": 32, "FPN_CLASSIF_FC_LAYERS_SIZE": 64,
                     "DETECTION_MIN_CONFIDENCE": 0.0}
MATTERPORT_FRAME = (97, 131)


@pytest.fixture(scope="module")
def small_graphs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from edgeseg.converters.api import export
    from edgeseg.converters.hrnet.export import build_hrnet, export_hrnet
    from edgeseg.converters.maskrcnn.archs import build_arch
    from edgeseg.converters.maskrcnn.export import export_maskrcnn
    from edgeseg.converters.maskrcnn.graph import GraphOptions

    tmp = tmp_path_factory.mktemp("lint")
    paths = []
    for arch, hw, paste in MASKRCNN_CASES:
        path = tmp / f"{arch}_{hw[0]}x{hw[1]}.onnx"
        export_maskrcnn(build_arch(arch, 5), path, hw, GraphOptions(paste=paste))
        paths.append(path)
    for arch, hw, input_hw in HRNET_CASES:
        path = tmp / f"hrnet_{arch}_{hw[0]}x{hw[1]}.onnx"
        export_hrnet(build_hrnet(arch, 4), path, hw, input_hw)
        paths.append(path)
    config = tmp / "matterport.json"
    config.write_text(json.dumps(MATTERPORT_CONFIG))
    path = tmp / f"matterport_{MATTERPORT_FRAME[0]}x{MATTERPORT_FRAME[1]}.onnx"
    export("matterport", path, frame_hw=MATTERPORT_FRAME, random_weights=True, config=str(config))
    paths.append(path)
    return paths


@pytest.fixture(scope="module")
def every_graph(small_graphs: list[Path], hrnet_small: ExportedHRNet, hrnet_resized: ExportedHRNet,
                maskrcnn_cli: ExportedMaskRCNN, maskrcnn_v1_800x800: ExportedMaskRCNN,
                maskrcnn_v2_400x600: ExportedMaskRCNN) -> list[Path]:
    return [*small_graphs, hrnet_small.path, hrnet_resized.path, maskrcnn_cli.path, maskrcnn_v1_800x800.path,
            maskrcnn_v2_400x600.path]


def test_every_graph_edgeseg_writes_passes_the_parser_rules(every_graph: list[Path]) -> None:
    for path in every_graph:
        violations = lint_model(onnx.load(str(path)))
        assert not violations, f"{path.name}: " + "; ".join(map(str, violations))


def test_edgeseg_lint_passes_a_graph_and_names_each_violation_of_another(
        maskrcnn_cli: ExportedMaskRCNN, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import edgeseg.cli as cli

    assert cli.main(["lint", str(maskrcnn_cli.path)]) == 0
    assert capsys.readouterr().out == (
        f"{maskrcnn_cli.path.name}: passes the {len(RULES)} rules of TensorRT's ONNX parser that edgeseg checks\n")
    bad = tmp_path / "bad.onnx"
    model = _model([helper.make_node("Transpose", ["frame"], ["t"], name="/Transpose", perm=[2, 0, 1]),
                    helper.make_node("Unique", ["t"], ["u"], name="/Unique")],
                   [_value("frame", TensorProto.UINT8, [4, 6, 3])], [_value("u", TensorProto.UINT8, [None])])
    onnx.save(model, str(bad))
    assert cli.main(["lint", str(bad)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "/Transpose (Transpose): uint8-input-cast: reads the UINT8 input 'frame'; Cast it to float first",
        "/Transpose (Transpose): uint8-internal: output 't' is UINT8 inside the graph; Cast to UINT8 only where the "
        "graph ends",
        "/Unique (Unique): supported-op: Unique is not an op TensorRT's ONNX parser imports",
    ]
    assert cli.main(["lint", str(tmp_path / "missing.onnx")]) == 1
    assert capsys.readouterr().err == f"edgeseg: error: {tmp_path / 'missing.onnx'}: no such ONNX file\n"


def test_no_uint8_tensor_inside_any_graph_and_the_frame_is_cast_first(every_graph: list[Path]) -> None:
    """TensorRT's parser refuses a node that outputs UINT8 inside the graph; so the frame goes into
    a Cast before anything else, and UINT8 appears again only as a graph output."""
    for path in every_graph:
        model = onnx.load(str(path))
        graph = onnx.shape_inference.infer_shapes(model).graph
        ends = {v.name for v in (*graph.input, *graph.output)}
        uint8 = [v.name for v in graph.value_info if v.type.tensor_type.elem_type == TensorProto.UINT8]
        assert not [name for name in uint8 if name not in ends], path.name
        consumers = [n for n in graph.node if "frame" in n.input]
        assert [n.op_type for n in consumers] == ["Cast"], (path.name, [n.op_type for n in consumers])
        assert helper.get_attribute_value(consumers[0].attribute[0]) == TensorProto.FLOAT


def test_paste_masks_is_told_the_number_of_detections(maskrcnn_cli: ExportedMaskRCNN) -> None:
    graph = onnx.load(str(maskrcnn_cli.path)).graph
    (paste,) = [n for n in graph.node if n.op_type == "PasteMasks"]
    assert len(paste.input) == 3 and paste.input[2] == "num_detections"


def _family(model: onnx.ModelProto) -> str:
    from edgeseg.metadata import ModelMetadata

    meta = ModelMetadata.from_props({p.key: p.value for p in model.metadata_props})
    if meta.arch.startswith("matterport_"):
        return "matterport"
    return "maskrcnn" if meta.kind == "instance" else "hrnet"


def test_every_graph_passes_at_fp16_and_the_precision_rules_match_every_arch(every_graph: list[Path]) -> None:
    """The FP16 file of every graph passes the rules too; and the family's precision rules match
    nodes of every arch (a rule that matches none is an error: the layer names changed), with the
    Mask R-CNN heads in FP16 and their predictors in FP32."""
    from edgeseg.converters.api import FAMILIES
    from edgeseg.precision.fp16 import to_fp16

    for path in every_graph:
        model = onnx.load(str(path))
        family = _family(model)
        reduced = FAMILIES[family].precision_rules.reduced(model.graph)
        names = [n.name for n in model.graph.node]
        if family == "maskrcnn":
            assert all(n in reduced for n in names
                       if n.startswith(("/backbone/", "/roi_heads/box_head/", "/roi_heads/mask_head/"))), path.name
            assert not [n for n in reduced if "/box_predictor/" in n or "mask_fcn_logits" in n
                        or "/rpn/head/cls_logits" in n or "/rpn/head/bbox_pred" in n], path.name
        elif family == "matterport":
            layers = ("/backbone/", "/rpn/rpn_conv", "/box_head/class_conv", "/mask_head/mask_convs")
            stem_pool = ("/backbone/Pad_1", "/backbone/MaxPool")  # -inf padding: FP32 (no INT8 range holds it)
            assert all(n in reduced for n in names if n.startswith(layers) and n not in stem_pool), path.name
            assert not [n for n in reduced if n in stem_pool], path.name
            scores = ("/rpn/rpn_class", "/rpn/rpn_bbox", "/rpn/Softmax", "/box_head/class_logits/",
                      "/box_head/bbox_fc/", "/box_head/Softmax", "/mask_head/mask_logits/", "/mask_head/Sigmoid")
            assert not [n for n in reduced if n.startswith(scores)], path.name
        else:
            assert all(n in reduced for n in names if n.startswith("/net/") and "last_layer.3" not in n), path.name
        violations = lint_model(to_fp16(model, reduced))
        assert not violations, f"{path.name} (fp16): " + "; ".join(map(str, violations))


def test_int8_files_of_other_archs_pass_the_parser_rules(small_graphs: list[Path], tmp_path: Path,
                                                         photos: list[np.ndarray],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """INT8 of the archs the precision tests do not cover (they quantize the reference models)."""
    import cv2

    from edgeseg.converters.api import FAMILIES
    from edgeseg.precision.convert import Calibration, apply_precision

    monkeypatch.setenv("EDGESEG_CACHE_DIR", str(tmp_path / "cache"))
    images = tmp_path / "calib"
    images.mkdir()
    cv2.imwrite(str(images / "0.png"), photos[0])  # one frame: the structure is what is checked
    for path in small_graphs:
        if not path.name.startswith(("resnet50_fpn_v2", "hrnet_w48_64x96", "matterport")):
            continue
        family = _family(onnx.load(str(path)))
        out = tmp_path / f"int8_{path.name}"
        with pytest.warns(UserWarning, match="calibration image"):
            apply_precision(path, out, "int8", FAMILIES[family].precision_rules, Calibration(images=images))
        violations = lint_model(onnx.load(str(out)))
        assert not violations, f"{out.name}: " + "; ".join(map(str, violations))


# ---------------------------------------------------------------------------------------------
# The rules, each broken once


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
           inits: list[onnx.TensorProto] | None = None, custom: bool = False) -> onnx.ModelProto:
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("edgeseg", 1)] if custom else [])
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits or [])
    return onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=opsets))


def _value(name: str, dtype: int, shape: list[int | None]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def _const(name: str, values: list[int] | list[float] | list[list[int]], dtype: type = np.int64) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def _lines(model: onnx.ModelProto) -> list[str]:
    return [str(v) for v in lint_model(model)]


def test_lint_names_the_node_and_rule_of_the_old_uint8_preprocessing() -> None:
    """frame (uint8) -> Transpose -> Cast: what every edgeseg graph did before Cast came first."""
    model = _model([helper.make_node("Transpose", ["frame"], ["t"], name="/Transpose", perm=[2, 0, 1]),
                    helper.make_node("Cast", ["t"], ["x"], name="/Cast", to=TensorProto.FLOAT)],
                   [_value("frame", TensorProto.UINT8, [4, 6, 3])], [_value("x", TensorProto.FLOAT, [3, 4, 6])])
    assert _lines(model) == [
        "/Transpose (Transpose): uint8-input-cast: reads the UINT8 input 'frame'; Cast it to float first",
        "/Transpose (Transpose): uint8-internal: output 't' is UINT8 inside the graph; Cast to UINT8 only where the "
        "graph ends",
    ]


def test_lint_topk_and_nms_limits() -> None:
    x = _value("x", TensorProto.FLOAT, [1, 8000])
    model = _model([helper.make_node("TopK", ["x", "k"], ["v", "i"], name="top", axis=-1)],
                   [x], [_value("v", TensorProto.FLOAT, [1, 4000]), _value("i", TensorProto.INT64, [1, 4000])],
                   [_const("k", [4000])])
    assert _lines(model) == [f"top (TopK): topk-k: K = 4000 > {TOPK_MAX_K}"]
    boxes = _value("boxes", TensorProto.FLOAT, [1, 6000, 4])
    scores = _value("scores", TensorProto.FLOAT, [1, 1, 6000])
    model = _model([helper.make_node("NonMaxSuppression", ["boxes", "scores", "n"], ["sel"], name="nms")],
                   [boxes, scores], [_value("sel", TensorProto.INT64, [None, 3])], [_const("n", [100])])
    assert _lines(model) == [f"nms (NonMaxSuppression): nms-candidates: 6000 candidate boxes per image > "
                             f"{NMS_MAX_CANDIDATES}"]


def test_lint_computed_constants_and_the_opset() -> None:
    x = _value("x", TensorProto.FLOAT, [1, 8])
    nodes = [helper.make_node("Shape", ["x"], ["k"], name="shape"),
             helper.make_node("Slice", ["k", "zero", "one"], ["k1"], name="slice"),
             helper.make_node("TopK", ["x", "k1"], ["v", "i"], name="top")]
    model = _model(nodes, [x], [_value("v", TensorProto.FLOAT, [1, None]), _value("i", TensorProto.INT64, [1, None])],
                   [_const("zero", [1]), _const("one", [2])])
    model.opset_import[0].version = 21
    assert _lines(model) == [
        "(model) (opset_import): opset: opset 21; export with an opset in 9..20",
        "top (TopK): initializer-input: input 1 (K) is computed, not a constant",
    ]


def test_lint_resize_argmax_scatternd_and_attributes() -> None:
    x = _value("x", TensorProto.FLOAT, [1, 1, 4, 4])
    u8 = _value("u", TensorProto.UINT8, [1, 1, 4, 4])
    nodes = [
        helper.make_node("Resize", ["x", "", "scales"], ["r"], name="resize", mode="linear", antialias=1,
                         coordinate_transformation_mode="half_pixel_symmetric"),
        helper.make_node("ArgMax", ["u"], ["a"], name="argmax", axis=1),
        helper.make_node("ScatterND", ["x", "idx", "upd"], ["s"], name="scatter", reduction="add"),
        helper.make_node("Relu", ["x"], ["y"], name="relu", big=2**40),
    ]
    model = _model(nodes, [x, u8], [_value(n, TensorProto.FLOAT, []) for n in ("r", "s", "y")]
                   + [_value("a", TensorProto.INT64, [])],
                   [_const("scales", [1.0, 1.0, 2.0, 2.0], np.float32), _const("idx", [[0, 0, 0, 0]]),
                    _const("upd", [1.0], np.float32)])
    assert _lines(model) == [
        "resize (Resize): resize: coordinate_transformation_mode 'half_pixel_symmetric'",
        "resize (Resize): resize: antialias = 1",
        "argmax (ArgMax): uint8-input-cast: reads the UINT8 input 'u'; Cast it to float first",
        "argmax (ArgMax): argmax-uint8: UINT8 input; Cast it to float first",
        "scatter (ScatterND): scatternd-reduction: reduction 'add'",
        "relu (Relu): int32-attribute: attribute big does not fit in int32",
    ]


def test_lint_custom_nodes_need_a_plugin_identity_and_a_name_of_their_own() -> None:
    x = _value("x", TensorProto.FLOAT, [2, 5])
    nodes = [helper.make_node("RoiAlign", ["x"], ["a"], name="clash", domain="edgeseg",
                              plugin_version="1", plugin_namespace="edgeseg"),
             helper.make_node("MyOp", ["x"], ["b"], name="anonymous", domain="edgeseg")]
    model = _model(nodes, [x], [_value("a", TensorProto.FLOAT, [2, 5]), _value("b", TensorProto.FLOAT, [2, 5])],
                   custom=True)
    assert _lines(model) == [
        "clash (RoiAlign): custom-op: op_type 'RoiAlign' is a built-in ONNX op: the parser would import it as that, "
        "not as a plugin",
        "anonymous (MyOp): custom-op: no string attribute plugin_version",
        "anonymous (MyOp): custom-op: no string attribute plugin_namespace",
    ]


def test_every_rule_says_where_it_was_read() -> None:
    for rule in RULES.values():
        assert rule.text and rule.source, rule.name

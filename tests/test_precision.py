"""FP16 and INT8 files (edgeseg.precision): their structure, their accuracy against FP32 on the
reference models, and bad calibration input.

The reference models (shipped weights) are converted at all three precisions once per module,
calibrated on 32 generated training scenes, and scored on 30 held-out scenes; the README's table
is the same on 200 (``edgeseg eval``)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgeseg
import edgeseg.cli as cli
from edgeseg.converters.api import FAMILIES, export
from edgeseg.converters.reference import HRNET, MASKRCNN, WEIGHTS_DIR
from edgeseg.errors import ArgumentError, EdgesegWarning
from edgeseg.lint import lint_model
from edgeseg.precision.calibration import MIN_IMAGES
from edgeseg.precision.convert import Calibration
from edgeseg.precision.rules import FLOAT_ONLY_OPS

VAL, CALIB = 30, 32


@dataclass
class Converted:
    family: str
    files: dict[str, Path]  # precision -> .onnx

    def model(self, precision: str) -> onnx.ModelProto:
        return onnx.load(str(self.files[precision]))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGESEG_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeseg.scenes import write_dataset

    return write_dataset(tmp_path_factory.mktemp("scenes") / "scenes", CALIB, VAL, 0, (256, 256))


@pytest.fixture(scope="module")
def classes_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeseg.converters.reference import SCENE_CLASSES

    path = tmp_path_factory.mktemp("classes") / "scenes.txt"
    path.write_text("\n".join(SCENE_CLASSES) + "\n")
    return path


def _convert_all(tmp: Path, family: str, scenes: Path, classes: Path) -> Converted:
    ref = MASKRCNN if family == "maskrcnn" else HRNET
    files = {}
    for precision in ("fp32", "fp16", "int8"):
        files[precision] = tmp / f"{family}_{precision}.onnx"
        export(family, files[precision], arch=ref.arch, frame_hw=ref.frame_hw, weights=WEIGHTS_DIR / ref.weights,
               classes=str(classes), precision=precision,
               calibration=Calibration(images=scenes / "train" / "images") if precision == "int8" else None)
    return Converted(family, files)


@pytest.fixture(scope="module")
def maskrcnn_files(tmp_path_factory: pytest.TempPathFactory, scenes: Path, classes_file: Path,
                   cache_dir: Path) -> Converted:
    return _convert_all(tmp_path_factory.mktemp("mrcnn"), "maskrcnn", scenes, classes_file)


@pytest.fixture(scope="module")
def hrnet_files(tmp_path_factory: pytest.TempPathFactory, scenes: Path, classes_file: Path,
                cache_dir: Path) -> Converted:
    return _convert_all(tmp_path_factory.mktemp("hrnet"), "hrnet", scenes, classes_file)


def _types(model: onnx.ModelProto) -> dict[str, int]:
    g = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.value_info, *g.input, *g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


# ---------------------------------------------------------------------------------------------
# FP16


@pytest.mark.parametrize("which", ["maskrcnn", "hrnet"])
def test_fp16_graph_is_fp16_in_the_network_layers_and_fp32_elsewhere(
        which: str, request: pytest.FixtureRequest) -> None:
    files: Converted = request.getfixturevalue(f"{which}_files")
    fp32, fp16 = files.model("fp32"), files.model("fp16")
    reduced = FAMILIES[which].precision_rules.reduced(fp32.graph)
    types32, types16 = _types(fp32), _types(fp16)
    checked = 0
    for node in fp32.graph.node:
        for out in node.output:
            if types32.get(out) != TensorProto.FLOAT:
                continue
            want = TensorProto.FLOAT16 if node.name in reduced else TensorProto.FLOAT
            got = types16.get(out, types16.get(f"{out}__fp16"))
            assert got == want, (node.name, out)
            checked += 1
        if node.name in reduced and node.op_type in ("Conv", "Gemm"):
            assert types16[node.input[1]] == TensorProto.FLOAT16, node.name  # weights stored as FP16
    assert checked > 50
    assert [(o.name, o.type.tensor_type.elem_type) for o in fp16.graph.output] == [
        (o.name, o.type.tensor_type.elem_type) for o in fp32.graph.output]
    # one Cast per tensor crossing between the regions, nothing more
    added = [n for n in fp16.graph.node if n.op_type == "Cast" and n.name.endswith(("__cast_fp16", "__cast_fp32"))]
    assert 0 < len(added) <= (10 if which == "maskrcnn" else 3), [n.name for n in added]
    assert not lint_model(fp16)
    assert edgeseg.load(files.files["fp16"]).metadata.precision == "fp16"


def test_fp16_maskrcnn_keeps_coordinates_scores_and_nms_in_fp32(maskrcnn_files: Converted) -> None:
    fp16 = maskrcnn_files.model("fp16")
    types = _types(fp16)
    for node in fp16.graph.node:
        if node.op_type == "MultiLevelRoIAlign":
            assert types[node.input[0]] == TensorProto.FLOAT  # RoIs
            assert {types[f] for f in node.input[1:]} == {TensorProto.FLOAT16}  # FPN features
            assert types[node.output[0]] == TensorProto.FLOAT16
        if node.op_type == "PasteMasks":
            assert types[node.input[0]] == types[node.input[1]] == TensorProto.FLOAT
        if node.op_type in ("NonMaxSuppression", "TopK", "Exp", "Softmax", "Sigmoid"):
            assert all(types.get(i) != TensorProto.FLOAT16 for i in node.input if i), node.name
        if "predictor" in node.name and node.op_type in ("Gemm", "Conv") and "conv5_mask" not in node.name:
            assert types[node.output[0]] == TensorProto.FLOAT, node.name


def test_fp16_hrnet_rounds_to_fp16_on_the_cpu_and_agrees_with_fp32(hrnet_files: Converted, scenes: Path) -> None:
    """ONNX Runtime runs the FP16 graph (fp16 kernels where it has them, elsewhere a float node
    whose output it rounds to fp16): the logits move by FP16 rounding, not zero, not more."""
    import cv2

    a, b = edgeseg.load(hrnet_files.files["fp32"]), edgeseg.load(hrnet_files.files["fp16"])
    out = a.metadata.outputs["logits"]
    frames = [cv2.imread(str(p)) for p in sorted((scenes / "val" / "images").iterdir())[:5]]
    rel, agree = [], []
    for read in frames:
        assert read is not None
        frame: np.ndarray = read
        la = a.backend.run({"frame": frame}, [out, a.metadata.outputs["label_map"]])
        lb = b.backend.run({"frame": frame}, [out, b.metadata.outputs["label_map"]])
        rel.append(float(np.abs(la[out] - lb[out]).max() / np.abs(la[out]).max()))
        agree.append(float(np.mean(la[a.metadata.outputs["label_map"]] == lb[b.metadata.outputs["label_map"]])))
    assert 1e-5 < max(rel) < 2e-2, rel
    assert min(agree) >= 0.999, agree


def test_roi_align_cpu_kernel_takes_fp16_features_as_the_plugin_does() -> None:
    """FP16 features: the sums in float, the output rounded to nearest (the CUDA kernel's contract)."""
    from edgeseg.custom_ops import MULTILEVEL_ROI_ALIGN

    rng = np.random.default_rng(3)
    levels = [rng.standard_normal((1, 4, 32 >> k, 48 >> k)).astype(np.float16) for k in range(4)]
    rois = np.array([[0, 3.5, 2.0, 90.0, 60.0], [0, 10, 10, 40, 120]], np.float32)
    attrs = MULTILEVEL_ROI_ALIGN.node_attributes()
    (half,) = MULTILEVEL_ROI_ALIGN.kernel(attrs, [rois, *levels], 1)
    (full,) = MULTILEVEL_ROI_ALIGN.kernel(attrs, [rois, *[f.astype(np.float32) for f in levels]], 1)
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, full.astype(np.float16))


# ---------------------------------------------------------------------------------------------
# INT8


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


@pytest.mark.parametrize("which", ["maskrcnn", "hrnet"])
def test_int8_graph_quantizes_every_network_layer_with_dequantized_weights_and_inputs(
        which: str, request: pytest.FixtureRequest) -> None:
    files: Converted = request.getfixturevalue(f"{which}_files")
    fp32, q = files.model("fp32"), files.model("int8")
    rules = FAMILIES[which].precision_rules
    quantized = set(rules.quantized(fp32.graph))
    producers = _producers(q)
    inits = {t.name: t for t in q.graph.initializer}
    weighted = [n for n in q.graph.node if n.op_type in ("Conv", "Gemm", "ConvTranspose")]
    assert len(weighted) == len([n for n in fp32.graph.node if n.op_type in ("Conv", "Gemm", "ConvTranspose")])
    for node in weighted:
        x, w = producers.get(node.input[0]), producers.get(node.input[1])
        if node.name not in quantized:  # keep_fp32 layers, ConvTranspose: float in, float weights
            assert node.op_type in FLOAT_ONLY_OPS or any(r.matches(node.name) for r in rules.keep_fp32) or \
                not any(r.matches(node.name) for r in rules.network), node.name
            assert w is None, node.name  # FP32 weights; its input may be the layer before's INT8, dequantized
            continue
        assert x is not None and x.op_type == "DequantizeLinear", node.name
        assert producers[x.input[0]].op_type == "QuantizeLinear", node.name
        assert w is not None and w.op_type == "DequantizeLinear", node.name
        weight = inits[w.input[0]]
        assert weight.data_type == TensorProto.INT8
        scale = numpy_helper.to_array(inits[w.input[1]])
        axis = next((a.i for a in w.attribute if a.name == "axis"), 1)
        assert scale.size == weight.dims[axis] > 1 and axis == 0, node.name  # per output channel
        if node.input[2:]:  # biases stay float (TensorRT takes no INT32 DequantizeLinear)
            assert inits[node.input[2]].data_type == TensorProto.FLOAT, node.name
    for node in q.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zero = numpy_helper.to_array(inits[node.input[2]])
            assert inits[node.input[2]].data_type == TensorProto.INT8 and not zero.any(), node.name
    assert not lint_model(q)
    meta = edgeseg.load(files.files["int8"]).metadata
    assert meta.precision == "int8" and meta.precision_details["quantized_nodes"] == len(quantized)
    assert meta.precision_details["calibration_images"] == CALIB


def test_int8_keeps_the_predictors_and_the_detection_logic_in_fp32(maskrcnn_files: Converted) -> None:
    q = maskrcnn_files.model("int8")
    producers = _producers(q)
    float_ops = ("NonMaxSuppression", "TopK", "Softmax", "PasteMasks", "Exp")
    heads = ("predictor", "cls_logits", "bbox_pred")
    for node in q.graph.node:
        # the detection logic and RoIs: nothing dequantized; the predictors: FP32 weights (their input
        # and RoIAlign's features are the INT8 activations of the layer before, dequantized)
        reads = node.input if node.op_type in float_ops else node.input[:1] if node.op_type == "MultiLevelRoIAlign" \
            else node.input[1:] if node.op_type in ("Gemm", "Conv") and any(h in node.name for h in heads) else []
        for name in reads:
            p = producers.get(name)
            assert p is None or p.op_type != "DequantizeLinear", (node.name, name)


def _score(files: Converted, precision: str, scenes: Path) -> dict[str, float]:
    from edgeseg import evaluation

    model = edgeseg.load(files.files[precision])
    if files.family == "maskrcnn":
        return evaluation.coco_instance_ap(model.instances, scenes / "val" / "instances.json",
                                           scenes / "val" / "images")
    result = evaluation.semantic_miou(model.semantic, scenes / "val" / "images", scenes / "val" / "labels",
                                      model.metadata.num_classes)
    return {"mIoU": float(result["mIoU"])}


def test_accuracy_drop_of_fp16_and_int8_on_held_out_scenes(maskrcnn_files: Converted, hrnet_files: Converted,
                                                           scenes: Path) -> None:
    # limits: the goals (INT8 0.01, FP16 0.002) with room for 30 scenes instead of 200
    limits = {"fp16": 0.003, "int8": 0.02}
    for files, keys in ((maskrcnn_files, ("mask_AP", "box_AP")), (hrnet_files, ("mIoU",))):
        base = _score(files, "fp32", scenes)
        assert base[keys[0]] > 0.5, base
        for precision, limit in limits.items():
            got = _score(files, precision, scenes)
            for key in keys:
                assert base[key] - got[key] <= limit, (files.family, precision, key, base[key], got[key])


def test_int8_cpu_reencoding_is_the_same_quantization() -> None:
    """The x86 re-encoding (int8 activations stored as uint8 + 128) dequantizes to the same values."""
    import onnxruntime as ort

    from edgeseg.backends.int8_cpu import activations_to_uint8

    scale = numpy_helper.from_array(np.array(0.05, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.int8), "z")
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1000])], [scale, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(0).uniform(-9, 9, 1000).astype(np.float32)  # past the int8 range too
    runs = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
            for m in (model, activations_to_uint8(model))]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert runs[0].max() == pytest.approx(127 * 0.05) and runs[0].min() == pytest.approx(-128 * 0.05)


def test_quantized_relu_folds_to_an_integer_max_with_the_same_numbers() -> None:
    import onnxruntime as ort

    from edgeseg.backends.int8_cpu import activations_to_uint8, fold_quantized_relu

    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
             helper.make_node("Relu", ["d"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "s", "z"], ["q2"]),
             helper.make_node("DequantizeLinear", ["q2", "s", "z"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [999])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [999])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(1).uniform(-8, 8, 999).astype(np.float32)
    variants = [model, fold_quantized_relu(model), fold_quantized_relu(activations_to_uint8(model))]
    assert [sum(n.op_type == "Relu" for n in m.graph.node) for m in variants] == [1, 0, 0]
    runs = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
            for m in variants]
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])
    assert runs[0].min() == 0.0


# ---------------------------------------------------------------------------------------------
# The command line, the cache, bad calibration input


def _convert_args(out: Path, *extra: str, quiet: bool = True) -> list[str]:
    return ["convert", "hrnet", "--arch", "w18_small_v1", "--random-weights", "--num-classes", "3",
            "--frame", "64x96", "-o", str(out), *(["-q"] if quiet else []), *extra]


def test_cli_int8_conversion_shows_its_precision_and_reuses_the_cache(
        tmp_path: Path, scenes: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, again = tmp_path / "h8.onnx", tmp_path / "again.onnx"
    args = ["--precision", "int8", "--calib-images", str(scenes / "train" / "images"), "--calib-count", "100"]
    before = set((cache_dir / "calibration").glob("*.json"))
    assert cli.main(_convert_args(out, *args)) == 0
    capsys.readouterr()
    assert cli.main(["info", str(out)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("precision:"))
    assert line.startswith("precision:    int8 (Q/DQ: ") and line.endswith(f"nodes, minmax on {CALIB} images)"), line
    cached = sorted(set((cache_dir / "calibration").glob("hrnetv2_w18_small_v1-*.json")) - before)
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    assert cli.main(_convert_args(again, *args, quiet=False)) == 0  # says where the statistics came from
    assert f"calibration statistics from {cached[0]}" in capsys.readouterr().err
    assert cached[0].stat().st_mtime_ns == stamp  # read, not recomputed
    assert again.read_bytes() == out.read_bytes()


@pytest.mark.parametrize(("extra", "message"), [
    (["--precision", "int8"], "--precision int8 needs calibration images: --calib-images FOLDER (a few hundred "
                              "frames like the ones the model will see), or an existing --calib-cache FILE"),
    (["--precision", "fp16", "--calib-images", "."], "--calib-images / --calib-cache are for --precision int8, "
                                                     "not fp16"),
    (["--precision", "int8", "--calib-images", "MISSING"], "--calib-images MISSING: not a folder; give a folder of "
                                                           "representative images"),
    (["--precision", "int8", "--calib-images", "EMPTY"], "--calib-images EMPTY: no images (.png, .jpg, .jpeg, .bmp, "
                                                         ".tif, .tiff, .webp) in it"),
])
def test_bad_calibration_requests_are_one_line_errors(tmp_path: Path, extra: list[str], message: str,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "EMPTY" / "notes.txt").write_text("no images here")
    assert cli.main(_convert_args(tmp_path / "x.onnx", *extra)) == 2
    assert capsys.readouterr().err == f"edgeseg: error: {message}\n"
    assert not (tmp_path / "x.onnx").exists()


def test_an_unreadable_calibration_image_is_named(tmp_path: Path, cache_dir: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(MIN_IMAGES):
        (folder / f"{i:03d}.png").write_bytes(_png(i))
    (folder / "999_broken.png").write_bytes(b"not a png")
    assert cli.main(_convert_args(tmp_path / "x.onnx", "--precision", "int8", "--calib-images", str(folder))) == 2
    assert capsys.readouterr().err == (f"edgeseg: error: calibration image {folder / '999_broken.png'}: cannot be "
                                       "decoded; remove it or convert it to PNG/JPEG\n")
    assert not (tmp_path / "x.onnx").exists()


def _png(seed: int) -> bytes:
    import cv2

    image = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


def test_few_calibration_images_give_a_warning(tmp_path: Path, cache_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "few"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(_png(i))
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        assert cli.main(_convert_args(tmp_path / "x.onnx", "--precision", "int8", "--calib-images", str(folder))) == 0
    assert (f"edgeseg: warning: only 3 calibration image(s) in {folder}; {MIN_IMAGES} or more"
            in capsys.readouterr().err)
    with pytest.warns(EdgesegWarning, match="only 3 calibration image"):
        export("hrnet", tmp_path / "y.onnx", arch="w18_small_v1", random_weights=True, num_classes=3,
               frame_hw=(64, 96), precision="int8", calibration=Calibration(images=folder))


def test_a_calibration_cache_of_another_model_is_refused(tmp_path: Path, scenes: Path, cache_dir: Path) -> None:
    cache = tmp_path / "stats.json"
    images = scenes / "train" / "images"
    export("hrnet", tmp_path / "a.onnx", arch="w18_small_v1", random_weights=True, num_classes=3, frame_hw=(64, 96),
           precision="int8", calibration=Calibration(images=images, cache=cache))
    assert cache.is_file()
    with pytest.raises(ArgumentError, match=rf"calibration cache {cache} holds no statistics for \d+ tensor\(s\) of "
                                            r"this model .*made for another model; delete it"):
        export("maskrcnn", tmp_path / "b.onnx", arch="resnet18_fpn_lite", random_weights=True, num_classes=3,
               frame_hw=(64, 96), precision="int8", calibration=Calibration(cache=cache))
    with pytest.raises(ArgumentError, match="was made with MinMax, not Entropy: delete it or use the same"):
        export("hrnet", tmp_path / "c.onnx", arch="w18_small_v1", random_weights=True, num_classes=3,
               frame_hw=(64, 96), precision="int8", calibration=Calibration(cache=cache, method="entropy"))


def test_build_refuses_the_old_precision_flags_naming_the_new_way(capsys: pytest.CaptureFixture[str]) -> None:
    for flags in (["--fp16"], ["--int8"], ["--fp32-layers", "*roi_heads*"], ["--calib-images", "x"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(["build", "m.onnx", "-o", "m.engine", *flags])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err == (f"edgeseg: error: {flags[0]} is gone: the precision is in the ONNX file now: `edgeseg "
                       "convert ... --precision fp16|int8`, then build it (see `edgeseg build --help`)\n"), err


def test_readme_rule_tables_are_generated_from_the_rules() -> None:
    from tools.precision_tables import ROOT, with_tables

    readme = (ROOT / "README.md").read_text()
    assert with_tables(readme) == readme, "run python tools/precision_tables.py"


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_compare_holds_reduced_precision_files_to_their_limits(
        precision: str, maskrcnn_files: Converted, scenes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Detections matched by class and box IoU (rank order moves with rounding), the limits the
    file's precision allows."""
    code = cli.main(["compare", str(maskrcnn_files.files[precision]), "--weights",
                     str(WEIGHTS_DIR / MASKRCNN.weights), "--source", str(scenes / "val" / "images"), "--frames", "6"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"PASS: edgeseg vs PyTorch on 6 frame(s) (limits for a {precision} file)" in out
    assert "confident ones (score >= 0.3) matched" in out

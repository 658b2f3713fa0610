"""samples/triton/export_model_repository.py: an edgeseg .engine -> a Triton model repository entry.

The engines are fakes, as in test_engine_file.py: a real header (metadata of an HRNet converted
here, or of a Mask R-CNN written out by hand) in front of a stand-in plan. What is checked is
the layout Triton reads, config.pbtxt parsed with Triton's own ModelConfig message (from
tritonclient; those checks skip without it), the plan bytes, the plugin library and that a failed
export leaves the repository as it was.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import pytest

import edgeseg
import edgeseg.cli as cli
from edgeseg.custom_ops import packed_mask_width, unpack_mask_bytes
from edgeseg.engine_file import BuildInfo, plan_bytes, write_engine
from edgeseg.errors import ModelFileError, OutputError
from edgeseg.metadata import METADATA_KEY, ModelMetadata
from edgeseg.trt.plugin_library import ENV_VAR, LIBRARY_NAME

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "samples" / "triton" / "export_model_repository.py"
PLAN = bytes(range(256)) * 64  # every byte value: the plan must be copied bit for bit


def _load_exporter() -> ModuleType:
    name = "edgeseg_sample_export_model_repository"
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


exporter = _load_exporter()


def parse_config(path: Path) -> tuple[Any, Any]:
    """config.pbtxt as Triton reads it: (ModelConfig message, the model_config_pb2 module)."""
    reason = "needs tritonclient to parse config.pbtxt as Triton does: pip install 'tritonclient[grpc]'"
    model_config = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason=reason)
    text_format = pytest.importorskip("google.protobuf.text_format", reason=reason)
    return text_format.Parse(path.read_text(encoding="utf-8"), model_config.ModelConfig()), model_config


def tensors_of(config: Any, field: str, model_config: Any) -> list[tuple[str, str, list[int]]]:
    return [(t.name, model_config.DataType.Name(t.data_type), list(t.dims)) for t in getattr(config, field)]


@pytest.fixture(scope="module")
def hrnet_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("triton") / "hrnet.onnx"
    code = cli.main(["convert", "hrnet", "--arch", "w18_small_v1", "--random-weights", "--classes", "cityscapes",
                     "--frame", "64x96", "-o", str(path), "-q"])
    assert code == 0
    return path


@pytest.fixture()
def hrnet_engine(hrnet_onnx: Path, tmp_path: Path) -> Path:
    """An engine file with the HRNet's real metadata and tensor list, and a stand-in plan."""
    model = edgeseg.load(hrnet_onnx)
    tensors = [[role, s.name, list(s.shape), s.dtype.name]
               for role, specs in (("input", model.backend.inputs), ("output", model.backend.outputs)) for s in specs]
    props = {p.key: p.value for p in onnx.load(str(hrnet_onnx), load_external_data=False).metadata_props}
    build = BuildInfo("10.3.0", "Orin", "8.7", "fp16", extra={"tensors": tensors})
    return write_engine(tmp_path / "hrnet.engine", PLAN, props, build)


FRAME_HW = (50, 90)  # 90 is not a multiple of 4: mask rows end in padding bytes
K = 7
MASK_WORDS = packed_mask_width(FRAME_HW[1]) // 4


def maskrcnn_metadata() -> ModelMetadata:
    return ModelMetadata(
        kind="instance", arch="maskrcnn_resnet50_fpn", classes=("__background__", "person", "car"),
        palette=((0, 0, 0), (220, 20, 60), (0, 0, 142)), frame_hw=FRAME_HW, input_hw=(800, 1440),
        outputs={n: n for n in ("num_detections", "boxes", "scores", "labels", "masks")},
        extra={"max_detections": K, "row_trim": True, "paste": "torchvision", "mask_threshold": 0.5,
               "score_thresh": 0.05, "padded_hw": [800, 1440], "max_candidates": 3000, "proposals": 1000},
    )


@pytest.fixture()
def maskrcnn_engine(tmp_path: Path) -> Path:
    tensors = [["input", "frame", [*FRAME_HW, 3], "uint8"], ["output", "num_detections", [1], "int32"],
               ["output", "boxes", [K, 4], "float32"], ["output", "scores", [K], "float32"],
               ["output", "labels", [K], "int32"], ["output", "masks", [K, FRAME_HW[0], MASK_WORDS], "int32"]]
    build = BuildInfo("10.3.0", "Orin", "8.7", "fp16", plugins=("MultiLevelRoIAlign", "PasteMasks"),
                      fp32_layers=("*roi_heads*",), extra={"tensors": tensors})
    return write_engine(tmp_path / "maskrcnn.engine", PLAN, {METADATA_KEY: maskrcnn_metadata().to_json()}, build)


def stub_plugin_library(folder: Path, version: int) -> Path:
    """A shared library exporting only edgesegPluginTensorRTVersion() (what the exporter checks)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("needs a C compiler (cc) to build a stand-in plugin library")
    source = folder / "stub.c"
    source.write_text(f"int edgesegPluginTensorRTVersion(void) {{ return {version}; }}\n")
    library = folder / LIBRARY_NAME
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    return library


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    return path


def test_hrnet_engine_becomes_a_triton_model(hrnet_engine: Path, hrnet_onnx: Path, repo: Path) -> None:
    target = exporter.export(hrnet_engine, repo, instances=3)
    assert target == repo / "hrnet"
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == [
        "1", "1/model.plan", "config.pbtxt", "edgeseg.json"]
    assert [p.name for p in repo.iterdir()] == ["hrnet"], "temporary folder left behind"
    assert (target / "1" / "model.plan").read_bytes() == plan_bytes(hrnet_engine) == PLAN

    expected = edgeseg.load(hrnet_onnx).metadata
    doc = json.loads((target / "edgeseg.json").read_text(encoding="utf-8"))
    assert ModelMetadata.from_json(json.dumps(doc)) == expected  # edgeseg reads the client file as it is
    assert doc["triton"]["inputs"] == [{"name": "frame", "datatype": "UINT8", "shape": [64, 96, 3]}]
    assert doc["triton"]["outputs"][0] == {"name": "label_map", "datatype": "UINT8", "shape": [64, 96]}

    config, mc = parse_config(target / "config.pbtxt")
    assert config.name == "hrnet"
    assert config.platform == "tensorrt_plan"
    assert config.max_batch_size == 0  # no batch dimension: dims are the full shapes
    assert tensors_of(config, "input", mc) == [("frame", "TYPE_UINT8", [64, 96, 3])]
    assert tensors_of(config, "output", mc) == [("label_map", "TYPE_UINT8", [64, 96]),
                                                ("logits", "TYPE_FP32", [1, 19, 16, 24])]
    assert [(g.count, mc.ModelInstanceGroup.Kind.Name(g.kind)) for g in config.instance_group] == [(3, "KIND_GPU")]
    assert not config.HasField("dynamic_batching")
    assert ModelMetadata.from_json(config.parameters[METADATA_KEY].string_value) == expected


def test_maskrcnn_engine_ships_its_plugin_library(maskrcnn_engine: Path, repo: Path, tmp_path: Path) -> None:
    library = stub_plugin_library(tmp_path, 100300)  # built against TensorRT 10.3.0 headers
    target = exporter.export(maskrcnn_engine, repo, name="maskrcnn", instances=1, plugin_library=library)
    assert sorted(p.name for p in target.iterdir()) == ["1", "config.pbtxt", "edgeseg.json", LIBRARY_NAME]
    assert (target / LIBRARY_NAME).read_bytes() == library.read_bytes()

    doc = json.loads((target / "edgeseg.json").read_text(encoding="utf-8"))
    assert doc["classes"] == ["__background__", "person", "car"]
    assert doc["frame_hw"] == list(FRAME_HW)
    masks = doc["triton"]["masks"]
    assert masks["output"] == "masks"
    assert masks["width"] == FRAME_HW[1]
    assert masks["decode"] == f"masks.view(np.uint8)[..., :{FRAME_HW[1]}]"
    # The recipe a client follows gives what edgeseg.load gives.
    words = np.random.default_rng(0).integers(-2**31, 2**31, (K, FRAME_HW[0], MASK_WORDS)).astype(np.int32)
    np.testing.assert_array_equal(words.view(np.uint8)[..., :FRAME_HW[1]], unpack_mask_bytes(words, FRAME_HW[1]))

    config, mc = parse_config(target / "config.pbtxt")
    assert config.platform == "tensorrt_plan"
    assert config.max_batch_size == 0
    assert tensors_of(config, "input", mc) == [("frame", "TYPE_UINT8", [50, 90, 3])]
    assert tensors_of(config, "output", mc) == [
        ("num_detections", "TYPE_INT32", [1]), ("boxes", "TYPE_FP32", [K, 4]), ("scores", "TYPE_FP32", [K]),
        ("labels", "TYPE_INT32", [K]), ("masks", "TYPE_INT32", [K, 50, 23])]
    assert [g.count for g in config.instance_group] == [1]


def test_plugin_library_is_found_where_edgeseg_finds_it(maskrcnn_engine: Path, repo: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(stub_plugin_library(tmp_path, 100300)))
    target = exporter.export(maskrcnn_engine, repo)
    assert (target / LIBRARY_NAME).is_file()


def test_plugin_library_of_another_tensorrt_is_refused(maskrcnn_engine: Path, repo: Path, tmp_path: Path) -> None:
    library = stub_plugin_library(tmp_path, 110100)
    with pytest.raises(ModelFileError) as err:
        exporter.export(maskrcnn_engine, repo, plugin_library=library)
    assert str(err.value) == (
        f"{library} was built against TensorRT 11.1 headers but maskrcnn.engine was built with TensorRT 10.3.0; "
        "use the library built on the machine that built the engine")
    assert list(repo.iterdir()) == []


def test_engine_without_tensor_list_is_refused(hrnet_onnx: Path, repo: Path, tmp_path: Path) -> None:
    props = {p.key: p.value for p in onnx.load(str(hrnet_onnx), load_external_data=False).metadata_props}
    old = write_engine(tmp_path / "old.engine", PLAN, props, BuildInfo("10.3.0", "Orin", "8.7", "fp32"))
    with pytest.raises(ModelFileError) as err:
        exporter.export(old, repo)
    assert str(err.value) == ("old.engine: the engine header does not list its inputs and outputs (built by an "
                              "older edgeseg); build it again with `edgeseg build`")
    assert list(repo.iterdir()) == []


def test_failed_export_leaves_the_repository_as_it_was(hrnet_engine: Path, repo: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("No space left on device")

    # Fails after the plan and config.pbtxt are written: nothing of them may remain.
    monkeypatch.setattr(exporter, "client_metadata", fail)
    with pytest.raises(OSError, match="No space left"):
        exporter.export(hrnet_engine, repo)
    assert list(repo.iterdir()) == []

    monkeypatch.undo()
    first = exporter.export(hrnet_engine, repo)
    before = sorted((p.relative_to(repo), p.read_bytes()) for p in first.rglob("*") if p.is_file())
    monkeypatch.setattr(exporter, "client_metadata", fail)
    with pytest.raises(OSError, match="No space left"):
        exporter.export(hrnet_engine, repo, force=True)
    assert sorted((p.relative_to(repo), p.read_bytes()) for p in first.rglob("*") if p.is_file()) == before
    assert [p.name for p in repo.iterdir()] == ["hrnet"]


def test_existing_model_is_replaced_only_with_force(hrnet_engine: Path, repo: Path) -> None:
    exporter.export(hrnet_engine, repo, instances=1)
    with pytest.raises(OutputError) as err:
        exporter.export(hrnet_engine, repo, instances=4)
    assert str(err.value) == f"{repo / 'hrnet'} already exists; pass --force to replace it, or choose --name"
    assert "count: 1\n" in (repo / "hrnet" / "config.pbtxt").read_text()

    exporter.export(hrnet_engine, repo, instances=4, force=True)
    assert "count: 4\n" in (repo / "hrnet" / "config.pbtxt").read_text()
    assert [p.name for p in repo.iterdir()] == ["hrnet"], "old model or temporary folder left behind"


def test_command_line(hrnet_engine: Path, hrnet_onnx: Path, repo: Path) -> None:
    ok = subprocess.run([sys.executable, str(SCRIPT), str(hrnet_engine), "--repo", str(repo), "--name", "seg"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == (f"wrote {repo / 'seg'}: fp16 plan for TensorRT 10.3.0 on Orin (compute capability 8.7); "
                         "serve it with the Triton container that ships TensorRT 10.3.0, on that GPU\n")
    bad = subprocess.run([sys.executable, str(SCRIPT), str(hrnet_onnx), "--repo", str(repo)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr == (
        "export_model_repository: error: hrnet.onnx: not an engine written by `edgeseg build` (a bare TensorRT "
        "plan carries no model metadata); build it from the ONNX file with `edgeseg build MODEL.onnx -o "
        "MODEL.engine`\n")
    assert [p.name for p in repo.iterdir()] == ["seg"]

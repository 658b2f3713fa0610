"""The .engine container, `edgeseg info` on engines and the TensorRT error paths, without a GPU.

The header of an engine file is plain data, so everything about it is tested here with a fake
plan; building and running real engines is in tests/test_gpu.py (marked gpu).
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

import edgeseg
import edgeseg.cli as cli
from edgeseg.engine_file import MAGIC, BuildInfo, plan_bytes, read_header, write_engine
from edgeseg.errors import BackendUnavailableError, ModelFileError
from edgeseg.metadata import METADATA_KEY
from edgeseg.trt.plugin_library import ENV_VAR, PluginLibraryError, find_library
from tests.conftest import ExportedHRNet

BUILD = BuildInfo(
    tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="8.7", precision="fp16",
    plugins=("MultiLevelRoIAlign", "PasteMasks"), fp32_layers=("*roi_heads*",),
    extra={"tensors": [["input", "frame", [320, 480, 3], "uint8"], ["output", "label_map", [320, 480], "uint8"]]},
)


@pytest.fixture()
def fake_engine(hrnet_small: ExportedHRNet, tmp_path: Path) -> Path:
    """An engine file with the HRNet's real metadata and a stand-in plan."""
    props = {p.key: p.value for p in onnx.load(str(hrnet_small.path), load_external_data=False).metadata_props}
    return write_engine(tmp_path / "hrnet.engine", b"PLAN" * 10, props, BUILD)


def test_header_round_trip(fake_engine: Path, hrnet_small: ExportedHRNet) -> None:
    header = read_header(fake_engine)
    assert header.build == BUILD
    assert METADATA_KEY in header.metadata
    assert plan_bytes(fake_engine) == b"PLAN" * 10
    assert fake_engine.read_bytes().startswith(MAGIC)
    assert not list(fake_engine.parent.glob("*.tmp*")), "temporary file left behind"


def test_bare_plan_is_refused_with_the_fix(tmp_path: Path) -> None:
    bare = tmp_path / "model.engine"
    bare.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError) as err:
        read_header(bare)
    assert str(err.value) == (
        "model.engine: not an engine written by `edgeseg build` (a bare TensorRT plan carries no model metadata); "
        "build it from the ONNX file with `edgeseg build MODEL.onnx -o MODEL.engine`")


def test_truncated_engine_is_refused(fake_engine: Path) -> None:
    data = fake_engine.read_bytes()
    fake_engine.write_bytes(data[:40])
    with pytest.raises(ModelFileError, match="truncated engine file; build it again with `edgeseg build`"):
        read_header(fake_engine)


def test_info_describes_an_engine_without_tensorrt(fake_engine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["info", str(fake_engine)]) == 0
    out = capsys.readouterr().out
    assert "kind:         semantic" in out
    assert "backend:      tensorrt" in out
    assert "input:        frame [320, 480, 3] uint8" in out
    assert "output:       label_map [320, 480] uint8" in out
    assert "precision:    fp16, FP32 pinned: *roi_heads*" in out
    assert "built by:     TensorRT 10.3.0 for Orin (compute capability 8.7)" in out
    assert "plugins:      MultiLevelRoIAlign, PasteMasks (namespace edgeseg, version 1)" in out


def test_info_shows_how_the_engine_was_built(fake_engine: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    header = read_header(fake_engine)
    extra = {**BUILD.extra, "workspace_mib": 2048, "fp32_layers_pinned": 41, "calibration_images": 0}
    build = BuildInfo(**{**BUILD.to_dict(), "plugins": BUILD.plugins, "fp32_layers": BUILD.fp32_layers,
                         "extra": extra})
    engine = write_engine(tmp_path / "built.engine", b"PLAN", header.metadata, build)
    assert cli.main(["info", str(engine)]) == 0
    assert ("built by:     TensorRT 10.3.0 for Orin (compute capability 8.7); workspace MiB 2048, layers pinned "
            "to FP32 41, INT8 calibration images 0") in capsys.readouterr().out


def test_info_of_onnx_names_its_precision(hrnet_small: ExportedHRNet, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["info", str(hrnet_small.path)]) == 0
    assert "precision:    fp32\n" in capsys.readouterr().out


def test_loading_an_engine_without_tensorrt_says_what_to_install(fake_engine: Path) -> None:
    with pytest.raises(BackendUnavailableError, match=r"TensorRT's Python package is not installed .*"
                                                       r"pip install 'edgeseg\[trt\]'"):
        edgeseg.load(fake_engine)


def test_build_without_tensorrt_is_one_clear_line(hrnet_small: ExportedHRNet, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["build", str(hrnet_small.path), "-o", str(tmp_path / "x.engine")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edgeseg: error: TensorRT's Python package is not installed") and err.count("\n") == 1
    assert not (tmp_path / "x.engine").exists()


def test_missing_plugin_library_names_the_build_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nope.so"))
    with pytest.raises(PluginLibraryError, match=r"nope\.so: no such file; unset it or build it on this machine: "
                                                 r"cmake -S plugins -B build/plugins"):
        find_library()
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setattr("edgeseg.trt.plugin_library.PACKAGE_LIB", tmp_path)
    with pytest.raises(PluginLibraryError, match=r"libedgeseg_trt_plugins\.so was not found"):
        find_library()


def test_cuda_graphs_only_for_engines_without_data_dependent_shapes() -> None:
    """NonMaxSuppression's output size is resolved on the host, so instance engines never try a
    CUDA graph capture (which would fail and log a TensorRT error on every open)."""
    recorded = BuildInfo("10.3.0", "Orin", "8.7", "fp32", extra={"data_dependent_shapes": ["NonMaxSuppression"]})
    assert not recorded.graph_capturable(instance=True)
    static = BuildInfo("10.3.0", "Orin", "8.7", "fp32", extra={"data_dependent_shapes": []})
    assert static.graph_capturable(instance=False)
    # engines built before edgeseg recorded it: judged by their kind
    assert not BUILD.graph_capturable(instance=True) and BUILD.graph_capturable(instance=False)

"""`edgeseg doctor`: one line per thing edgeseg needs, each problem with its fix; exit 0 while the
CPU path works. Every line a CPU machine can show is checked here, the GPU ones with stand-ins."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import edgeseg.cli as cli
from edgeseg import doctor, platforms
from edgeseg.errors import BackendUnavailableError
from edgeseg.trt import gpu_imports, plugin_library

NAMES = ["python", "edgeseg", "numpy", "onnxruntime", "cpu ops library", "opencv", "udp/rtsp output", "tensorrt",
         "cuda-python",
         "cuda device", "plugin library", "cameras", "disk"]


def test_doctor_on_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line[6:24].strip() for line in lines[:-1]] == NAMES
    by_name = {line[6:24].strip(): line for line in lines[:-1]}
    assert by_name["python"].startswith(f"ok    python             CPython {sys.version_info.major}.")
    assert by_name["onnxruntime"].startswith("ok") and "providers:" in by_name["onnxruntime"]
    assert "CPU" in by_name["onnxruntime"]
    assert by_name["cpu ops library"].startswith("ok")
    assert by_name["tensorrt"].startswith("--    tensorrt           TensorRT's Python package is not installed")
    assert by_name["tensorrt"].endswith("-> pip install 'edgeseg[trt]' (TensorRT 10.3 or newer and cuda-python)")
    assert by_name["plugin library"].endswith(f"-> {plugin_library.BUILD_HINT}")
    assert " GiB free in " in by_name["disk"]
    assert lines[-1].startswith("the CPU path works: edgeseg run M.onnx")


def test_doctor_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cpu_path_ok"] is True
    assert [c["name"] for c in report["checks"]] == NAMES
    assert set(report["checks"][0]) == {"name", "status", "detail", "fix", "cpu_path"}


def test_missing_onnxruntime_fails_the_cpu_path(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  onnxruntime        not installed: .onnx models cannot run  -> pip install onnxruntime" in out
    assert out.rstrip().endswith("the CPU path does not work: fix the FAIL lines above")


def fake_trt(version: str, strongly_typed: bool) -> SimpleNamespace:
    # 10.3: kSTRONGLY_TYPED is bit 1; 11.x: 0 (every network is strongly typed)
    bit = 1 if version.startswith("10") else 0
    flags = SimpleNamespace(STRONGLY_TYPED=bit) if strongly_typed else SimpleNamespace()
    return SimpleNamespace(__version__=version, NetworkDefinitionCreationFlag=flags)


@pytest.mark.parametrize(("version", "typed", "expected"), [
    ("10.3.0", True, "ok    tensorrt           10.3.0 (strongly typed builds: the precision is the ONNX file's)"),
    ("11.1.0", True, "ok    tensorrt           11.1.0 (strongly typed builds: the precision is the ONNX file's)"),
    ("10.4.0", False, "FAIL  tensorrt           10.4.0: its Python binding has no strongly typed networks  -> install "
     "TensorRT's own Python package of the same version (python3-libnvinfer on a Jetson)"),
    ("8.6.2", True,
     "FAIL  tensorrt           8.6.2: edgeseg's plugins need TensorRT 10.3 or newer  -> TensorRT 10.3 or newer "
     "(10.x or 11.x)"),
])
def test_tensorrt_line(monkeypatch: pytest.MonkeyPatch, version: str, typed: bool, expected: str) -> None:
    monkeypatch.setattr(gpu_imports, "import_tensorrt", lambda: fake_trt(version, typed))
    monkeypatch.setattr(doctor, "jetson_module", lambda: None)
    assert doctor.check_tensorrt().line() == expected


TYPED = "(strongly typed builds: the precision is the ONNX file's)"


@pytest.mark.parametrize(("module", "version", "expected"), [
    ("Orin", "10.3.0.30", f"ok    tensorrt           10.3.0.30 {TYPED}; a Jetson Orin takes JetPack 6.1/6.2 "
     "(TensorRT 10.3) or 7.2 (TensorRT 10.16)"),
    ("Orin", "10.16.1", f"ok    tensorrt           10.16.1 {TYPED}; a Jetson Orin takes JetPack 6.1/6.2 "
     "(TensorRT 10.3) or 7.2 (TensorRT 10.16)"),
    ("Thor", "10.13.2", f"ok    tensorrt           10.13.2 {TYPED}; a Jetson Thor takes JetPack 7.0/7.1 "
     "(TensorRT 10.13) or 7.2 (TensorRT 10.16)"),
    ("Thor", "11.1.0", f"ok    tensorrt           11.1.0 {TYPED}; a Jetson Thor takes JetPack 7.0/7.1 "
     "(TensorRT 10.13) or 7.2 (TensorRT 10.16)"),
    ("Orin", "10.13.2", f"warn  tensorrt           10.13.2 {TYPED}; no JetPack ships it for a Jetson Orin  -> "
     "a Jetson Orin takes JetPack 6.1/6.2 (TensorRT 10.3) or 7.2 (TensorRT 10.16); TensorRT 11.x reaches Jetsons "
     "only from JetPack 7.2.2, through the SBSA packages"),
    ("Orin", "8.6.2", "FAIL  tensorrt           8.6.2: edgeseg's plugins need TensorRT 10.3 or newer  -> a Jetson Orin "
     "takes JetPack 6.1/6.2 (TensorRT 10.3) or 7.2 (TensorRT 10.16)"),
])
def test_tensorrt_line_names_the_jetpack(monkeypatch: pytest.MonkeyPatch, module: str, version: str,
                                         expected: str) -> None:
    monkeypatch.setattr(gpu_imports, "import_tensorrt", lambda: fake_trt(version, True))
    monkeypatch.setattr(doctor, "jetson_module", lambda: module)
    assert doctor.check_tensorrt().line() == expected


def test_missing_tensorrt_on_a_jetson_names_the_jetpack(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise BackendUnavailableError("TensorRT's Python package is not installed (x); sudo apt install "
                                                  "python3-libnvinfer")

    monkeypatch.setattr(gpu_imports, "import_tensorrt", missing)
    monkeypatch.setattr(doctor, "jetson_module", lambda: "Thor")
    assert doctor.check_tensorrt().fix == ("sudo apt install python3-libnvinfer (a Jetson Thor takes JetPack 7.0/7.1 "
                                           "(TensorRT 10.13) or 7.2 (TensorRT 10.16))")


@pytest.mark.parametrize(("model", "module"), [
    (b"NVIDIA Jetson AGX Orin Developer Kit\x00", "Orin"),
    (b"NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00", "Orin"),
    (b"NVIDIA Jetson AGX Thor Developer Kit\x00", "Thor"),
    (b"NVIDIA Jetson Xavier NX Developer Kit\x00", "Jetson"),
    (b"Raspberry Pi 5 Model B Rev 1.0\x00", None),
])
def test_jetson_module_from_the_device_tree(tmp_path: Path, model: bytes, module: str | None) -> None:
    (tmp_path / "model").write_bytes(model)
    assert platforms.jetson_module(tmp_path / "model") == module
    assert platforms.jetson_module(tmp_path / "absent") is None


def test_jetpack_facts() -> None:
    # JetPack 6.x (from 6.1) is TensorRT 10.3 on Orin; 7.0/7.1 are 10.13 on Thor; 7.2 is 10.16 on both.
    assert {(jp.release, jp.tensorrt) for jp in platforms.jetpacks_for("Orin")} == {("6.1", "10.3"), ("6.2", "10.3"),
                                                                                   ("7.2", "10.16")}
    assert {(jp.release, jp.tensorrt) for jp in platforms.jetpacks_for("Thor")} == {("7.0", "10.13"),
                                                                                   ("7.1", "10.13"),
                                                                                   ("7.2", "10.16")}
    assert platforms.expected_jetpack("Jetson").startswith("no JetPack edgeseg supports")
    assert not platforms.tensorrt_fits_jetpack("Orin", "10.13.0")


class NoDriver:
    """What cuda-python returns where no NVIDIA driver is installed."""

    name = "cudaErrorInsufficientDriver"

    def __int__(self) -> int:
        return 35


def test_gpu_line_with_a_stand_in_cuda_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    props = SimpleNamespace(name=b"Orin\x00", major=8, minor=7)
    cudart = SimpleNamespace(cudaGetDeviceCount=lambda: (0, 1), cudaGetDevice=lambda: (0, 0),
                             cudaGetDeviceProperties=lambda device: (0, props))
    monkeypatch.setattr(gpu_imports, "import_cudart", lambda: cudart)
    assert doctor.check_gpu().line() == "ok    cuda device        Orin, compute capability 8.7 (1 device(s))"
    cudart.cudaGetDeviceCount = lambda: (NoDriver(), 0)
    line = doctor.check_gpu().line()
    assert line.startswith("--    cuda device        no NVIDIA GPU or driver found: .engine files need one")


def _cuda_runtime(driver: int, bindings: int) -> SimpleNamespace:
    """cuda-python's runtime as cuda-bindings 13.5 answers on this CPU machine (no driver:
    cudaGetDeviceCount gives cudaErrorInsufficientDriver, cudaDriverGetVersion gives 0), with
    *driver* and *bindings* as the CUDA versions of the driver and of the bindings."""
    return SimpleNamespace(cudaGetDeviceCount=lambda: (NoDriver(), None), cudaDriverGetVersion=lambda: (0, driver),
                           cudaRuntimeGetVersion=lambda: (0, bindings))


@pytest.mark.parametrize(("driver", "bindings", "expected"), [
    (12060, 13000, "FAIL  cuda device        driver too old for these bindings: the driver is for CUDA 12.6, the "
                   "installed cuda-python for CUDA 13.0  -> pip install 'cuda-python>=12.6,<13' (the cuda-python of "
                   "the driver's CUDA)"),
    (13000, 13050, "--    cuda device        no NVIDIA GPU or driver found: .engine files need one  -> on a GPU "
                   "machine, nvidia-smi (tegrastats on a Jetson) must list the GPU"),
    (0, 13050, "--    cuda device        no NVIDIA driver found: .engine files need one  -> on a GPU machine, "
               "nvidia-smi (tegrastats on a Jetson) must list the GPU"),
    (11040, 12060, "FAIL  cuda device        driver too old for these bindings: the driver is for CUDA 11.4, the "
                   "installed cuda-python for CUDA 12.6  -> update the NVIDIA driver (JetPack 6 or newer on a Jetson): "
                   "edgeseg needs CUDA 12.6 or newer"),
])
def test_gpu_line_tells_a_driver_too_old_for_the_bindings_from_no_driver(
        monkeypatch: pytest.MonkeyPatch, driver: int, bindings: int, expected: str) -> None:
    monkeypatch.setattr(gpu_imports, "import_cudart", lambda: _cuda_runtime(driver, bindings))
    assert doctor.check_gpu().line() == expected


def test_a_cuda_call_failing_for_an_old_driver_names_the_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    cudart = _cuda_runtime(12020, 13000)
    monkeypatch.setattr(gpu_imports, "import_cudart", lambda: cudart)
    with pytest.raises(gpu_imports.CudaError) as info:
        gpu_imports.check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    assert str(info.value) == (
        "CUDA cudaGetDeviceCount failed: cudaErrorInsufficientDriver; driver too old for these bindings: the driver "
        "is for CUDA 12.2, the installed cuda-python for CUDA 13.0: pip install 'cuda-python>=12.6,<13' (the "
        "cuda-python of the driver's CUDA)")


def test_setup_pins_cuda_python_to_each_cuda_major() -> None:
    """Every extra that installs cuda-python bounds it to one CUDA major (pip would otherwise take
    13.x, which refuses CUDA 12 drivers), with the pins the doctor names."""
    import ast

    tree = ast.parse((Path(__file__).resolve().parents[1] / "setup.py").read_text())
    (extras,) = [kw.value for node in ast.walk(tree) if isinstance(node, ast.Call)
                 for kw in node.keywords if kw.arg == "extras_require"]
    requirements = ast.literal_eval(extras)
    cuda = {name: [r for r in reqs if r.startswith("cuda-python")] for name, reqs in requirements.items()}
    assert {name: pins for name, pins in cuda.items() if pins} == {
        "trt": [gpu_imports.CUDA_PYTHON_PINS[12]], "trt-cu12": [gpu_imports.CUDA_PYTHON_PINS[12]],
        "trt-cu13": [gpu_imports.CUDA_PYTHON_PINS[13]]}
    assert gpu_imports.CUDA_PYTHON_PINS == {12: "cuda-python>=12.6,<13", 13: "cuda-python>=13,<14"}


def test_a_library_without_the_version_symbol_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """An old build, or EDGESEG_PLUGIN_LIBRARY naming another library (here edgeseg's CPU ops)."""
    from edgeseg import ops

    other = ops.library_path()
    monkeypatch.setenv(plugin_library.ENV_VAR, str(other))
    with pytest.raises(plugin_library.PluginLibraryError) as info:
        plugin_library.library_tensorrt_version(plugin_library.find_library())
    assert str(info.value) == (
        f"{other} is not edgeseg's plugin library, or an old build of it (it has no edgesegPluginTensorRTVersion); "
        f"{plugin_library.BUILD_HINT}")
    assert doctor.check_plugin_library().line() == (
        f"FAIL  plugin library     {other} is not edgeseg's plugin library, or an old build of it (it has no "
        f"edgesegPluginTensorRTVersion)  -> {plugin_library.BUILD_HINT}")


def test_plugin_library_built_for_another_tensorrt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lib = tmp_path / plugin_library.LIBRARY_NAME
    monkeypatch.setattr(plugin_library, "find_library", lambda: lib)
    monkeypatch.setattr(plugin_library, "library_tensorrt_version", lambda path: 100300)
    monkeypatch.setattr(gpu_imports, "import_tensorrt", lambda: fake_trt("11.1.0", False))
    assert doctor.check_plugin_library().line() == (
        f"FAIL  plugin library     {lib} (built for TensorRT 10.3), but TensorRT 11.1.0 is installed  -> "
        f"{plugin_library.BUILD_HINT}")
    monkeypatch.setattr(gpu_imports, "import_tensorrt", lambda: fake_trt("10.3.0", True))
    assert doctor.check_plugin_library().status == "ok"

    def missing() -> None:
        raise BackendUnavailableError("only stubs; pip install")

    monkeypatch.setattr(gpu_imports, "import_tensorrt", missing)
    assert doctor.check_plugin_library().line() == f"ok    plugin library     {lib} (built for TensorRT 10.3)"


def test_cameras_disk_and_a_check_that_breaks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(doctor.glob, "glob", lambda pattern: ["/dev/video2", "/dev/video0"])
    assert doctor.check_cameras().line() == "ok    cameras            /dev/video0, /dev/video2"
    monkeypatch.setattr(doctor.glob, "glob", lambda pattern: [])
    assert doctor.check_cameras().status == "--"
    usage = SimpleNamespace(total=100 * 2**30, used=99.5 * 2**30, free=2**29)
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda path: usage)
    assert doctor.check_disk(tmp_path).line() == (
        f"warn  disk               0.5 GiB free in {tmp_path}  -> free at least 2 GiB for engines, timing caches and "
        "videos")

    def broken() -> doctor.Check:
        raise OSError("boom")

    monkeypatch.setattr(doctor, "CHECKS", (broken,))
    assert [c.line() for c in doctor.run_checks()] == ["FAIL  broken             check failed: OSError: boom"]


@pytest.mark.parametrize(("version", "bit"), [("10.3.0", 1), ("11.1.0", 0)])
def test_strongly_typed_flags_read_from_the_binding(version: str, bit: int) -> None:
    assert gpu_imports.strongly_typed_flags(fake_trt(version, True)) == 1 << bit


@pytest.mark.parametrize(("present", "jetson", "expected"), [
    ({"x264enc", "h264parse", "rtph264pay", "udpsink", "rtspclientsink"}, False,
     "ok    udp/rtsp output    H.264 by x264; udp://, rtsp:// ready"),
    ({"nvvidconv", "nvv4l2h264enc", "x264enc", "h264parse", "rtph264pay", "udpsink"}, True,
     "warn  udp/rtsp output    H.264 by jetson; udp:// ready  -> sudo apt install gstreamer1.0-rtsp"),
    ({"x264enc", "h264parse", "rtph264pay", "udpsink"}, True,  # an Orin Nano: no NVENC
     "warn  udp/rtsp output    H.264 by x264; udp:// ready  -> sudo apt install gstreamer1.0-rtsp"),
    ({"rtph264pay", "udpsink", "rtspclientsink"}, False,
     "warn  udp/rtsp output    no H.264 encoder for GStreamer  -> sudo apt install gstreamer1.0-plugins-ugly "
     "(x264enc) and gstreamer1.0-plugins-bad (h264parse)"),
])
def test_stream_output_line(monkeypatch: pytest.MonkeyPatch, present: set[str], jetson: bool, expected: str) -> None:
    import edgeseg.gst_output as gst
    import edgeseg.sources as sources

    monkeypatch.setattr(sources, "gstreamer_available", lambda: True)
    monkeypatch.setattr(gst, "has_element", lambda name: name in present)
    monkeypatch.setattr(gst, "on_jetson", lambda: jetson)
    assert doctor.check_stream_output().line() == expected


def test_stream_output_without_gstreamer_in_opencv(monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeseg.sources as sources

    monkeypatch.setattr(sources, "gstreamer_available", lambda: False)
    assert doctor.check_stream_output().line() == (
        "--    udp/rtsp output    needs OpenCV with GStreamer (see opencv); -o http://HOST:PORT works without")


def test_readme_jetpack_table_is_generated_from_the_facts() -> None:
    from tools.platform_table import ROOT, with_table

    readme = (ROOT / "README.md").read_text()
    assert with_table(readme) == readme, "run python tools/platform_table.py"

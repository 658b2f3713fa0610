"""The TensorRT plugin library (plugins/CMakeLists.txt) against real TensorRT headers, no GPU needed.

Marked ``trt_headers``: runs where ``TENSORRT_INCLUDE_DIR`` names a folder with ``NvInfer.h``
(DEVELOPERS.md: how to get the headers of TensorRT 10.3 and 11.x without installing TensorRT),
and skips with that reason elsewhere. It builds the library with CMake and -Werror (TensorRT's
headers as system headers), checks that it exports TensorRT's entry points and references no
TensorRT symbol, then runs tests/plugin_host_harness.cpp, which dlopen()s it and drives every
plugin through getCreators as TensorRT would.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgeseg.custom_ops import CUSTOM_OPS, PLUGIN_NAMESPACE, PLUGIN_VERSION
from tests.test_cuda_compile import find_cuda_tool

pytestmark = pytest.mark.trt_headers

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "tests" / "plugin_host_harness.cpp"
LIBRARY = "libedgeseg_trt_plugins.so"


def header_version(include: Path) -> int:
    text = (include / "NvInferVersion.h").read_text()
    parts = []
    for what in ("MAJOR", "MINOR", "PATCH"):
        direct = re.search(rf"#define NV_TENSORRT_{what} (\d+)", text)
        enterprise = re.search(rf"#define TRT_{what}_ENTERPRISE (\d+)", text)
        found = direct or enterprise
        assert found, f"no TensorRT {what} version in {include / 'NvInferVersion.h'}"
        parts.append(int(found.group(1)))
    return parts[0] * 10000 + parts[1] * 100 + parts[2]


@pytest.fixture(scope="module")
def trt_include() -> Path:
    value = os.environ.get("TENSORRT_INCLUDE_DIR")
    if not value:
        pytest.skip("TENSORRT_INCLUDE_DIR is not set: point it at TensorRT's include folder (DEVELOPERS.md)")
    include = Path(value)
    if not (include / "NvInferRuntime.h").is_file():
        pytest.fail(f"TENSORRT_INCLUDE_DIR={include} holds no NvInferRuntime.h")
    for tool in ("cmake", "g++"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found")
    if find_cuda_tool("nvcc") is None:
        pytest.skip("nvcc not found: install the CUDA toolkit")
    return include


@pytest.fixture(scope="module")
def cuda_root() -> Path:
    nvcc = find_cuda_tool("nvcc")
    assert nvcc
    # /usr/local/bin/nvcc may be a wrapper script; the toolkit is where cuda_runtime_api.h is.
    for root in (Path(nvcc).resolve().parents[1], Path(os.environ.get("CUDA_HOME", "/usr/local/cuda"))):
        if (root / "include" / "cuda_runtime_api.h").is_file():
            return root
    pytest.skip("CUDA toolkit headers not found next to nvcc or in $CUDA_HOME")


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    return proc


@pytest.fixture(scope="module")
def library(trt_include: Path, cuda_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = tmp_path_factory.mktemp("plugins-build")
    nvcc = find_cuda_tool("nvcc")
    configure = ["cmake", "-S", str(ROOT / "plugins"), "-B", str(build), f"-DTENSORRT_INCLUDE_DIR={trt_include}",
                 f"-DCMAKE_CUDA_COMPILER={nvcc}", f"-DCUDAToolkit_ROOT={cuda_root}",
                 # test_cuda_compile.py compiles the kernels for every target; one is enough here.
                 "-DCMAKE_CUDA_ARCHITECTURES=87", "-DEDGESEG_WARNINGS_AS_ERRORS=ON"]
    proc = run(configure)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run(["cmake", "--build", str(build), "-j", "2"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warning" not in proc.stdout.lower(), proc.stdout
    path = build / LIBRARY
    assert path.is_file()
    return path


def test_library_exports_the_tensorrt_entry_points(library: Path) -> None:
    proc = run(["nm", "-D", "--defined-only", str(library)])
    exported = {line.split()[-1] for line in proc.stdout.splitlines() if " T " in line}
    assert {"getCreators", "setLoggerFinder", "edgesegPluginTensorRTVersion"} <= exported
    # Hidden visibility: nothing else of ours leaks into the process that loads it.
    assert not {s for s in exported if "edgeseg" in s and s != "edgesegPluginTensorRTVersion"}


def test_library_references_no_tensorrt_symbol(library: Path) -> None:
    """Linked with -Wl,--no-undefined against the CUDA runtime only: every undefined symbol is
    from the C/C++ runtime or libcudart, none from libnvinfer."""
    proc = run(["nm", "-D", "--undefined-only", str(library)])
    assert proc.returncode == 0, proc.stderr
    symbols = [line.split()[-1] for line in proc.stdout.splitlines() if line.strip()]
    foreign = [s for s in symbols if not re.search(r"@(GLIBC|GLIBCXX|CXXABI|GCC|libcudart)", s)
               and not s.startswith(("_ITM_", "__gmon_start__", "__cxa_finalize"))]
    assert not foreign, foreign
    assert not [s for s in symbols if "nvinfer" in s.lower() or "InferLib" in s]


def test_library_links_one_shared_cuda_runtime(library: Path) -> None:
    """The CUDA runtime TensorRT loads (libcudart.so), not also CMake's default static copy."""
    needed = run(["readelf", "-d", str(library)]).stdout
    assert re.search(r"NEEDED.*\[libcudart\.so\.\d+\]", needed), needed
    link = (library.parent / "CMakeFiles" / "edgeseg_trt_plugins.dir" / "link.txt").read_text()
    assert "cudart_static" not in link, link


def test_library_reports_the_tensorrt_version_of_its_headers(library: Path, trt_include: Path,
                                                             cuda_root: Path) -> None:
    os.environ["LD_LIBRARY_PATH"] = f"{cuda_root / 'lib64'}:{os.environ.get('LD_LIBRARY_PATH', '')}"
    try:
        lib = ctypes.CDLL(str(library))
    except OSError as exc:  # libcudart not on the loader path of this process
        pytest.skip(f"cannot load the library into this process: {exc}")
    lib.edgesegPluginTensorRTVersion.restype = ctypes.c_int32
    assert lib.edgesegPluginTensorRTVersion() == header_version(trt_include)


@pytest.fixture(scope="module")
def harness_output(library: Path, trt_include: Path, cuda_root: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    exe = tmp_path_factory.mktemp("harness") / "plugin_host_harness"
    proc = run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-isystem", str(trt_include), "-isystem",
                str(cuda_root / "include"), str(HARNESS), "-ldl", "-o", str(exe)])
    assert proc.returncode == 0, proc.stderr
    env = {**os.environ, "LD_LIBRARY_PATH": f"{cuda_root / 'lib64'}:{cuda_root / 'lib'}"}
    proc = run([str(exe), str(library)], env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_harness_checks_all_pass(harness_output: str) -> None:
    failed = [line for line in harness_output.splitlines() if line.startswith("FAIL")]
    assert not failed
    assert harness_output.count("\nok ") >= 80
    assert harness_output.rstrip().endswith("0 failed")


def test_creators_match_the_onnx_nodes(harness_output: str) -> None:
    """Name, version, namespace and field names of each creator = op_type, plugin_version,
    plugin_namespace and attributes of the ONNX nodes the converter writes."""
    creators = {}
    for line in harness_output.splitlines():
        if line.startswith("creator "):
            _, name, version, namespace, fields = line.split(" ")
            creators[name] = (version, namespace, fields.split(","))
    assert creators == {op: (PLUGIN_VERSION, PLUGIN_NAMESPACE, list(spec.defaults)) for op, spec in CUSTOM_OPS.items()}


def test_serialised_fields_are_the_attributes(harness_output: str) -> None:
    fields = dict(line.split(" ", 2)[1:] for line in harness_output.splitlines() if line.startswith("fields "))
    assert fields["MultiLevelRoIAlign"] == (
        "output_height:5:14,;output_width:5:14,;spatial_scales:1:0.250000,0.125000,0.062500,0.031250,;"
        "sampling_ratio:5:2,;aligned:5:0,;canonical_scale:1:224.000000,;canonical_level:5:4,;level_rule:5:0,;"
        "sampling:5:0,;image_area:1:0.000000,;")
    assert fields["MultiLevelRoIAlign/matterport"] == (
        "output_height:5:7,;output_width:5:7,;spatial_scales:1:0.250000,0.125000,0.062500,0.031250,;"
        "sampling_ratio:5:2,;aligned:5:0,;canonical_scale:1:224.000000,;canonical_level:5:4,;level_rule:5:2,;"
        "sampling:5:1,;image_area:1:262144.000000,;")
    assert fields["PasteMasks"] == "height:5:400,;width:5:600,;threshold:1:0.500000,;mode:5:0,;logits:5:0,;"
    assert fields["ZoomLinear"] == (
        "height:5:341,;width:5:512,;canvas_height:5:512,;canvas_width:5:512,;top:5:85,;left:5:0,;"
        "mean:1:123.699997,116.800003,103.900002,;")


def test_bad_fields_are_refused_with_the_reason(harness_output: str) -> None:
    refused = dict(line[len("refused "):].split(" | ", 1) for line in harness_output.splitlines()
                   if line.startswith("refused "))
    assert refused["PasteMasks refuses a width not a multiple of 4"] == (
        "PasteMasks: cannot create layer 'bad': width must be a multiple of 4 (the output holds four mask bytes "
        "per int32), got 602")
    assert refused["MultiLevelRoIAlign refuses an unknown field"] == (
        "MultiLevelRoIAlign: cannot create layer 'bad': unknown field 'output_heigth'")
    assert refused["MultiLevelRoIAlign refuses an unknown level rule"] == (
        "MultiLevelRoIAlign: cannot create layer 'bad': level_rule must be 0, 1 or 2, got 3")
    assert refused["MultiLevelRoIAlign refuses an unknown sampling"] == (
        "MultiLevelRoIAlign: cannot create layer 'bad': sampling must be 0 or 1, got 2")
    assert refused["MultiLevelRoIAlign refuses sampling 1 without level_rule 2 (an old library would drop sampling)"] \
        == ("MultiLevelRoIAlign: cannot create layer 'bad': sampling 1 (crop_and_resize) requires level_rule 2 "
            "(matterport), got level_rule 0: plugin libraries from before sampling 1 drop the attribute unread and "
            "would run RoIAlign on the normalised rois without an error; they refuse level_rule 2, so the pairing "
            "makes them fail instead")
    assert refused["MultiLevelRoIAlign refuses level_rule 2 without image_area"] == (
        "MultiLevelRoIAlign: cannot create layer 'bad': image_area must be > 0 with level_rule 2 (matterport): the "
        "molded image's height * width in pixels")
    assert refused["ZoomLinear refuses a window outside the canvas"] == (
        "ZoomLinear: cannot create layer 'bad': the zoomed image (341 x 512 at 200, 0) must lie inside the canvas "
        "(512 x 512)")
    assert refused["ZoomLinear refuses 9 means"] == (
        "ZoomLinear: cannot create layer 'bad': mean must hold 1 to 8 values, got 9")


def test_library_is_not_loaded_into_another_tensorrt_major(library: Path, trt_include: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorRT 11 changed ILoggerFinder's layout: edgeseg refuses, with the rebuild command, to
    hand a library built for one major version to another."""
    from types import SimpleNamespace

    from edgeseg.errors import EngineMismatchError
    from edgeseg.trt.plugin_library import ENV_VAR, load_plugins

    built = header_version(trt_include)
    other = SimpleNamespace(__version__=f"{built // 10000 + 1}.0.0", get_plugin_registry=None)
    monkeypatch.setenv(ENV_VAR, str(library))
    with pytest.raises(EngineMismatchError) as err:
        load_plugins(other)  # type: ignore[arg-type]
    assert str(err.value).startswith(
        f"{library} was built against TensorRT {built // 10000}.{built // 100 % 100} headers but TensorRT "
        f"{built // 10000 + 1}.0.0 is running; build it on this machine: cmake -S plugins")


def test_auto_registering_library_compiles(trt_include: Path, cuda_root: Path, tmp_path: Path) -> None:
    """libedgeseg_trt_plugins_autoreg.so (for Triton) needs libnvinfer to link, which is not here:
    its source is compiled with -Werror and must call TensorRT's registry and our getCreators."""
    obj = tmp_path / "plugin_autoregister.o"
    proc = run(["g++", "-std=c++17", "-fPIC", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'plugins'}", "-isystem",
                str(trt_include), "-isystem", str(cuda_root / "include"), "-c",
                str(ROOT / "plugins" / "common" / "plugin_autoregister.cpp"), "-o", str(obj)])
    assert proc.returncode == 0, proc.stderr
    undefined = run(["nm", "--undefined-only", str(obj)]).stdout
    assert "getPluginRegistry" in undefined and "getCreators" in undefined

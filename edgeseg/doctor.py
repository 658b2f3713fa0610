"""``edgeseg doctor``: what this machine has for edgeseg, one line each, every problem with its fix.

The first command on a new Jetson or desktop. Each :class:`Check` looks at one thing (Python,
ONNX Runtime, TensorRT, cuda-python, the GPU, the plugin library, OpenCV's video I/O, cameras,
disk) without loading a model, and never raises: a missing piece is a line that says how to get
it. The CPU path (convert elsewhere, run ``.onnx`` here) needs Python, numpy, OpenCV and ONNX
Runtime; everything else is needed only for TensorRT or for some sources.
"""

from __future__ import annotations

import glob
import importlib
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeseg.errors import EdgesegError
from edgeseg.platforms import (
    MIN_TENSORRT,
    TENSORRT_11_ON_JETSON,
    expected_jetpack,
    jetson_module,
    tensorrt_fits_jetpack,
)
from edgeseg.version import __version__

OK, WARN, FAIL, INFO = "ok", "warn", "FAIL", "--"
MIN_FREE_GIB = 2.0  # an engine build with its timing cache, a few recorded videos


@dataclass(frozen=True)
class Check:
    """One line of the report. ``status``: ok, warn (works, with a limit), FAIL (does not work),
    -- (not applicable here). ``cpu_path``: a FAIL here stops the CPU path."""

    name: str
    status: str
    detail: str
    fix: str = ""
    cpu_path: bool = False

    def line(self) -> str:
        return f"{self.status:<4}  {self.name:<18} {self.detail}" + (f"  -> {self.fix}" if self.fix else "")


def _version(module: str) -> str | None:
    try:
        return str(getattr(importlib.import_module(module), "__version__", "?"))
    except ImportError:
        return None


def check_python() -> Check:
    v = sys.version_info
    text = f"{platform.python_implementation()} {v.major}.{v.minor}.{v.micro} on {platform.machine()}"
    if v < (3, 10):
        return Check("python", FAIL, text, "edgeseg needs Python 3.10 or newer", cpu_path=True)
    return Check("python", OK, text, cpu_path=True)


def check_edgeseg() -> Check:
    return Check("edgeseg", OK, f"{__version__} at {Path(__file__).resolve().parent}", cpu_path=True)


def check_numpy() -> Check:
    v = _version("numpy")
    if v is None:
        return Check("numpy", FAIL, "not installed", "pip install numpy", cpu_path=True)
    return Check("numpy", OK, v, cpu_path=True)


def check_onnxruntime() -> Check:
    try:
        import onnxruntime as ort
    except ImportError:
        return Check("onnxruntime", FAIL, "not installed: .onnx models cannot run", "pip install onnxruntime",
                     cpu_path=True)
    providers = ", ".join(p.replace("ExecutionProvider", "") for p in ort.get_available_providers())
    return Check("onnxruntime", OK, f"{ort.__version__}, providers: {providers}", cpu_path=True)


def check_cpu_ops() -> Check:
    from edgeseg import ops
    from edgeseg.errors import BackendUnavailableError

    try:
        path = ops.library_path()
    except BackendUnavailableError as exc:
        return Check("cpu ops library", WARN, "not built: Mask R-CNN .onnx models cannot run on the CPU",
                     str(exc).split(": ", 1)[-1])
    return Check("cpu ops library", OK, f"{path.name} (MultiLevelRoIAlign, PasteMasks on the CPU)")


def _video_backends() -> list[str]:
    import cv2

    # getBackends() also lists plugin backends that are absent; hasBackend() says which are there.
    registry = getattr(cv2, "videoio_registry", None)
    if registry is None:
        return []
    return sorted({registry.getBackendName(b) for b in registry.getBackends() if registry.hasBackend(b)})


def check_opencv() -> Check:
    """Which OpenCV is imported, from where (a pip wheel or a system package), whether a pip one
    shadows a system one, and its video I/O backends."""
    from edgeseg.opencv_origin import JETSON_WAY, PIP_WAY, copies_on_path, shadowing
    from edgeseg.trt.gpu_imports import on_jetson

    try:
        import cv2
    except ImportError:
        return Check("opencv", FAIL, "not installed: no video, camera or image I/O",
                     JETSON_WAY if on_jetson() else f"{PIP_WAY}; {JETSON_WAY}", cpu_path=True)
    copies = copies_on_path()
    origin = ""
    if copies:
        first = copies[0]
        origin = f" from {first.location.parent} ({first.distribution or 'not pip: a system package'})"
    backends = _video_backends()
    detail = f"{cv2.__version__}{origin}, video I/O: {', '.join(backends) or 'none listed'}"
    hidden = shadowing(copies)
    if hidden is not None:
        package = (copies[0].distribution or "").split(" ")[0]
        return Check("opencv", WARN, f"{detail}; it shadows the system OpenCV at {hidden.location.parent}",
                     f"pip uninstall {package} (edgeseg installs pip's OpenCV only with its [opencv] extra)",
                     cpu_path=True)
    if "GSTREAMER" not in backends:
        return Check("opencv", WARN, detail + " (no GStreamer: csi:// cameras, GStreamer pipelines and udp:// / "
                     "rtsp:// outputs will not open)",
                     "on a Jetson use JetPack's OpenCV (sudo apt install python3-opencv; venv with "
                     "--system-site-packages, no pip OpenCV in it), elsewhere an OpenCV built with GStreamer",
                     cpu_path=True)
    return Check("opencv", OK, detail, cpu_path=True)


def check_stream_output() -> Check:
    """``-o udp://`` / ``-o rtsp://``: OpenCV's GStreamer, an H.264 encoder and each scheme's
    sender element."""
    import functools

    from edgeseg.gst_output import SENDERS, encoders, has_element
    from edgeseg.sources import gstreamer_available

    has_element = functools.cache(has_element)  # one gst-inspect-1.0 run per element (h264parse is in each encoder)
    name = "udp/rtsp output"
    if not gstreamer_available():
        return Check(name, INFO, "needs OpenCV with GStreamer (see opencv); -o http://HOST:PORT works without")
    if has_element("h264parse") is None:
        return Check(name, WARN, "gst-inspect-1.0 not found: cannot tell which GStreamer elements are installed",
                     "sudo apt install gstreamer1.0-tools")
    usable = [enc for enc in encoders() if all(has_element(e) for e in enc.elements)]
    if not usable:
        return Check(name, WARN, "no H.264 encoder for GStreamer", f"sudo apt install {encoders()[-1].package}")
    schemes = [s for s, (elements, _) in SENDERS.items() if all(has_element(e) for e in elements)]
    missing = [package for s, (_, package) in SENDERS.items() if s not in schemes]
    detail = f"H.264 by {usable[0].name}; " + (", ".join(f"{s}://" for s in schemes) or "no scheme") + " ready"
    if missing:
        return Check(name, WARN, detail, f"sudo apt install {' '.join(missing)}")
    return Check(name, OK, detail)


def check_tensorrt() -> Check:
    """TensorRT's version and binding; on a Jetson, also the JetPack that ships the TensorRT this
    module should have (edgeseg.platforms)."""
    from edgeseg.trt.gpu_imports import import_tensorrt

    module = jetson_module()
    expected = f"a Jetson {module} takes {expected_jetpack(module)}" if module else ""
    try:
        trt = import_tensorrt()
    except EdgesegError as exc:
        reason, _, fix = str(exc).partition("; ")
        return Check("tensorrt", INFO, f"{reason}: .engine files cannot be built or run here",
                     f"{fix} ({expected})" if expected else fix)
    version = str(trt.__version__)
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < MIN_TENSORRT:
        return Check("tensorrt", FAIL, f"{version}: edgeseg's plugins need TensorRT 10.3 or newer",
                     expected or "TensorRT 10.3 or newer (10.x or 11.x)")
    if not hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        return Check("tensorrt", FAIL, f"{version}: its Python binding has no strongly typed networks",
                     "install TensorRT's own Python package of the same version (python3-libnvinfer on a Jetson)")
    detail = f"{version} (strongly typed builds: the precision is the ONNX file's)"
    if module and not tensorrt_fits_jetpack(module, version):
        return Check("tensorrt", WARN, f"{detail}; no JetPack ships it for a Jetson {module}",
                     f"{expected}; {TENSORRT_11_ON_JETSON}")
    return Check("tensorrt", OK, f"{detail}; {expected}" if module else detail)


def check_cuda_python() -> Check:
    from edgeseg.trt.gpu_imports import import_cudart

    try:
        import_cudart()
    except EdgesegError as exc:
        reason, _, fix = str(exc).partition("; ")
        return Check("cuda-python", INFO, reason, fix)
    return Check("cuda-python", OK, _version("cuda.bindings") or _version("cuda") or "installed")


def check_gpu() -> Check:
    from edgeseg.trt.gpu_imports import check, current_gpu, driver_problem, import_cudart

    try:
        cudart = import_cudart()
    except EdgesegError:
        return Check("cuda device", INFO, "not looked for (cuda-python is not installed)")
    try:
        count = int(check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount"))
        name, capability = current_gpu(cudart)
    except EdgesegError as exc:
        # cudaErrorInsufficientDriver means no driver, or one older than these bindings' CUDA
        problem = driver_problem(cudart) if "InsufficientDriver" in str(exc) else None
        if problem is not None:
            driver_missing = problem[0] == "no NVIDIA driver found"
            return Check("cuda device", INFO if driver_missing else FAIL,
                         problem[0] + (": .engine files need one" if driver_missing else ""), problem[1])
        if "NoDevice" in str(exc) or "InsufficientDriver" in str(exc):
            return Check("cuda device", INFO, "no NVIDIA GPU or driver found: .engine files need one",
                         "on a GPU machine, nvidia-smi (tegrastats on a Jetson) must list the GPU")
        return Check("cuda device", FAIL, str(exc), "check the NVIDIA driver (nvidia-smi, or tegrastats on a Jetson)")
    return Check("cuda device", OK, f"{name}, compute capability {capability} ({count} device(s))")


def check_plugin_library() -> Check:
    from edgeseg.trt.gpu_imports import import_tensorrt, tensorrt_major
    from edgeseg.trt.plugin_library import BUILD_HINT, find_library, library_tensorrt_version, major_minor

    try:
        path = find_library()
    except EdgesegError as exc:
        return Check("plugin library", INFO, str(exc).split(";")[0] + "; Mask R-CNN engines need it", BUILD_HINT)
    try:
        built = library_tensorrt_version(path)
    except EdgesegError as exc:
        return Check("plugin library", FAIL, str(exc).split(";")[0], BUILD_HINT)
    detail = f"{path} (built for TensorRT {major_minor(built)})"
    try:
        trt = import_tensorrt()
    except EdgesegError:
        return Check("plugin library", OK, detail)
    if built // 10000 != tensorrt_major(trt):
        return Check("plugin library", FAIL, f"{detail}, but TensorRT {trt.__version__} is installed", BUILD_HINT)
    return Check("plugin library", OK, detail)


def check_cameras() -> Check:
    devices = sorted(glob.glob("/dev/video*"))
    if not devices:
        return Check("cameras", INFO, "no /dev/video* devices (USB / V4L2 cameras); files and streams still work")
    return Check("cameras", OK, ", ".join(devices))


def check_disk(path: Path | None = None) -> Check:
    where = path or Path.cwd()
    free = shutil.disk_usage(where).free / 2**30
    detail = f"{free:.1f} GiB free in {where}"
    if free < MIN_FREE_GIB:
        return Check("disk", WARN, detail,
                     f"free at least {MIN_FREE_GIB:.0f} GiB for engines, timing caches and videos")
    return Check("disk", OK, detail)


CHECKS: tuple[Callable[[], Check], ...] = (
    check_python, check_edgeseg, check_numpy, check_onnxruntime, check_cpu_ops, check_opencv, check_stream_output,
    check_tensorrt,
    check_cuda_python, check_gpu, check_plugin_library, check_cameras, check_disk,
)


def run_checks() -> list[Check]:
    """Every check, in report order; a check that breaks unexpectedly becomes a FAIL line."""
    results = []
    for fn in CHECKS:
        try:
            results.append(fn())
        except Exception as exc:  # a doctor must report, not crash
            name = fn.__name__.removeprefix("check_")
            results.append(Check(name, FAIL, f"check failed: {type(exc).__name__}: {exc}"))
    return results


def cpu_path_works(results: list[Check]) -> bool:
    """True when nothing the CPU path needs is FAIL."""
    return not any(c.cpu_path and c.status == FAIL for c in results)


def report(results: list[Check]) -> str:
    lines = [c.line() for c in results]
    verdict = ("the CPU path works: edgeseg run M.onnx" if cpu_path_works(results)
               else "the CPU path does not work: fix the FAIL lines above")
    gpu = next((c for c in results if c.name == "tensorrt"), None)
    if gpu is not None and gpu.status == OK:
        verdict += "; TensorRT is here: edgeseg build M.onnx -o M.engine"
    return "\n".join([*lines, verdict])


def as_json(results: list[Check]) -> dict[str, object]:
    return {"checks": [asdict(c) for c in results], "cpu_path_ok": cpu_path_works(results)}

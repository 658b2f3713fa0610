"""``edgeseg build``: an edgeseg ONNX file -> a TensorRT engine for this machine's GPU.

Uses TensorRT's Python API: the ONNX parser (our plugin library loaded first when the graph has
edgeseg custom nodes), a builder config from :class:`BuildOptions`, and writes the plan with the
model's metadata and how it was built (:mod:`edgeseg.engine_file`), atomically.

Precision is the ONNX file's own (``edgeseg convert --precision fp32|fp16|int8``: FP16 types and
INT8 Q/DQ nodes in the graph, :mod:`edgeseg.precision`): every file is parsed into a *strongly
typed* network, the one kind TensorRT 11 builds and one TensorRT 10.3 (JetPack 6) builds too, so
one code path and no builder precision flags or calibrator serve both.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import onnx
import tensorrt as trt

from edgeseg import ranges
from edgeseg.atomic import atomic_output, check_writable
from edgeseg.custom_ops import custom_ops_in
from edgeseg.engine_file import BuildInfo, write_engine
from edgeseg.errors import ConversionError, ModelFileError
from edgeseg.lint import data_dependent_ops
from edgeseg.metadata import METADATA_KEY, ModelMetadata
from edgeseg.progress import Steps
from edgeseg.trt.gpu_imports import current_gpu, import_cudart, numpy_dtype, strongly_typed_flags
from edgeseg.trt.plugin_library import load_plugins
from edgeseg.trt.timing_cache import read_timing_cache, use_timing_cache
from edgeseg.trt.trt_logger import LOGGER, Capture

MIB = 1 << 20


@dataclass(frozen=True)
class BuildOptions:
    """How to build. Sizes in MiB; paths may be None. (The precision is the ONNX file's.)"""

    timing_cache: Path | None = None
    workspace_mib: int = 2048
    # put the plugin library into the engine (no library needed to run it); makes the engine
    # version-compatible, as TensorRT serialises plugin libraries only into such engines
    embed_plugins: bool = False
    verbose: bool = False

    def __post_init__(self) -> None:
        ranges.check("workspace_mib", self.workspace_mib, 1, integer=True)


class _Progress(trt.IProgressMonitor):
    """Prints TensorRT's top-level build phases as they finish."""

    def __init__(self, stream: TextIO) -> None:
        trt.IProgressMonitor.__init__(self)
        self.stream = stream
        self.started: dict[str, float] = {}

    def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        self.started[phase_name] = time.perf_counter()

    def step_complete(self, phase_name: str, step: int) -> bool:
        return True  # never cancel

    def phase_finish(self, phase_name: str) -> None:
        took = time.perf_counter() - self.started.pop(phase_name, time.perf_counter())
        if took >= 1.0:
            print(f"      {phase_name}: {took:.1f} s", file=self.stream, flush=True)


def read_onnx_header(path: Path) -> tuple[dict[str, str], ModelMetadata, tuple[str, ...], tuple[str, ...]]:
    """(metadata_props, parsed edgeseg metadata, custom ops used, data-dependent ops used) of an
    edgeseg ONNX file."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ModelFileError(f"{path.name}: not a readable ONNX file ({exc})") from exc
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise ModelFileError(f"{path.name}: no edgeseg metadata; convert the model with `edgeseg convert` first")
    meta = ModelMetadata.from_json(props[METADATA_KEY], source=path.name)
    return props, meta, custom_ops_in(model.graph), data_dependent_ops(model.graph)


def network_tensors(network: trt.INetworkDefinition, source: str = "the network") -> list[list[object]]:
    """[role, name, shape, numpy dtype name] of every network input and output (for `edgeseg info`);
    :class:`ModelFileError` for one of a type numpy lacks (*source* names the file)."""
    rows: list[list[object]] = []
    for role, count, get in (("input", network.num_inputs, network.get_input),
                             ("output", network.num_outputs, network.get_output)):
        for i in range(count):
            t = get(i)
            shape = [int(t.shape[k]) for k in range(len(t.shape))]
            dtype = numpy_dtype(trt, t.dtype, f"{source}: {role} {t.name}",
                                "convert the model with `edgeseg convert`, whose graphs use numpy's types")
            rows.append([role, t.name, shape, dtype.name])
    return rows


def build_engine(onnx_path: str | Path, output: str | Path, options: BuildOptions | None = None,
                 stream: TextIO | None = None, quiet: bool = False) -> Path:
    """Build a TensorRT engine for the current GPU from an edgeseg ONNX file; return its path."""
    opts = options or BuildOptions()
    src, out = Path(onnx_path), check_writable(output)
    log_stream = stream or sys.stderr
    if not src.is_file():
        raise ModelFileError(f"{src}: no such ONNX file")
    cache_bytes = read_timing_cache(opts.timing_cache)  # a folder or missing folder: said now, not after the build
    # the errors TensorRT logs from this thread while it builds: this build's, not another thread's
    with LOGGER.capture(verbose=opts.verbose) as logger:
        return _build(src, out, opts, cache_bytes, log_stream, quiet, logger)


def _build(src: Path, out: Path, opts: BuildOptions, cache_bytes: bytes, log_stream: TextIO, quiet: bool,
           logger: Capture) -> Path:
    cudart = import_cudart()
    gpu = current_gpu(cudart)
    steps = Steps(4, stream=log_stream, quiet=quiet)
    props, meta, custom, data_dependent = read_onnx_header(src)
    library: Path | None = None
    with steps.step(f"parsing {src.name} (TensorRT {trt.__version__}, {gpu[0]})"):
        builder = trt.Builder(LOGGER)  # first: TensorRT's process logger is then edgeseg's
        if custom:
            library = load_plugins(trt)
        network = builder.create_network(strongly_typed_flags(trt))
        parser = trt.OnnxParser(network, LOGGER)
        if not parser.parse_from_file(str(src)):
            errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
            raise ConversionError(f"TensorRT's ONNX parser rejected {src.name}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_mib * MIB)
    if not quiet:
        config.progress_monitor = _Progress(log_stream)
    with steps.step(f"configuring (strongly typed, {meta.precision_summary()})"):
        if opts.embed_plugins and library is not None:
            # TensorRT serialises plugin libraries only with version-compatible engines (NvInfer.h,
            # setPluginsToSerialize; trtexec sets both): the plan then carries the library and the
            # lean runtime, which run as host code the opening runtime must allow.
            config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
            config.plugins_to_serialize = [str(library)]
        use_timing_cache(config, cache_bytes, opts.timing_cache, logger.last_error)

    with steps.step("building the engine (minutes on a Jetson)"):
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise ConversionError(f"TensorRT could not build {src.name}: {logger.last_error() or 'see the log above'}")

    with steps.step(f"writing {out.name}"):
        if opts.timing_cache is not None:
            with atomic_output(opts.timing_cache) as tmp:
                tmp.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
        build = BuildInfo(
            tensorrt_version=trt.__version__,
            gpu_name=gpu[0],
            compute_capability=gpu[1],
            precision=meta.precision,
            plugins=custom,
            extra={"workspace_mib": opts.workspace_mib, "strongly_typed": True,
                   # embedded plugins come with a version-compatible plan (see configuring)
                   "plugins_embedded": bool(opts.embed_plugins and library is not None),
                   # the backend captures CUDA graphs only without these (edgeseg.backends.tensorrt)
                   "data_dependent_shapes": list(data_dependent),
                   "tensors": network_tensors(network, src.name)},
        )
        write_engine(out, memoryview(plan), props, build)
    return out

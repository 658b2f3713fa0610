"""The INT8 file: explicit Q/DQ by ONNX Runtime's quantizer, calibrated through edgeseg's runtime.

Format (what TensorRT 10.3+ and 11.x build from a strongly typed network, and what ONNX
Runtime runs with int8 kernels on the CPU): QuantizeLinear/DequantizeLinear pairs with int8 values
and zero points of 0; weights per output channel, activations per tensor, both symmetric; biases
stay FP32 (TensorRT takes no INT32 DequantizeLinear). The network layers of the family's rules
are quantized (inputs, outputs and weights of every op ONNX Runtime's quantizer handles, but
:data:`~edgeseg.precision.rules.FLOAT_ONLY_OPS`); everything else stays FP32.

Calibration: ONNX Runtime's calibrators run the graph in its own sessions, which cannot run
edgeseg's custom nodes. So the graph runs as edgeseg's CPU backend runs it (ONNX Runtime
segments between the custom nodes, :class:`~edgeseg.backends.split_graph.SplitGraph`), and each
segment with quantizable nodes gets its own ONNX Runtime calibrator, fed the inputs that segment
receives. Their ranges are merged, saved in ONNX Runtime's calibration cache format, and
``quantize_static`` quantizes the whole graph from that cache. Detection-slot rows past the
detections are left out of the statistics, as on the CPU backend (they are discarded anyway).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgeseg.atomic import atomic_output
from edgeseg.backends.split_graph import RowTrim, SplitGraph
from edgeseg.custom_ops import custom_ops_in
from edgeseg.errors import ArgumentError
from edgeseg.metadata import ModelMetadata
from edgeseg.precision.calibration import CalibrationSet
from edgeseg.progress import FrameProgress

#: --calib-method -> ONNX Runtime's CalibrationMethod name
METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
DEFAULT_METHOD = "minmax"


def _method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    if name not in METHODS:
        raise ArgumentError(f"--calib-method {name!r}: choose one of {', '.join(METHODS)}")
    return getattr(CalibrationMethod, METHODS[name])


class _OneFeed:
    """An ONNX Runtime CalibrationDataReader holding one feed."""

    def __init__(self, feeds: dict[str, np.ndarray]) -> None:
        self._feeds: dict[str, np.ndarray] | None = feeds

    def get_next(self) -> dict[str, np.ndarray] | None:
        feeds, self._feeds = self._feeds, None
        return feeds


class _CalibratingSession:
    """An ONNX Runtime session of one segment that also feeds each input to a calibrator."""

    def __init__(self, session: Any, calibrator: Any) -> None:
        self.session = session
        self.calibrator = calibrator

    def run(self, outputs: Sequence[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.calibrator.collect_data(_OneFeed(feeds))
        result: list[np.ndarray] = self.session.run(None if outputs is None else list(outputs), feeds)
        return result


@contextlib.contextmanager
def _quiet_ort() -> Iterator[None]:
    """ONNX Runtime's quantizer logs advice for other targets ("consider pre-processing"); not ours."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _session(model: bytes | str) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def calibrate(model: Any, meta: ModelMetadata, images: CalibrationSet, method: str, cache: Path,
              nodes: list[str], stream: TextIO | None = None, quiet: bool = False) -> None:
    """Run the FP32 *model* (ModelProto) on the calibration frames; write the ranges of the
    tensors of the *nodes* to quantize to *cache* (ONNX Runtime's calibration cache, atomically)."""
    import onnx
    from onnxruntime.quantization import TensorsData, create_calibrator, save_tensors_data

    calibration_method = _method(method)
    quantized = set(nodes)
    op_types = sorted({n.op_type for n in model.graph.node if n.name in quantized})
    with tempfile.TemporaryDirectory(prefix="edgeseg-calib-") as tmp:
        calibrators: list[Any] = []

        def make_session(segment: bytes) -> Any:
            proto = onnx.load_from_string(segment)
            if not any(n.name in quantized for n in proto.graph.node):
                return _session(segment)
            path = Path(tmp) / f"segment{len(calibrators)}.onnx"
            path.write_bytes(segment)
            with _quiet_ort():
                calibrator = create_calibrator(path, op_types,
                                               augmented_model_path=str(path.with_suffix(".augmented.onnx")),
                                               calibrate_method=calibration_method,
                                               extra_options={"symmetric": True})
            calibrators.append(calibrator)
            return _CalibratingSession(_session(segment), calibrator)

        run: Callable[[dict[str, np.ndarray]], object]
        if custom_ops_in(model.graph):
            split = SplitGraph(model, make_session, rows=RowTrim.for_model(meta))
            outputs = list(split.output_names)
            run = lambda feeds: split.run(feeds, outputs)  # noqa: E731
        else:
            whole = make_session(model.SerializeToString())
            run = lambda feeds: whole.run(None, feeds)  # noqa: E731
        progress = FrameProgress(len(images.images), stream=stream, quiet=quiet, label="calibration frame")
        for frame in images.frames():
            with _quiet_ort():
                run({meta.input_name: frame})
            progress.update()
        progress.finish()
        merged: dict[str, Any] = {}
        with _quiet_ort():
            for calibrator in calibrators:
                for name, value in calibrator.compute_data().items():
                    merged.setdefault(name, value)  # a tensor two segments share: the producer's view
        with atomic_output(cache) as part:
            save_tensors_data(TensorsData(calibration_method, merged), part)


def quantize(src: Path, graph: Any, dst: Path, nodes: list[str], method: str, cache: Path) -> None:
    """Write the INT8 Q/DQ graph of the FP32 file *src* (whose ``GraphProto`` the caller has
    loaded: *graph*) to *dst*, quantizing *nodes* with the ranges in *cache* (see the module
    docstring for the format)."""
    from onnxruntime.quantization import QuantFormat, QuantType, load_tensors_data, quantize_static

    ranges = load_tensors_data(cache)
    calibration_method = _method(method)
    if ranges.calibration_method != calibration_method:
        raise ArgumentError(f"calibration cache {cache} was made with {ranges.calibration_method.name}, not "
                            f"{METHODS[method]}: delete it or use the same --calib-method")
    by_name = {n.name: n for n in graph.node}
    missing = sorted({by_name[n].input[0] for n in nodes if n in by_name} - set(ranges.keys()))
    if missing:
        raise ArgumentError(f"calibration cache {cache} holds no statistics for {len(missing)} tensor(s) of this "
                            f"model (first: {missing[0]}): it was made for another model; delete it")
    with _quiet_ort():
        quantize_static(
            str(src), str(dst), None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=sorted({n.op_type for n in by_name.values() if n.name in set(nodes)}),
            nodes_to_quantize=nodes,
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=calibration_method,
            calibration_cache_path=str(cache),
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        )

"""Precision in the ONNX graph: FP16 (mixed) and INT8 (explicit Q/DQ) files from an FP32 one.

TensorRT 11 builds strongly typed networks only (no FP16/INT8 builder flags, no calibrator), and
TensorRT 10.3 (JetPack 6) builds them too; so an edgeseg file carries its precision in its own
types and Q/DQ nodes, and every backend runs the same graph: ONNX Runtime on the CPU (real int8
kernels for Q/DQ), TensorRT unchanged on 10.3 and 11.x.

- :mod:`edgeseg.precision.rules`: which layers compute in FP16 / INT8 (data, per model family);
- :mod:`edgeseg.precision.fp16`: the mixed-precision FP16 graph;
- :mod:`edgeseg.precision.calibration`: calibration frames, progress, the statistics cache;
- :mod:`edgeseg.precision.int8`: INT8 Q/DQ by ONNX Runtime's quantizer, calibrated per segment;
- :mod:`edgeseg.precision.convert`: one call from an FP32 file to the requested precision.

Needs ``onnx`` and ``onnxruntime`` (not torch).
"""

from edgeseg.precision.rules import PRECISIONS, LayerRule, PrecisionRules

__all__ = ["PRECISIONS", "LayerRule", "PrecisionRules"]

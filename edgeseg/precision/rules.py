"""Which layers of a graph compute in reduced precision: a written rule list per model family.

A rule list names, by ``fnmatch`` patterns over ONNX node names, the *network layers*: the
convolutional and fully connected layers and the activations between them (backbone, FPN, heads).
Those compute in FP16 in an ``fp16`` file, and are quantized in an ``int8`` file (INT8 Q/DQ on
their inputs, outputs and weights, so activations stay INT8 from layer to layer: what both
TensorRT and ONNX Runtime fuse into INT8 kernels), except :data:`FLOAT_ONLY_OPS`. ``keep_fp32``
names the exceptions inside them. Every other node stays FP32: frame normalisation and resizing, anchors,
box decoding, NMS and its inputs, RoI coordinates, score thresholds, the paste and its threshold.
Patterns that match no node are an error (a rule list that silently matches nothing would give
an FP32 file under an FP16 name).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edgeseg.metadata import PRECISIONS

__all__ = ["FLOAT_ONLY_OPS", "PRECISIONS", "LayerRule", "PrecisionRules"]

#: network-layer ops an INT8 file leaves in float. ConvTranspose: which weight axis TensorRT's
#: per-channel INT8 deconvolution takes is unsettled (NVIDIA/TensorRT#2380: axis 0; its own
#: pytorch-quantization: axis 1). Custom nodes (the plugins) have no INT8 form.
FLOAT_ONLY_OPS = ("ConvTranspose",)


@dataclass(frozen=True)
class LayerRule:
    """Nodes whose name matches ``pattern`` (fnmatch), and why they are in the list."""

    pattern: str
    why: str

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.pattern)


@dataclass(frozen=True)
class PrecisionRules:
    """The rule list of one model family (see the module docstring)."""

    family: str
    network: tuple[LayerRule, ...]
    keep_fp32: tuple[LayerRule, ...] = ()

    def reduced(self, graph: Any) -> set[str]:
        """Names of the nodes of *graph* (an ONNX GraphProto) that compute in reduced precision.
        ValueError naming the patterns that match no node."""
        names = [n.name for n in graph.node]
        _check_all_match(self.family, (*self.network, *self.keep_fp32), names)
        return {name for name in names
                if any(r.matches(name) for r in self.network) and not any(r.matches(name) for r in self.keep_fp32)}

    def quantized(self, graph: Any) -> list[str]:
        """Names of the nodes of *graph* an INT8 file quantizes, in graph order."""
        reduced = self.reduced(graph)
        return [n.name for n in graph.node if n.name in reduced and n.op_type not in FLOAT_ONLY_OPS
                and n.domain in ("", "ai.onnx")]

    def table(self) -> list[tuple[str, str, str]]:
        """(pattern, precision, why) rows, for the docs and ``edgeseg info``."""
        return [(r.pattern, "fp16 / int8", r.why) for r in self.network] + [
            (r.pattern, "fp32", r.why) for r in self.keep_fp32]


def _check_all_match(family: str, rules: Iterable[LayerRule], names: list[str]) -> None:
    dead = [r.pattern for r in rules if not any(r.matches(n) for n in names)]
    if dead:
        raise ValueError(f"{family} precision rules {dead} match no node of the graph; the converter's layer names "
                         "changed: update the rules next to the family's exporter")

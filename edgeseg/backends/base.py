"""The interface every inference backend implements.

A backend owns one compiled model (an ONNX Runtime session, a TensorRT engine) and runs it on
numpy arrays. It knows nothing about frames, classes or drawing: that is the model's job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgeseg.metadata import METADATA_KEY, ModelMetadata


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: name, shape (ints; a str for a dimension the file leaves open)
    and numpy dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: np.dtype


class Backend(ABC):
    """Runs one model file. Implementations: ONNX Runtime (CPU, ``ort.py``); TensorRT (GPU, ``tensorrt.py``)."""

    #: short name shown by tools, e.g. ``onnxruntime``
    name: str = ""
    #: edgeseg custom ops (TensorRT plugins) the model uses, e.g. ``("MultiLevelRoIAlign",)``
    custom_ops: tuple[str, ...] = ()
    #: whether several threads may call ``run`` at once (several streams on one model)
    concurrent_runs: bool = False

    # Set by every implementation when it opens its file.
    _inputs: Sequence[TensorSpec]
    _outputs: Sequence[TensorSpec]
    _metadata: Mapping[str, str]

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        """The graph inputs, in order."""
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        """The graph outputs, in order."""
        return self._outputs

    def metadata(self) -> Mapping[str, str]:
        """The file's key/value metadata (``metadata_props`` for ONNX)."""
        return self._metadata

    #: the file's edgeseg description, parsed once when the backend opens the file (None for a
    #: file edgeseg did not write, e.g. a bare test engine)
    model_metadata: ModelMetadata | None = None

    def _parse_metadata(self, source: str) -> ModelMetadata | None:
        """Parse the edgeseg description from ``_metadata`` (once, when the file is opened)."""
        self.model_metadata = ModelMetadata.from_props(self._metadata, source) if METADATA_KEY in self._metadata \
            else None
        return self.model_metadata

    @abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Run once; return the requested outputs by name. Only what is asked for is copied out."""

    def inner_timings(self) -> list[tuple[str, float]]:
        """What the last :meth:`run` spent where, as (part, seconds), for ``edgeseg bench``: graph
        segments and custom ops on the CPU, the engine's GPU time on TensorRT. Empty if unknown."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook; most backends free on garbage collection
        """Release the model's resources early."""

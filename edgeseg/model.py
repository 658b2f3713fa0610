"""A loaded model: a backend plus the metadata that says how to feed it and read its outputs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeseg.backends import Backend, open_backend
from edgeseg.custom_ops import unpack_mask_bytes
from edgeseg.errors import ModelFileError
from edgeseg.frames import fit_frame, map_labels_back, validate_frame
from edgeseg.metadata import ModelMetadata
from edgeseg.result import InstanceResult, SemanticResult

Result = SemanticResult | InstanceResult
Decoder = Callable[[ModelMetadata, dict[str, np.ndarray], tuple[int, int]], Result]


def _decode_semantic(meta: ModelMetadata, outputs: dict[str, np.ndarray], frame_hw: tuple[int, int]) -> Result:
    label_map = outputs[meta.outputs["label_map"]]
    return SemanticResult(map_labels_back(label_map, frame_hw), meta.classes, meta.palette)


def _decode_instance(meta: ModelMetadata, outputs: dict[str, np.ndarray], frame_hw: tuple[int, int]) -> Result:
    o = meta.outputs
    n = int(outputs[o["num_detections"]].reshape(-1)[0])
    boxes = outputs[o["boxes"]][:n].astype(np.float32, copy=True)
    masks = unpack_mask_bytes(outputs[o["masks"]][:n], meta.frame_hw[1])
    if frame_hw != meta.frame_hw:
        sy, sx = frame_hw[0] / meta.frame_hw[0], frame_hw[1] / meta.frame_hw[1]
        boxes *= np.array([sx, sy, sx, sy], dtype=np.float32)
        masks = np.stack([map_labels_back(m, frame_hw) for m in masks]) if n else np.zeros((0, *frame_hw), np.uint8)
    return InstanceResult(
        boxes=boxes,
        scores=outputs[o["scores"]][:n].astype(np.float32, copy=False),
        labels=outputs[o["labels"]][:n].astype(np.int32, copy=False),
        masks=masks,
        classes=meta.classes,
        palette=meta.palette,
    )


# Model kind -> (output roles the decoder reads, decoder).
_DECODERS: dict[str, tuple[tuple[str, ...], Decoder]] = {
    "semantic": (("label_map",), _decode_semantic),
    "instance": (("num_detections", "boxes", "scores", "labels", "masks"), _decode_instance),
}


class Model:
    """A converted edgeseg model, callable on frames.

    ``model(frame)`` takes an HxWx3 uint8 BGR frame of any size; frames whose size differs from
    the model's ``frame_hw`` are resized to it and the result is mapped back, so results are
    always in the coordinates of the frame passed in.
    """

    def __init__(self, backend: Backend, metadata: ModelMetadata, path: Path) -> None:
        self.backend = backend
        self.metadata = metadata
        self.path = path
        roles, self._decode = _DECODERS[metadata.kind]
        graph_outputs = {o.name for o in backend.outputs}
        missing = [r for r in roles if metadata.outputs.get(r) not in graph_outputs]
        if missing:
            raise ModelFileError(f"{path.name}: the graph lacks the {', '.join(missing)} output(s); re-convert it")
        self._output_names = [metadata.outputs[r] for r in roles]

    @property
    def classes(self) -> tuple[str, ...]:
        return self.metadata.classes

    @property
    def frame_hw(self) -> tuple[int, int]:
        """(height, width) in pixels of the frame the graph was built for."""
        return self.metadata.frame_hw

    def run_outputs(self, frame: np.ndarray, outputs: list[str]) -> dict[str, np.ndarray]:
        """Run the graph on a frame already at ``frame_hw`` and return the named raw outputs
        (for tools that compare intermediate tensors)."""
        return self.backend.run({self.metadata.input_name: frame}, outputs)

    # The three stages of a call, public for tools that time or inspect them (edgeseg bench).

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        """Check an HxWx3 uint8 BGR frame and fit it to ``frame_hw`` (everything else is in the graph)."""
        return fit_frame(validate_frame(frame), self.frame_hw)

    def infer(self, fitted: np.ndarray) -> dict[str, np.ndarray]:
        """Run the graph on a preprocessed frame; the raw outputs the decoder needs."""
        return self.run_outputs(fitted, self._output_names)

    def decode(self, outputs: dict[str, np.ndarray], frame_hw: tuple[int, int]) -> Result:
        """The result of raw outputs, in the coordinates of a frame of *frame_hw* (height, width)."""
        return self._decode(self.metadata, outputs, frame_hw)

    def __call__(self, frame: np.ndarray) -> Result:
        outputs = self.infer(self.preprocess(frame))
        return self.decode(outputs, (frame.shape[0], frame.shape[1]))

    def semantic(self, frame: np.ndarray) -> SemanticResult:
        """``model(frame)`` for a semantic model, typed as such; :class:`ModelFileError` for
        an instance model."""
        result = self(frame)
        if not isinstance(result, SemanticResult):
            raise ModelFileError(f"{self.path.name} is an {self.metadata.kind} model; call model.instances(frame)")
        return result

    def instances(self, frame: np.ndarray) -> InstanceResult:
        """``model(frame)`` for an instance model, typed as such; :class:`ModelFileError` for
        a semantic model."""
        result = self(frame)
        if not isinstance(result, InstanceResult):
            raise ModelFileError(f"{self.path.name} is a {self.metadata.kind} model; call model.semantic(frame)")
        return result

    def __repr__(self) -> str:
        m = self.metadata
        return (
            f"Model({self.path.name}: {m.kind} {m.arch}, {m.num_classes} classes, "
            f"frame {m.frame_hw[0]}x{m.frame_hw[1]}, backend {self.backend.name})"
        )


def read_metadata(backend: Backend, path: Path) -> ModelMetadata:
    """The edgeseg description the backend parsed when it opened *path*; :class:`ModelFileError`
    if the file has none."""
    if backend.model_metadata is None:
        return ModelMetadata.from_props(backend.metadata(), source=path.name)  # raises, saying why
    return backend.model_metadata


def load(path: str | os.PathLike[str], threads: int | None = None, cuda_graph: bool = False) -> Model:
    """Load a model file: ``.onnx`` from ``edgeseg convert`` (ONNX Runtime, CPU) or ``.engine``
    from ``edgeseg build`` (TensorRT, GPU).

    *threads*: CPU threads for ONNX Runtime (default: one per core). *cuda_graph*: TensorRT only,
    replay each run as a captured CUDA graph where the engine allows it (less launch overhead).
    """
    p = Path(path)
    backend = open_backend(p, threads=threads, cuda_graph=cuda_graph)
    return Model(backend, read_metadata(backend, p), p)

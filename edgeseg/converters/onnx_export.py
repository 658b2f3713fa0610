"""PyTorch module -> ONNX file with edgeseg metadata, written atomically."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch
from torch import nn

from edgeseg.atomic import atomic_output
from edgeseg.errors import ArgumentError, ConversionError
from edgeseg.metadata import METADATA_KEY, ModelMetadata

# TensorRT 10.3 (JetPack 6.x) parses opsets up to 20; 17 has every op we use.
DEFAULT_OPSET = 17
# Both families' coarsest feature map is 1/32 of the network input.
MIN_SIDE = 32


def check_min_side(what: str, hw: tuple[int, int], model: str) -> None:
    """:class:`ArgumentError` when *hw* (height, width in pixels) has a side under MIN_SIDE."""
    if min(hw) < MIN_SIDE:
        raise ArgumentError(f"{what} {hw[0]}x{hw[1]} is too small: {model} needs at least {MIN_SIDE} pixels a side")


# Warnings the export raises by design, and only these, are silenced (anything else still shows):
EXPECTED_EXPORT_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    # shapes are read as Python ints on purpose: the graph is static for one frame size
    (torch.jit.TracerWarning, ""),
    # the TorchScript exporter is chosen on purpose (torchvision's batched NMS defeats the other)
    (DeprecationWarning, r"You are using the legacy TorchScript-based ONNX export"),
    (DeprecationWarning, r"The feature will be removed\. Please remove usage of this function"),
    (FutureWarning, r"`torch\.jit\.script` is deprecated"),
    # torchvision internals and exporter notes about folding that onnx_cleanup.tidy does anyway
    (UserWarning, r"To copy construct from a tensor, it is recommended"),
    (UserWarning, r"Constant folding - Only steps=1 can be constant folded"),
)


def trace_to_onnx(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    input_names: Sequence[str],
    output_names: Sequence[str],
    opset: int = DEFAULT_OPSET,
) -> onnx.ModelProto:
    """Export *module* in eval mode with static shapes (those of *example*).

    Uses the TorchScript exporter: it handles torchvision's detection ops, which the
    torch.export-based exporter cannot trace (data-dependent guards in batched NMS).
    """
    buf = io.BytesIO()
    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        for category, message in EXPECTED_EXPORT_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        try:
            torch.onnx.export(
                module,
                example,
                buf,  # type: ignore[arg-type]  # file objects are accepted, the stub says paths
                input_names=list(input_names),
                output_names=list(output_names),
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        except Exception as exc:  # the exporter raises many untyped errors
            raise ConversionError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
    return onnx.load_from_string(buf.getvalue())


def write_onnx(model: onnx.ModelProto, metadata: ModelMetadata, path: str | os.PathLike[str]) -> Path:
    """Attach *metadata*, check the graph, and write *path* atomically. Returns the path."""
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = metadata.to_json()
    model.producer_name = "edgeseg"
    model.producer_version = metadata.edgeseg_version
    onnx.checker.check_model(model)
    with atomic_output(path) as tmp:
        onnx.save(model, str(tmp))
    return Path(path)

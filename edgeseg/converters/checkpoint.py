"""Reading the weight files users actually have.

Accepted: a plain ``state_dict``; one wrapped as ``{"state_dict": ...}`` (or ``model_state_dict``,
``model``); keys prefixed ``module.`` (DataParallel) or ``model.`` (the official HRNet training
wrapper, which also saves ``loss.*`` tensors that are dropped here). Files are read with
``torch.load(weights_only=True)``: a file that needs full pickle loading is refused unless the
caller trusts it (``allow_pickle=True``, CLI ``--trust-checkpoint``).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from edgeseg.errors import CheckpointError, CheckpointMismatchError

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
STRIPPED_PREFIXES = ("module.", "model.")
DROPPED_PREFIXES = ("loss.",)
TRUST_HINT = "if you trust the file, pass --trust-checkpoint (Python: allow_pickle=True)"

StateDict = dict[str, Tensor]
Layout = Mapping[str, tuple[int, ...]]


def weights_file(path: str | os.PathLike[str]) -> Path:
    """*path* if it is a file; :class:`CheckpointError` saying what it is otherwise."""
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"{p}: is a folder, not a weights file; give the checkpoint file in it")
    if not p.is_file():
        raise CheckpointError(f"{p}: no such weights file")
    return p


def read_state_dict(path: str | os.PathLike[str], allow_pickle: bool = False) -> StateDict:
    """Load *path* and return a flat ``{name: tensor}`` with wrappers and prefixes removed."""
    p = weights_file(path)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights_only" in text or "Weights only load failed" in text:
            raise CheckpointError(
                f"{p.name}: refused: it needs full pickle loading, which can run arbitrary code, and "
                f"torch.load(weights_only=True) rejects it; {TRUST_HINT}"
            ) from exc
        raise CheckpointError(f"{p.name}: not a PyTorch checkpoint ({_first_line(text)})") from exc
    except Exception as exc:  # torch.load fails on foreign bytes with any exception type
        raise CheckpointError(f"{p.name}: not a PyTorch checkpoint ({_first_line(str(exc))})") from exc
    return normalise_state_dict(obj, p.name)


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else "unreadable"


def normalise_state_dict(obj: Any, name: str = "checkpoint") -> StateDict:
    """Unwrap and strip prefixes; raise :class:`CheckpointError` if *obj* holds no tensors."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    for key in WRAPPER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{name}: not a checkpoint: holds {type(obj).__name__}, expected a dict of tensors")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointError(f"{name}: not a checkpoint: the dict holds no tensors")
    tensors = {k: v for k, v in tensors.items() if not k.startswith(DROPPED_PREFIXES)}
    for prefix in STRIPPED_PREFIXES:
        if tensors and all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors


def layout_of(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Parameter/buffer names and shapes of *model* (what a checkpoint must match)."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def fill_missing_counters(sd: StateDict, layout: Layout) -> StateDict:
    """BatchNorm's ``num_batches_tracked`` does not affect inference: add zeros where the model
    expects one and the checkpoint predates it, and drop the ones the model has no slot for
    (frozen BatchNorm, as torchvision's detection backbones use, keeps no counter)."""
    out = {k: v for k, v in sd.items() if k in layout or not k.endswith("num_batches_tracked")}
    for k in layout:
        if k.endswith("num_batches_tracked") and k not in out:
            out[k] = torch.zeros((), dtype=torch.long)
    return out


def mismatches(sd: StateDict, layout: Layout) -> tuple[list[str], list[str], list[str]]:
    """(missing keys, unexpected keys, shape mismatches as text), each in model order."""
    missing = [k for k in layout if k not in sd]
    unexpected = [k for k in sd if k not in layout]
    shapes = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {layout[k]}"
        for k in layout
        if k in sd and tuple(sd[k].shape) != layout[k]
    ]
    return missing, unexpected, shapes


def fitting_layout(sd: StateDict, builders: Mapping[str, Callable[[int], nn.Module]],
                   class_key: str) -> tuple[str, int] | None:
    """(name, class count) of the first of *builders* (name -> model for a class count) whose
    layout *sd* fits exactly, the class count read from *class_key*; None if none fits. Models are
    built on the meta device: no memory, no weights."""
    if class_key not in sd:
        return None
    n = int(sd[class_key].shape[0])
    for name, build in builders.items():
        with torch.device("meta"):
            layout = layout_of(build(n))
        filled = fill_missing_counters(sd, layout)
        if filled.keys() == layout.keys() and all(tuple(filled[k].shape) == layout[k] for k in layout):
            return name, n
    return None


def fitting_arch(sd: StateDict, builders: Mapping[str, Callable[[int], nn.Module]], class_key: str) -> str | None:
    """:func:`fitting_layout` as CLI flags (``--arch NAME --num-classes N``); None if none fits."""
    fit = fitting_layout(sd, builders, class_key)
    return f"--arch {fit[0]} --num-classes {fit[1]}" if fit else None


def load_strict(
    model: nn.Module,
    sd: StateDict,
    description: str,
    builders: Mapping[str, Callable[[int], nn.Module]] | None = None,
    class_key: str = "",
) -> None:
    """Load *sd* into *model* with every key and shape matching.

    On a mismatch raise :class:`CheckpointMismatchError` naming the first offending keys and
    shapes, plus the arch of *builders* the checkpoint does fit (:func:`fitting_arch`).
    """
    layout = layout_of(model)
    filled = fill_missing_counters(sd, layout)
    missing, unexpected, shapes = mismatches(filled, layout)
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es), first: {'; '.join(shapes[:3])}")
        if missing:
            parts.append(f"{len(missing)} missing key(s), first: {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), first: {', '.join(unexpected[:3])}")
        hint = fitting_arch(sd, builders, class_key) if builders else None
        fix = f"; it fits {hint}" if hint else ""
        raise CheckpointMismatchError(f"checkpoint does not fit {description}: {' | '.join(parts)}{fix}")
    model.load_state_dict(filled, strict=True)

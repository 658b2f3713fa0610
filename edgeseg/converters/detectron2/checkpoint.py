"""detectron2 checkpoints: ``model_final.pth`` (``{"model": state_dict}``, read with
``torch.load(weights_only=True)``) and model-zoo ``.pkl`` files (a pickled dict of numpy
arrays, read by an unpickler that builds numpy arrays and plain containers only). Anything else
needs ``--trust-checkpoint``.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeseg.converters.checkpoint import TRUST_HINT, StateDict, read_state_dict, weights_file
from edgeseg.errors import CheckpointError

#: what a model-zoo .pkl may reference: numpy's array reconstruction, nothing that runs code
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
    # Python 3 protocol-2 pickles wrap bytes as _codecs.encode(str, "latin1"): a pure conversion
    ("_codecs", "encode"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not a numpy array or a plain container")


def load_arrays_pickle(path: Path, trust: bool, what: str = "a detectron2 .pkl checkpoint") -> Any:
    """The object pickled in *path*, built from numpy arrays and plain containers only (Python 2
    strings read as latin1, as Detectron's and detectron2's loaders do); anything else needs
    *trust* (full unpickling, which runs code)."""
    data = path.read_bytes()
    try:
        return (pickle.loads(data, encoding="latin1") if trust
                else _ArraysOnly(io.BytesIO(data), encoding="latin1").load())
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path.name}: refused: it holds more than numpy arrays ({exc}); {TRUST_HINT}") from exc
    except Exception as exc:  # a truncated or foreign file
        raise CheckpointError(f"{path.name}: not {what} ({exc})") from exc


def _from_pkl(path: Path, trust: bool) -> StateDict:
    obj = load_arrays_pickle(path, trust)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path.name}: not a detectron2 checkpoint: expected a dict of arrays")
    out: StateDict = {}
    for key, value in obj.items():
        if isinstance(value, np.ndarray):
            out[str(key)] = torch.from_numpy(np.ascontiguousarray(value))
    if not out:
        raise CheckpointError(f"{path.name}: not a detectron2 checkpoint: the dict holds no arrays")
    return out


def read_detectron2_weights(path: str | os.PathLike[str], trust: bool = False) -> StateDict:
    """detectron2's tensors by detectron2's names, float32."""
    p = weights_file(path)
    sd = _from_pkl(p, trust) if p.suffix.lower() == ".pkl" else read_state_dict(p, allow_pickle=trust)
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}

"""maskrcnn-benchmark and Detectron checkpoints, as maskrcnn-benchmark state dicts.

- maskrcnn-benchmark ``model_final.pth``: ``{"model": state_dict}`` (``Checkpointer.save``), an
  optional ``module.`` prefix, float32 or float16 tensors; read with ``torch.load(weights_only=True)``.
- Detectron ``model_final.pkl``: a pickled dict with ``blobs`` (Caffe2 blob name -> numpy array;
  sometimes a ``cfg`` beside it, not read: the config is ``--config``), read by the restricted
  unpickler of ``edgeseg.converters.detectron2.checkpoint`` (numpy arrays and plain containers
  only). Blob names are renamed as maskrcnn-benchmark's ``load_c2_format`` does: ``_w``/``_b``
  weights and biases, ``<conv>_bn_s``/``_bn_b`` the AffineChannel after a conv, which becomes a
  FrozenBatchNorm with that weight and bias, running mean 0 and variance 1 (exactly the same
  layer, as it has no epsilon); ``*_momentum`` (solver state) blobs are dropped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from edgeseg.converters.checkpoint import StateDict, read_state_dict
from edgeseg.errors import CheckpointError

_BRANCH = {"2a": "1", "2b": "2", "2c": "3"}


def _blob_name(blob: str) -> tuple[str, bool] | None:
    """(maskrcnn-benchmark parameter name, whether it is a norm's scale/shift) of Detectron blob
    *blob*, or None for a name Detectron uses that edgeseg does not know."""
    if m := re.fullmatch(r"(.+)_(w|b)", blob):
        stem, kind = m[1], {"w": "weight", "b": "bias"}[m[2]]
    elif m := re.fullmatch(r"(.+)_bn_s", blob):
        stem, kind = m[1] + "_bn", "weight"
    else:
        return None
    norm = stem.endswith("_bn")
    base = stem[: -len("_bn")] if norm else stem
    body = "backbone.body."
    if base in ("conv1", "res_conv1"):
        return (body + ("stem.bn1." if norm else "stem.conv1.") + kind), norm
    if m := re.fullmatch(r"res(\d)_(\d+)_branch(2[abc]|1)", base):
        layer = f"{body}layer{int(m[1]) - 1}.{m[2]}."
        if m[3] == "1":
            return layer + ("downsample.1." if norm else "downsample.0.") + kind, norm
        i = _BRANCH[m[3]]
        return layer + (f"bn{i}." if norm else f"conv{i}.") + kind, norm
    if m := re.fullmatch(r"fpn_inner_res(\d)_\d+_sum(_lateral)?", base):
        return f"backbone.fpn.fpn_inner{int(m[1]) - 1}.{kind}", False
    if m := re.fullmatch(r"fpn_res(\d)_\d+_sum", base):
        return f"backbone.fpn.fpn_layer{int(m[1]) - 1}.{kind}", False
    heads = {
        "conv_rpn_fpn2": "rpn.head.conv", "rpn_cls_logits_fpn2": "rpn.head.cls_logits",
        "rpn_bbox_pred_fpn2": "rpn.head.bbox_pred",
        "fc6": "roi_heads.box.feature_extractor.fc6", "fc7": "roi_heads.box.feature_extractor.fc7",
        "cls_score": "roi_heads.box.predictor.cls_score", "bbox_pred": "roi_heads.box.predictor.bbox_pred",
        "conv5_mask": "roi_heads.mask.predictor.conv5_mask",
        "mask_fcn_logits": "roi_heads.mask.predictor.mask_fcn_logits",
    }
    if base in heads and not norm:
        return f"{heads[base]}.{kind}", False
    if (m := re.fullmatch(r"_\[mask\]_fcn(\d+)", base)) and not norm:
        return f"roi_heads.mask.feature_extractor.mask_fcn{m[1]}.{kind}", False
    return None


def detectron_blobs_to_state_dict(blobs: dict[str, np.ndarray], source: str) -> StateDict:
    """Detectron blobs -> maskrcnn-benchmark names (see the module docstring); a blob edgeseg does
    not know is refused by name, so nothing is silently left out."""
    out: StateDict = {}
    for blob, array in blobs.items():
        if blob.endswith("_momentum"):
            continue  # SGD momentum, training state
        named = _blob_name(blob)
        if named is None:
            raise CheckpointError(f"{source}: blob {blob!r} {tuple(array.shape)} is not part of a ResNet-FPN Mask "
                                  "R-CNN that edgeseg knows (C4 heads, GroupNorm, keypoints, RetinaNet and cascades "
                                  "are not supported)")
        name, norm = named
        out[name] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        if norm and name.endswith(".weight"):
            prefix = name[: -len("weight")]
            channels = int(array.shape[0])
            out[prefix + "running_mean"] = torch.zeros(channels)
            out[prefix + "running_var"] = torch.ones(channels)
    return out


def read_detectron_blobs(path: str | os.PathLike[str], trust: bool = False) -> dict[str, np.ndarray]:
    """The ``blobs`` of a Detectron ``.pkl`` (numpy arrays by Caffe2 blob name)."""
    from edgeseg.converters.detectron2.checkpoint import load_arrays_pickle

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such weights file")
    obj = load_arrays_pickle(p, trust, "a Detectron .pkl checkpoint")
    blobs = obj.get("blobs") if isinstance(obj, dict) else None
    if not isinstance(blobs, dict):
        raise CheckpointError(f"{p.name}: not a Detectron checkpoint: expected a dict with 'blobs' (Caffe2 blob name "
                              "-> array)")
    arrays = {str(k): v for k, v in blobs.items() if isinstance(v, np.ndarray)}
    if not arrays:
        raise CheckpointError(f"{p.name}: not a Detectron checkpoint: its 'blobs' hold no arrays")
    return arrays


def read_weights(path: str | os.PathLike[str], trust: bool = False) -> StateDict:
    """maskrcnn-benchmark's tensors by maskrcnn-benchmark's names: a ``.pkl`` is read as Detectron
    blobs, anything else as a maskrcnn-benchmark checkpoint (``{"model": state_dict}``)."""
    p = Path(path)
    if p.suffix.lower() == ".pkl":
        return detectron_blobs_to_state_dict(read_detectron_blobs(p, trust), p.name)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such weights file")
    return read_state_dict(p, allow_pickle=trust)

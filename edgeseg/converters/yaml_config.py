"""What the YAML config readers of the FAIR Mask R-CNN families share (detectron2,
maskrcnn-benchmark): flattening to dotted keys, the used / ignored-with-a-reason / unknown
split, and the refusal of unsupported values by name. Each family keeps its own defaults and
lists (one fact, one place); this module only applies them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from edgeseg.errors import ArgumentError


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"MODEL": {"RPN": {"NMS_THRESH": 0.7}}}`` -> ``{"MODEL.RPN.NMS_THRESH": 0.7}``."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def is_ignored(key: str, ignored: Mapping[str, str]) -> bool:
    """Whether *key* is in *ignored* (an entry ending in "." covers a whole section)."""
    return key in ignored or any(k.endswith(".") and key.startswith(k) for k in ignored)


def refuse_unknown(flat: Mapping[str, Any], defaults: Mapping[str, Any], ignored: Mapping[str, str], source: str,
                   project: str) -> None:
    """:class:`ArgumentError` naming the first key that is neither used nor ignored."""
    unknown = sorted(k for k in flat if k not in defaults and not is_ignored(k, ignored))
    if unknown:
        raise ArgumentError(f"{source}: unknown setting {unknown[0]}" + (
            f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "") +
            f": edgeseg does not know what it does, so it cannot promise {project}'s results; remove it if it "
            "does not apply to inference")


def refuse_unsupported(values: Mapping[str, Any], supported: Iterable[tuple[str, tuple[Any, ...], str]],
                       source: str) -> None:
    """:class:`ArgumentError` naming the first (key, allowed values, why) whose value is not allowed."""
    for key, allowed, why in supported:
        if values[key] not in allowed:
            raise ArgumentError(f"{source}: {key} = {values[key]!r} is not supported: {why}")

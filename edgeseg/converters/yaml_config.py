"""Reading a training framework's YAML config without the framework: one mechanism for the
detectron2, maskrcnn-benchmark and Detectron configs and the official HRNet experiment files.

A config is a nested YAML mapping merged over the framework's defaults. Readers flatten it to
dotted keys (``MODEL.OCR.MID_CHANNELS``) and sort each key into one of three kinds: used (it has a
default in the reader's table), ignored for a stated reason (training only, a part of the
framework the model does not use), or unknown, which is refused by name: edgeseg cannot promise
the framework's results for a setting it does not know. Values edgeseg cannot reproduce are
refused by name too. Each framework keeps its own defaults and lists (one fact, one place); this
module only applies them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from edgeseg.errors import ArgumentError


def yaml_module(kind: str) -> Any:
    """PyYAML, or :class:`ArgumentError` saying how to install it (*kind*: whose configs)."""
    try:
        import yaml
    except ImportError as exc:
        raise ArgumentError(f"reading {kind} configs needs PyYAML: pip install 'edgeseg[convert]'") from exc
    return yaml


def load_mapping(path: Path, kind: str, example: str) -> dict[str, Any]:
    """The YAML mapping in *path* (safe loader: no tags, nothing runs); :class:`ArgumentError` for a
    missing, unreadable or malformed file, or one that is not a mapping (*example* shows one)."""
    yaml = yaml_module(kind)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ArgumentError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArgumentError(f"{path}: cannot read it ({exc})") from exc
    except yaml.YAMLError as exc:
        raise ArgumentError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise ArgumentError(f"{path}: a {kind} config is a YAML mapping ({example})")
    return data


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """*over* merged into *base* section by section (*over*'s values win)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"MODEL": {"RPN": {"NMS_THRESH": 0.7}}}`` -> ``{"MODEL.RPN.NMS_THRESH": 0.7}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def listed(key: str, table: Mapping[str, str]) -> bool:
    """Whether *key* is in *table*, by name or under a section of it (entries ending in ".")."""
    return key in table or any(k.endswith(".") and key.startswith(k) for k in table)


def refuse_unknown(flat: Mapping[str, Any], known: Collection[str], ignored: Mapping[str, str], source: str,
                   project: str) -> None:
    """:class:`ArgumentError` naming the first (sorted) key of *flat* that is neither *known* (used)
    nor *ignored* (a reason for each), if any."""
    unknown = sorted(k for k in flat if k not in known and not listed(k, ignored))
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


def refuse_mistyped(values: Mapping[str, Any], defaults: Mapping[str, Any], source: str) -> None:
    """:class:`ArgumentError` naming the first value whose type is not its default's, as yacs (and
    Detectron's config) refuse it: an int stands for a float, a list for a tuple and back."""
    for key, value in values.items():
        default = defaults[key]
        numeric = isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)
        sequence = isinstance(default, (list, tuple)) and isinstance(value, (list, tuple))
        if not (numeric or sequence or type(value) is type(default)):
            raise ArgumentError(f"{source}: {key} = {value!r}: expected a {type(default).__name__} like the default "
                                f"{default!r}")

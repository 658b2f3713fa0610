"""Class names and display colours.

A class set is data: names and RGB colours in class-id order. Named sets cover the data sets
users train on; any other list comes from a file. Colours are RGB, 0..255.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgeseg.errors import ArgumentError

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class ClassSet:
    names: tuple[str, ...]
    palette: tuple[RGB, ...]


# Cityscapes train ids 0..18, in the order and colours of the official cityscapesScripts labels.
CITYSCAPES = ClassSet(
    names=(
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
        "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
        "motorcycle", "bicycle",
    ),
    palette=(
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
        (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
        (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
        (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ),
)

NAMED_SETS: dict[str, ClassSet] = {"cityscapes": CITYSCAPES}


def generated_palette(n: int) -> tuple[RGB, ...]:
    """*n* distinct colours: class ids' bits spread over the high bits of R, G and B (the
    PASCAL VOC scheme), so neighbouring ids get very different colours."""
    colours = []
    for cid in range(n):
        r = g = b = 0
        c = cid
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colours.append((r, g, b))
    return tuple(colours)


def resolve_classes(spec: str | None, num_classes: int | None) -> ClassSet:
    """Class names and palette from a set name, a file, or nothing.

    *spec* is a named set (``cityscapes``), a text file with one name per line, a JSON file
    holding a list of names, or ``None`` (names ``class_0`` ...). *num_classes*, when given,
    must agree with the set's length.
    """
    if spec is None:
        if num_classes is None:
            raise ArgumentError("number of classes unknown: pass --num-classes N or --classes NAME|FILE")
        names = tuple(f"class_{i}" for i in range(num_classes))
        return ClassSet(names, generated_palette(num_classes))
    if spec.lower() in NAMED_SETS:
        cs = NAMED_SETS[spec.lower()]
    else:
        cs = ClassSet(read_class_file(Path(spec)), ())
        cs = ClassSet(cs.names, generated_palette(len(cs.names)))
    if num_classes is not None and num_classes != len(cs.names):
        raise ArgumentError(
            f"--classes {spec} lists {len(cs.names)} classes but --num-classes is {num_classes}; "
            "make them agree"
        )
    return cs


def read_class_file(path: Path) -> tuple[str, ...]:
    """Names from a JSON list or a text file with one name per line (blank lines ignored)."""
    known = ", ".join(sorted(NAMED_SETS))
    if not path.is_file():
        raise ArgumentError(f"--classes {path}: no such file and not a known set ({known})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ArgumentError(f"--classes {path}: not UTF-8 text (byte {exc.start}); give a .txt with one name per "
                            "line or a .json list") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArgumentError(f"--classes {path}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise ArgumentError(f"--classes {path}: the JSON must be a list of class-name strings")
        names = tuple(data)
    else:
        names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise ArgumentError(f"--classes {path}: the file lists no class names")
    return names

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
    #: the data set's own label id of each class id (what its label files hold), where it differs
    label_ids: tuple[int, ...] = ()


# Cityscapes train ids 0..18, in the order and colours of the official cityscapesScripts labels;
# label ids as the official HRNet code maps them back (cityscapes.py:50-60, convert_label inverse).
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
    label_ids=(7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33),
)

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


def _official(names: str, label_ids: tuple[int, ...] | range) -> ClassSet:
    """A class set of the official HRNet-Semantic-Segmentation data sets: names ("|"-separated,
    class-id order), their label ids, colours of the PASCAL VOC scheme at each label id (the
    palette the official ``save_pred`` writes label PNGs with, ``cityscapes.py:197-204``)."""
    split = tuple(names.split("|"))
    ids = tuple(label_ids)
    assert len(split) == len(ids), (len(split), len(ids))
    colours = generated_palette(max(ids) + 1)
    return ClassSet(split, tuple(colours[i] for i in ids), ids)


# LIP (lib/datasets/lip.py): 20 classes, label ids = class ids.
LIP = _official(
    "background|hat|hair|glove|sunglasses|upper clothes|dress|coat|socks|pants|jumpsuits|scarf|skirt|face|"
    "left arm|right arm|left leg|right leg|left shoe|right shoe", range(20))

# PASCAL-Context, 59 classes (lib/datasets/pascal_ctx.py:83): reduce_zero_label, so class id c is
# label id c + 1 of the 60-label maps (0, background, is ignored).
PASCAL_CONTEXT = _official(
    "aeroplane|bag|bed|bedclothes|bench|bicycle|bird|boat|book|bottle|building|bus|cabinet|car|cat|ceiling|"
    "chair|cloth|computer|cow|cup|curtain|dog|door|fence|floor|flower|food|grass|ground|horse|keyboard|light|"
    "motorbike|mountain|mouse|person|plate|platform|pottedplant|road|rock|sheep|shelves|sidewalk|sign|sky|snow|"
    "sofa|table|track|train|tree|truck|tvmonitor|wall|water|window|wood", range(1, 60))

# ADE20K SceneParsing, 150 classes (lib/datasets/ade20k.py): reduce_zero_label, class id c is label
# id c + 1 (0, "other", is ignored). Names: the first of each objectInfo150 entry.
ADE20K = _official(
    "wall|building|sky|floor|tree|ceiling|road|bed|windowpane|grass|cabinet|sidewalk|person|earth|door|table|"
    "mountain|plant|curtain|chair|car|water|painting|sofa|shelf|house|sea|mirror|rug|field|armchair|seat|fence|"
    "desk|rock|wardrobe|lamp|bathtub|railing|cushion|base|box|column|signboard|chest of drawers|counter|sand|sink|"
    "skyscraper|fireplace|refrigerator|grandstand|path|stairs|runway|case|pool table|pillow|screen door|stairway|"
    "river|bridge|bookcase|blind|coffee table|toilet|flower|book|hill|bench|countertop|stove|palm|kitchen island|"
    "computer|swivel chair|boat|bar|arcade machine|hovel|bus|towel|light|truck|tower|chandelier|awning|"
    "streetlight|booth|television receiver|airplane|dirt track|apparel|pole|land|bannister|escalator|ottoman|"
    "bottle|buffet|poster|stage|van|ship|fountain|conveyer belt|canopy|washer|plaything|swimming pool|stool|"
    "barrel|basket|waterfall|tent|bag|minibike|cradle|oven|ball|food|step|tank|trade name|microwave|pot|animal|"
    "bicycle|lake|dishwasher|screen|blanket|sculpture|hood|sconce|vase|traffic light|tray|ashcan|fan|pier|"
    "crt screen|plate|monitor|bulletin board|shower|radiator|glass|clock|flag", range(1, 151))

# COCO-Stuff, 171 classes (lib/datasets/cocostuff.py:51-61): the official loader encodes a label
# PNG through its 172-entry mapping, then reduce_zero_label subtracts 1, so class id c is label id
# mapping[c + 1] (80 things, then 91 stuff); mapping[0], label 0 "unlabeled", becomes the ignored
# 255 and no class reaches it.
_COCOSTUFF_IDS = (*range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70, *range(72, 83),
                  *range(84, 91), *range(92, 183))
COCOSTUFF = _official(
    "person|bicycle|car|motorcycle|airplane|bus|train|truck|boat|traffic light|fire hydrant|stop sign|"
    "parking meter|bench|bird|cat|dog|horse|sheep|cow|elephant|bear|zebra|giraffe|backpack|umbrella|handbag|tie|"
    "suitcase|frisbee|skis|snowboard|sports ball|kite|baseball bat|baseball glove|skateboard|surfboard|"
    "tennis racket|bottle|wine glass|cup|fork|knife|spoon|bowl|banana|apple|sandwich|orange|broccoli|carrot|"
    "hot dog|pizza|donut|cake|chair|couch|potted plant|bed|dining table|toilet|tv|laptop|mouse|remote|keyboard|"
    "cell phone|microwave|oven|toaster|sink|refrigerator|book|clock|vase|scissors|teddy bear|hair drier|"
    "toothbrush|banner|blanket|branch|bridge|building-other|bush|cabinet|cage|cardboard|carpet|ceiling-other|"
    "ceiling-tile|cloth|clothes|clouds|counter|cupboard|curtain|desk-stuff|dirt|door-stuff|fence|floor-marble|"
    "floor-other|floor-stone|floor-tile|floor-wood|flower|fog|food-other|fruit|furniture-other|grass|gravel|"
    "ground-other|hill|house|leaves|light|mat|metal|mirror-stuff|moss|mountain|mud|napkin|net|paper|pavement|"
    "pillow|plant-other|plastic|platform|playingfield|railing|railroad|river|road|rock|roof|rug|salad|sand|sea|"
    "shelf|sky-other|skyscraper|snow|solid-other|stairs|stone|straw|structural-other|table|tent|textile-other|"
    "towel|tree|vegetable|wall-brick|wall-concrete|wall-other|wall-panel|wall-stone|wall-tile|wall-wood|"
    "water-other|waterdrops|window-blind|window-other|wood", _COCOSTUFF_IDS)

NAMED_SETS: dict[str, ClassSet] = {"cityscapes": CITYSCAPES, "lip": LIP, "pascal_context": PASCAL_CONTEXT,
                                   "cocostuff": COCOSTUFF, "ade20k": ADE20K}

#: the official HRNet configs' DATASET.DATASET -> the named set
DATASET_CLASSES = {"cityscapes": "cityscapes", "lip": "lip", "pascal_ctx": "pascal_context",
                   "cocostuff": "cocostuff", "ade20k": "ade20k"}


def resolve_classes(spec: str | None, num_classes: int | None) -> ClassSet:
    """Class names and palette from a set name, a file, or nothing.

    *spec* is a named set (:data:`NAMED_SETS`), a text file with one name per line, a JSON file
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

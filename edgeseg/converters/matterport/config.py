"""matterport's ``Config`` read without running the user's code.

A matterport user holds a training script with a ``Config`` subclass (``class MyConfig(Config):
NUM_CLASSES = 1 + 3 ...``). :func:`read_config` reads that file with the standard library's
``ast`` and never imports or executes it: the literal class attributes of the chosen class (and
of the classes it inherits from in the same file) over matterport's defaults (:data:`DEFAULTS`,
``mrcnn/config.py`` at master ``3deaec5``). A JSON or YAML file of the attributes works too.

Every attribute is used (:data:`DEFAULTS`), derived as ``Config.__init__`` and
``compute_backbone_shapes`` derive it (:data:`DERIVED`), ignored with a stated reason
(:data:`IGNORED`, and any attribute matterport's model never reads), or refused with a typed
error that names it (a value that is not a literal, a resize mode edgeseg does not reproduce...).
"""

from __future__ import annotations

import ast
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.errors import ArgumentError

#: matterport's ``Config`` class attributes that inference reads, with their defaults
DEFAULTS: dict[str, Any] = {
    "BACKBONE": "resnet101",
    "COMPUTE_BACKBONE_SHAPE": None,
    "BACKBONE_STRIDES": [4, 8, 16, 32, 64],
    "FPN_CLASSIF_FC_LAYERS_SIZE": 1024,
    "TOP_DOWN_PYRAMID_SIZE": 256,
    "NUM_CLASSES": 1,
    "RPN_ANCHOR_SCALES": [32, 64, 128, 256, 512],
    "RPN_ANCHOR_RATIOS": [0.5, 1, 2],
    "RPN_ANCHOR_STRIDE": 1,
    "RPN_NMS_THRESHOLD": 0.7,
    "PRE_NMS_LIMIT": 6000,
    "POST_NMS_ROIS_INFERENCE": 1000,
    "IMAGE_RESIZE_MODE": "square",
    "IMAGE_MIN_DIM": 800,
    "IMAGE_MAX_DIM": 1024,
    "IMAGE_MIN_SCALE": 0,
    "IMAGE_CHANNEL_COUNT": 3,
    "MEAN_PIXEL": [123.7, 116.8, 103.9],
    "POOL_SIZE": 7,
    "MASK_POOL_SIZE": 14,
    "MASK_SHAPE": [28, 28],
    "RPN_BBOX_STD_DEV": [0.1, 0.1, 0.2, 0.2],
    "BBOX_STD_DEV": [0.1, 0.1, 0.2, 0.2],
    "DETECTION_MAX_INSTANCES": 100,
    "DETECTION_MIN_CONFIDENCE": 0.7,
    "DETECTION_NMS_THRESHOLD": 0.3,
    "TRAIN_BN": False,
    # not read by inference itself, but BATCH_SIZE is derived from them
    "GPU_COUNT": 1,
    "IMAGES_PER_GPU": 2,
}

#: attributes ``Config.__init__`` (and ``compute_backbone_shapes``) computes; a value given for
#: one in a JSON/YAML must equal the computed one, a class attribute is overwritten as in matterport
DERIVED = ("BATCH_SIZE", "IMAGE_SHAPE", "IMAGE_META_SIZE", "BACKBONE_SHAPES")

#: matterport attributes inference does not read, with why
IGNORED: dict[str, str] = {
    "NAME": "a label for logs and checkpoints",
    "STEPS_PER_EPOCH": "training only",
    "VALIDATION_STEPS": "training only",
    "RPN_TRAIN_ANCHORS_PER_IMAGE": "training only",
    "POST_NMS_ROIS_TRAINING": "training only",
    "USE_MINI_MASK": "training only (ground-truth masks)",
    "MINI_MASK_SHAPE": "training only (ground-truth masks)",
    "TRAIN_ROIS_PER_IMAGE": "training only",
    "ROI_POSITIVE_RATIO": "training only",
    "MAX_GT_INSTANCES": "training only",
    "LEARNING_RATE": "training only",
    "LEARNING_MOMENTUM": "training only",
    "WEIGHT_DECAY": "training only",
    "LOSS_WEIGHTS": "training only",
    "USE_RPN_ROIS": "training only",
    "GRADIENT_CLIP_NORM": "training only",
    "save_best_only": "training only (checkpoint callback)",
}

#: resize modes of ``utils.resize_image`` edgeseg does not reproduce, with why
UNSUPPORTED_RESIZE = {
    "none": "frames of any size are not one static graph; use IMAGE_RESIZE_MODE = \"square\"",
    "pad64": "the padded size depends on each frame; use IMAGE_RESIZE_MODE = \"square\"",
    "crop": "a random crop, for training only; use IMAGE_RESIZE_MODE = \"square\" for inference",
}


@dataclass(frozen=True)
class MatterportConfig:
    """The inference settings of one matterport ``Config``, defaults applied and derived values
    computed. ``values`` maps every attribute name in :data:`DEFAULTS` to its value (lists, not
    numpy arrays); ``ignored`` maps each attribute that was given but is not used to why."""

    values: dict[str, Any]
    source: str
    ignored: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``IMAGE_SHAPE`` as ``Config.__init__`` sets it for "square": (D, D, channels) pixels."""
        d = int(self.values["IMAGE_MAX_DIM"])
        return (d, d, int(self.values["IMAGE_CHANNEL_COUNT"]))

    @property
    def batch_size(self) -> int:
        """``BATCH_SIZE = IMAGES_PER_GPU * GPU_COUNT``; ``detect()`` takes exactly that many images."""
        return int(self.values["IMAGES_PER_GPU"]) * int(self.values["GPU_COUNT"])

    @property
    def image_meta_size(self) -> int:
        """``IMAGE_META_SIZE = 12 + NUM_CLASSES`` (the row ``compose_image_meta`` builds)."""
        return 1 + 3 + 3 + 4 + 1 + int(self.values["NUM_CLASSES"])

    @property
    def backbone_shapes(self) -> list[tuple[int, int]]:
        """``compute_backbone_shapes``: (ceil(H / stride), ceil(W / stride)) per BACKBONE_STRIDES."""
        h, w, _ = self.image_shape
        return [(math.ceil(h / s), math.ceil(w / s)) for s in self.values["BACKBONE_STRIDES"]]

    def derived(self) -> dict[str, Any]:
        """The values matterport computes from the others, as lists."""
        return {"BATCH_SIZE": self.batch_size, "IMAGE_SHAPE": list(self.image_shape),
                "IMAGE_META_SIZE": self.image_meta_size,
                "BACKBONE_SHAPES": [list(s) for s in self.backbone_shapes]}


# ---------------------------------------------------------------------------------------------
# literals from the AST

class _NotLiteral(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b}


def _literal(node: ast.AST) -> Any:
    """The value of a literal expression: constants, lists, tuples, dicts, +/- signs, arithmetic
    between numbers (``NUM_CLASSES = 1 + 3`` is how matterport's samples count classes) and
    ``np.array(<literal>)`` / ``numpy.array(<literal>)`` (matterport's own MEAN_PIXEL), as a list.
    Raise :class:`_NotLiteral` naming the construct otherwise; nothing is ever evaluated."""
    if isinstance(node, ast.Constant) and not isinstance(node.value, bytes):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _NotLiteral("a ** unpacking in a dict")
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True) if k is not None}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _literal(node.operand)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _NotLiteral("a sign on a non-number")
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a, b = _literal(node.left), _literal(node.right)
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in (a, b)):
            raise _NotLiteral("arithmetic on non-numbers")
        if isinstance(node.op, (ast.Div, ast.FloorDiv)) and b == 0:
            raise _NotLiteral("a division by zero")
        return _BINOPS[type(node.op)](a, b)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "array"
            and isinstance(node.func.value, ast.Name) and node.func.value.id in ("np", "numpy")
            and len(node.args) == 1 and not node.keywords):
        return _literal(node.args[0])
    raise _NotLiteral(_describe(node))


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        return f"a call of {ast.unparse(node.func)}()"
    if isinstance(node, ast.Name):
        return f"the name {node.id}"
    return f"the expression {ast.unparse(node)}"


def _base_names(cls: ast.ClassDef) -> list[str]:
    out = []
    for b in cls.bases:
        if isinstance(b, ast.Name):
            out.append(b.id)
        elif isinstance(b, ast.Attribute):
            out.append(b.attr)
    return out


def _config_classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    """Classes of the file that derive from ``Config`` (directly, ``mrcnn.config.Config``, or
    through other classes of the same file), by name; classes nested in ``if`` blocks count."""
    classes = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}

    def is_config(name: str, seen: frozenset[str]) -> bool:
        cls = classes.get(name)
        if cls is None or name in seen:
            return False
        return any((b == "Config" and b not in classes) or is_config(b, seen | {name}) for b in _base_names(cls))

    return {name: cls for name, cls in classes.items() if is_config(name, frozenset())}


def _class_attributes(path: Path, classes: Mapping[str, ast.ClassDef], name: str) -> dict[str, Any]:
    """The literal class attributes of *name*, over those of its bases in the same file (the
    first base wins, as Python's MRO gives for single and simple multiple inheritance)."""
    cls = classes[name]
    values: dict[str, Any] = {}
    for base in reversed(_base_names(cls)):
        if base in classes:
            values.update(_class_attributes(path, classes, base))
    for stmt in cls.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == "__init__":
            raise ArgumentError(
                f"{path.name}: class {name} defines __init__, which sets values when it runs; edgeseg reads the "
                "Config without running it: move those values to class attributes, or pass a JSON/YAML of them")
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        for t in targets:
            if not isinstance(t, ast.Name):
                raise ArgumentError(f"{path.name}:{stmt.lineno}: class {name} assigns to {ast.unparse(t)}, "
                                    "which is not a plain attribute name")
            assert value is not None
            try:
                values[t.id] = _literal(value)
            except _NotLiteral as e:
                raise ArgumentError(
                    f"{path.name}:{stmt.lineno}: {name}.{t.id} is {e.what}, not a literal; edgeseg does not run "
                    f"the Config: write the value itself (e.g. {t.id} = 3), or pass a JSON/YAML of the "
                    "attributes") from None
    return values


def _refuse_foreign_bases(path: Path, tree: ast.Module, classes: Mapping[str, ast.ClassDef],
                          class_name: str | None) -> None:
    """A Config built on a class from another file (``class InferenceConfig(CocoConfig)`` with
    ``CocoConfig`` imported) cannot be read from this file alone: refuse it by name rather than
    miss the base's attributes."""
    if class_name is None and classes:
        return  # the file has its own Config subclasses: other classes are not candidates
    defined = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    for name in [class_name] if class_name is not None else list(defined):
        cls = defined.get(name)
        if cls is None:
            continue
        for base in _base_names(cls):
            if base != "Config" and base not in defined and base.endswith("Config"):
                raise ArgumentError(
                    f"{path.name}: class {name} derives from {base}, which this file imports rather than defines; "
                    f"edgeseg reads one file without running it: pass the file that defines {base} (as "
                    f"file.py:{base}) with {name}'s values added there, or a JSON/YAML of all the attributes")


def read_py_config(path: Path, class_name: str | None) -> tuple[dict[str, Any], str]:
    """The literal attributes of the ``Config`` subclass *class_name* (or the only one) in the
    Python file *path*, read with ``ast`` and never executed; returns them and the class name."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as e:
        raise ArgumentError(f"{path.name}:{e.lineno}: not valid Python ({e.msg}); pass the training script "
                            "that defines the Config subclass, or a JSON/YAML of its attributes") from None
    classes = _config_classes(tree)
    _refuse_foreign_bases(path, tree, classes, class_name)
    if class_name is None:
        if len(classes) != 1:
            found = ", ".join(sorted(classes)) or "none"
            raise ArgumentError(f"{path.name}: expected exactly one subclass of matterport's Config, found {found}; "
                                f"name the one to use as {path.name}:ClassName")
        class_name = next(iter(classes))
    elif class_name not in classes:
        found = ", ".join(sorted(classes)) or "none"
        raise ArgumentError(f"{path.name}: no subclass of matterport's Config named {class_name} "
                            f"(subclasses found: {found})")
    return _class_attributes(path, classes, class_name), class_name


def read_mapping_config(path: Path) -> dict[str, Any]:
    """The attributes in a JSON or YAML file: a flat mapping of attribute names to values, or
    the shared oracle's layout (``all_values_as_instance_has_them``, what ``Config.display()``
    prints)."""
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # json and yaml raise different types; both mean "unreadable"
        raise ArgumentError(f"{path.name}: not a readable {path.suffix.lstrip('.').upper()} file ({e}); "
                            "pass a mapping of Config attribute names to values") from None
    if isinstance(data, dict) and isinstance(data.get("all_values_as_instance_has_them"), dict):
        data = data["all_values_as_instance_has_them"]
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ArgumentError(f"{path.name}: expected a mapping of Config attribute names to values")
    return dict(data)


def read_config(spec: str | os.PathLike[str]) -> MatterportConfig:
    """Read a matterport Config: ``file.py``, ``file.py:ClassName``, or a ``.json``/``.yaml``/
    ``.yml`` of the attributes. Raise :class:`ArgumentError` naming the attribute for anything
    edgeseg cannot read or reproduce."""
    text = os.fspath(spec)
    class_name: str | None = None
    if ".py:" in text:
        text, class_name = text.rsplit(":", 1)
    path = Path(text)
    if not path.is_file():
        raise ArgumentError(f"config {path} not found; pass the training script that defines the Config "
                            "subclass (file.py or file.py:ClassName) or a JSON/YAML of its attributes")
    if path.suffix.lower() == ".py":
        given, class_name = read_py_config(path, class_name)
        source = f"{path.name}:{class_name}"
        from_py = True
    elif path.suffix.lower() in (".json", ".yaml", ".yml"):
        given, source, from_py = read_mapping_config(path), path.name, False
    else:
        raise ArgumentError(f"config {path.name}: expected a .py training script or a .json/.yaml of the attributes")
    return resolve(given, source, from_py=from_py)


def resolve(given: Mapping[str, Any], source: str, from_py: bool = False) -> MatterportConfig:
    """Apply *given* over :data:`DEFAULTS`, check what edgeseg reproduces and compute the derived
    values. *from_py*: derived attributes given as class attributes are overwritten (as
    ``Config.__init__`` does); from a JSON/YAML they must equal the computed ones."""
    values = dict(DEFAULTS)
    ignored: dict[str, str] = {}
    for k, v in given.items():
        if k in DEFAULTS:
            values[k] = v
        elif k in IGNORED:
            ignored[k] = IGNORED[k]
        elif k in DERIVED:
            ignored[k] = "computed from the other attributes" + (" (Config.__init__ overwrites it)" if from_py else "")
        else:
            ignored[k] = "not an attribute matterport's model reads"
    _check(values, source)
    cfg = MatterportConfig(values=values, source=source, ignored=ignored)
    if not from_py:
        computed = cfg.derived()
        for k in DERIVED:
            if k in given and _plain(given[k]) != computed[k]:
                raise ArgumentError(f"{source}: {k} is {given[k]} but matterport computes {computed[k]} from the "
                                    "other attributes; the file is not one Config's values")
    return cfg


def _plain(v: Any) -> Any:
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


def _check(values: dict[str, Any], source: str) -> None:
    """Refuse, by name, what edgeseg does not reproduce."""
    mode = values["IMAGE_RESIZE_MODE"]
    if mode in UNSUPPORTED_RESIZE:
        raise ArgumentError(f"{source}: IMAGE_RESIZE_MODE = {mode!r} is not supported: {UNSUPPORTED_RESIZE[mode]}")
    if mode != "square":
        raise ArgumentError(f"{source}: IMAGE_RESIZE_MODE = {mode!r} is not one of matterport's modes; "
                            "use \"square\"")
    if values["BACKBONE"] not in ("resnet50", "resnet101"):
        raise ArgumentError(f"{source}: BACKBONE = {values['BACKBONE']!r} is not supported; matterport's built-in "
                            "backbones are \"resnet50\" and \"resnet101\"")
    if values["COMPUTE_BACKBONE_SHAPE"] is not None:
        raise ArgumentError(f"{source}: COMPUTE_BACKBONE_SHAPE is set; it goes with a custom BACKBONE callable, "
                            "which edgeseg does not read")
    if values["TRAIN_BN"]:
        raise ArgumentError(f"{source}: TRAIN_BN = True runs BatchNorm in training mode at inference, which a "
                            "static graph does not reproduce; set TRAIN_BN = False (matterport's default)")
    if values["IMAGE_CHANNEL_COUNT"] != 3:
        raise ArgumentError(f"{source}: IMAGE_CHANNEL_COUNT = {values['IMAGE_CHANNEL_COUNT']} is not supported; "
                            "edgeseg feeds 3-channel frames")
    ints = ("NUM_CLASSES", "IMAGE_MIN_DIM", "IMAGE_MAX_DIM", "TOP_DOWN_PYRAMID_SIZE", "FPN_CLASSIF_FC_LAYERS_SIZE",
            "RPN_ANCHOR_STRIDE", "PRE_NMS_LIMIT", "POST_NMS_ROIS_INFERENCE", "POOL_SIZE", "MASK_POOL_SIZE",
            "DETECTION_MAX_INSTANCES", "GPU_COUNT", "IMAGES_PER_GPU")
    for k in ints:
        if isinstance(values[k], bool) or not isinstance(values[k], int) or values[k] < 1:
            raise ArgumentError(f"{source}: {k} = {values[k]!r} must be a positive integer")
    if values["NUM_CLASSES"] < 2:
        raise ArgumentError(f"{source}: NUM_CLASSES = {values['NUM_CLASSES']} counts the background too; "
                            "a model that finds one class has NUM_CLASSES = 2")
    if values["IMAGE_MAX_DIM"] % 64:
        raise ArgumentError(f"{source}: IMAGE_MAX_DIM = {values['IMAGE_MAX_DIM']} must be a multiple of 64 "
                            "(matterport refuses it too: the FPN halves the image 6 times)")
    if list(values["MASK_SHAPE"]) != [2 * values["MASK_POOL_SIZE"]] * 2:
        raise ArgumentError(f"{source}: MASK_SHAPE = {values['MASK_SHAPE']} must be twice MASK_POOL_SIZE "
                            f"({values['MASK_POOL_SIZE']}); matterport's mask head upsamples once")
    for k, n in (("MEAN_PIXEL", 3), ("RPN_BBOX_STD_DEV", 4), ("BBOX_STD_DEV", 4)):
        v = values[k]
        if not isinstance(v, (list, tuple)) or len(v) != n or not all(isinstance(x, (int, float)) for x in v):
            raise ArgumentError(f"{source}: {k} = {v!r} must be {n} numbers")
    if len(values["BACKBONE_STRIDES"]) != 5 or len(values["RPN_ANCHOR_SCALES"]) != 5:
        raise ArgumentError(f"{source}: BACKBONE_STRIDES and RPN_ANCHOR_SCALES need 5 values, one per level "
                            "P2-P6")

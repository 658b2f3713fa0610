"""One source of truth per custom op: ``plugins/<op>/op.json``.

The Python description (``edgeseg.custom_ops``), the C++ attribute struct of the TensorRT plugin
(its members, defaults and ``visit`` list) and the README's attribute table must all say what the
spec says; the table is generated from it (tools/op_tables.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from edgeseg.custom_ops import CUSTOM_OPS, PASTE_MASKS, PASTE_MODES, PLUGIN_NAMESPACE, PLUGIN_VERSION
from tools.op_tables import attribute_table, load_spec, spec_paths, with_table

SPECS = {load_spec(p)["op_type"]: (p, load_spec(p)) for p in spec_paths()}
CPP_TYPES = {"int32_t": "int", "float": "float", "std::vector<float>": "floats"}
VISIT_TYPES = {"int32": "int", "float32": "float", "floats": "floats"}


def test_every_custom_op_has_a_spec() -> None:
    assert set(SPECS) == set(CUSTOM_OPS)
    for _, spec in SPECS.values():
        assert (spec["plugin_version"], spec["plugin_namespace"]) == (PLUGIN_VERSION, PLUGIN_NAMESPACE)


@pytest.mark.parametrize("op_type", sorted(CUSTOM_OPS))
def test_python_description_is_the_spec(op_type: str) -> None:
    _, spec = SPECS[op_type]
    ours = [{"name": a.name, "type": a.type, "default": a.default, "min": a.min, "exclusive_min": a.exclusive_min,
             "choices": list(a.choices) if a.choices else None, "length": list(a.length) if a.length else None,
             "multiple_of": a.multiple_of, "required": a.required, "optional": a.optional}
            for a in CUSTOM_OPS[op_type].attributes]
    theirs = [{"name": a["name"], "type": a["type"], "default": a["default"], "min": a.get("min"),
               "exclusive_min": a.get("exclusive_min", False), "choices": a.get("choices"), "length": a.get("length"),
               "multiple_of": a.get("multiple_of"), "required": a.get("required", False),
               "optional": a.get("optional", False)} for a in spec["attributes"]]
    assert ours == theirs
    assert list(CUSTOM_OPS[op_type].coordinate_inputs) == spec["coordinate_inputs"]
    assert CUSTOM_OPS[op_type].fp32_only == spec.get("fp32_only", False)


def cpp_attributes(header: Path) -> tuple[list[tuple[str, str, Any]], list[tuple[str, str]]]:
    """(members (name, type, default), visit list (name, type)) of the Attrs struct in *header*."""
    text = header.read_text()
    body = re.search(r"struct \w+Attrs \{(.*?)\n\};", text, re.S)
    assert body, f"no Attrs struct in {header}"
    members = []
    for ctype, name, assigned, braced in re.findall(
            r"^\s*(int32_t|float|std::vector<float>) (\w+)(?: = ([^;]+)|\{([^}]*)\});", body.group(1), re.M):
        raw = braced if ctype.startswith("std::") else assigned
        values = [float(v.strip().rstrip("f")) for v in raw.split(",")]
        default: Any = values if ctype.startswith("std::") else (int(values[0]) if ctype == "int32_t" else values[0])
        members.append((name, CPP_TYPES[ctype], default))
    visits = [(name, VISIT_TYPES[kind]) for kind, name in re.findall(r'v\.(int32|float32|floats)\("(\w+)"',
                                                                       body.group(1))]
    return members, visits


@pytest.mark.parametrize("op_type", sorted(CUSTOM_OPS))
def test_cpp_attribute_struct_is_the_spec(op_type: str) -> None:
    path, spec = SPECS[op_type]
    (header,) = path.parent.glob("*_plugin.h")
    members, visits = cpp_attributes(header)
    expected = [(a["name"], a["type"], a["default"]) for a in spec["attributes"]]
    assert members == expected
    assert visits == [(name, kind) for name, kind, _ in expected]


@pytest.mark.parametrize("op_type", sorted(CUSTOM_OPS))
def test_readme_attribute_table_is_generated_from_the_spec(op_type: str) -> None:
    path, spec = SPECS[op_type]
    readme = (path.parent / "README.md").read_text()
    assert with_table(readme, attribute_table(spec)) == readme, "run python tools/op_tables.py"


def test_paste_modes_are_the_specs_mode_names() -> None:
    (mode,) = [a for a in SPECS["PasteMasks"][1]["attributes"] if a["name"] == "mode"]
    assert tuple(mode["names"]) == PASTE_MODES


@pytest.mark.parametrize(("values", "message"), [
    ({"width": 8}, "PasteMasks: attribute height is required"),
    ({"height": 0, "width": 8}, "PasteMasks: height must be >= 1, got 0"),
    ({"height": 4, "width": 6}, "PasteMasks: width must be a multiple of 4, got 6"),
    ({"height": 4, "width": 8, "mode": 3}, "PasteMasks: mode must be one of 0, 1, 2, got 3"),
    ({"height": 4, "width": 8, "logits": 1.0}, "PasteMasks: logits must be an integer, got 1.0"),
    ({"height": 4, "width": 8, "sigma": 1}, "PasteMasks: unknown attribute(s) ['sigma']"),
])
def test_node_attributes_are_checked_against_the_spec(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as err:
        PASTE_MASKS.node_attributes(**values)
    assert str(err.value) == message


def test_roi_align_scales_are_checked() -> None:
    op = CUSTOM_OPS["MultiLevelRoIAlign"]
    with pytest.raises(ValueError, match=r"^MultiLevelRoIAlign: spatial_scales must be > 0, got -0.5$"):
        op.node_attributes(spatial_scales=[0.25, -0.5])
    with pytest.raises(ValueError, match=r"^MultiLevelRoIAlign: spatial_scales must hold 1 to 8 values, got 9$"):
        op.node_attributes(spatial_scales=[0.5] * 9)
    assert op.node_attributes()["plugin_version"] == PLUGIN_VERSION


def test_zoom_linear_is_fp32_only_and_checks_its_window() -> None:
    op = CUSTOM_OPS["ZoomLinear"]
    assert op.fp32_only and op.coordinate_inputs == (0, 1)
    assert not any(CUSTOM_OPS[other].fp32_only for other in CUSTOM_OPS if other != "ZoomLinear")
    with pytest.raises(ValueError, match=r"^ZoomLinear: top \+ height \(1 \+ 4\) exceeds canvas_height \(4\): "):
        op.node_attributes(height=4, width=4, canvas_height=4, canvas_width=4, top=1)
    full = op.node_attributes(height=341, width=512, canvas_height=512, canvas_width=512, top=85)
    assert (full["left"], full["mean"]) == (0, [0.0])

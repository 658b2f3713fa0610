"""The attribute table of each custom op's README, generated from the op's spec.

``plugins/<op>/op.json`` is the one place an op's attributes (names, types, defaults, allowed
values, meaning) are written. This tool writes the table between the markers in
``plugins/<op>/README.md``; ``tests/test_op_specs.py`` fails when a README's table, the Python
``edgeseg.custom_ops`` description or the C++ ``Attrs`` struct disagrees with the spec.

    python tools/op_tables.py          # rewrite the tables
    python tools/op_tables.py --check  # exit 1 if a table is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- attributes: generated from op.json by tools/op_tables.py; edit op.json, then run it -->"
END = "<!-- end of attributes -->"


def spec_paths() -> list[Path]:
    return sorted((ROOT / "plugins").glob("*/op.json"))


def load_spec(path: Path) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(path.read_text())
    return spec


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def allowed(attr: dict[str, Any]) -> str:
    """The allowed values of an attribute, in words."""
    parts = []
    if "length" in attr:
        parts.append(f"{attr['length'][0]} to {attr['length'][1]} values")
    if "choices" in attr:
        names = attr.get("names") or [None] * len(attr["choices"])
        parts.append(", ".join(f"{c} ({n})" if n else str(c) for c, n in zip(attr["choices"], names, strict=True)))
    if "min" in attr:
        parts.append(f"{'>' if attr.get('exclusive_min') else '>='} {_number(attr['min'])}"
                     + (" each" if attr["type"] == "floats" else ""))
    if "multiple_of" in attr:
        parts.append(f"a multiple of {attr['multiple_of']}")
    return "; ".join(parts) or "any"


def attribute_table(spec: dict[str, Any]) -> str:
    rows = ["| Name | Type | Default | Allowed | Meaning |", "|---|---|---|---|---|"]
    for a in spec["attributes"]:
        default = "required" if a.get("required") else (
            "[" + ", ".join(map(_number, a["default"])) + "]" if a["type"] == "floats" else _number(a["default"]))
        rows.append(f"| `{a['name']}` | {a['type']} | {default} | {allowed(a)} | {a['doc']} |")
    for field in ("plugin_version", "plugin_namespace"):
        rows.append(f"| `{field}` | string | `\"{spec[field]}\"` | | the plugin creator's {field.split('_')[1]} |")
    return "\n".join(rows)


def with_table(readme: str, table: str) -> str:
    """*readme* with the text between the markers replaced by *table*."""
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return readme[:start] + "\n" + table + "\n" + readme[end:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only report tables that are out of date")
    args = parser.parse_args(argv)
    stale = []
    for path in spec_paths():
        readme = path.parent / "README.md"
        text = readme.read_text()
        updated = with_table(text, attribute_table(load_spec(path)))
        if updated != text:
            stale.append(readme)
            if not args.check:
                readme.write_text(updated)
    for readme in stale:
        print(f"{'out of date' if args.check else 'rewrote'}: {readme.relative_to(ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())

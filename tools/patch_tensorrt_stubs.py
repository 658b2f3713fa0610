"""Make the installed ``tensorrt-stubs`` parse, so mypy can check edgeseg's TensorRT code.

``tensorrt-stubs`` (installed with ``pip install --no-deps tensorrt-stubs==10.13.0.35.1``: its
dependencies would pull TensorRT's libraries) is generated from the bindings, and its
``tensorrt_bindings/tensorrt.pyi`` is not valid Python: parameters named ``in`` (a keyword) and
parameters without a default after ones with a default.  This script rewrites those lines of
the installed copy in place, idempotently:

- a parameter ``in`` becomes ``in_``;
- in a signature where a parameter without a default follows defaulted ones, a ``*`` goes before
  the first defaulted one (the rest become keyword-only, which parses and is how callers pass them);
- the wheel installs ``tensorrt/__init__.pyi`` and ``tensorrt_bindings/`` as plain folders without
  a ``py.typed`` marker, so mypy would ignore them: the marker is added (PEP 561).

Run it before mypy (tests/test_static.py does). Exit status 1 if the stubs are not installed.
"""

from __future__ import annotations

import ast
import re
import site
import sys
import sysconfig
from pathlib import Path

STUB = Path("tensorrt_bindings") / "tensorrt.pyi"
INSTALL = "pip install --no-deps tensorrt-stubs==10.13.0.35.1"


def find_stub() -> Path | None:
    """The installed tensorrt.pyi of this interpreter's environment, if any."""
    roots = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    for root in roots:
        if (Path(root) / STUB).is_file():
            return Path(root) / STUB
    return None


def keyword_only_after_defaults(line: str) -> str:
    """Insert ``*,`` before the first defaulted parameter of a one-line ``def``."""
    head, sep, rest = line.partition("(")
    match = re.search(r"(?:^|, )(\w+: [^,=]+ = )", rest)
    if not sep or not match:
        return line
    start = match.start(1)
    return f"{head}(" + rest[:start] + "*, " + rest[start:]


def patch(text: str) -> tuple[str, int]:
    """The stub with its syntax errors fixed, and how many lines changed."""
    lines = text.splitlines()
    changed = 0
    for _ in range(len(lines)):
        try:
            ast.parse("\n".join(lines))
            break
        except SyntaxError as err:
            number = (err.lineno or 0) - 1
            old = lines[number]
            if re.search(r"\bin: ", old):
                new = re.sub(r"\bin: ", "in_: ", old)
            elif "non-default argument follows default argument" in err.msg or "parameter without a default" in err.msg:
                new = keyword_only_after_defaults(old)
            else:
                new = old
            if new == old:
                raise SystemExit(f"{number + 1}: cannot fix {err.msg!r} in: {old.strip()}") from err
            lines[number] = new
            changed += 1
    return "\n".join(lines) + "\n", changed


def main() -> int:
    stub = find_stub()
    if stub is None:
        print(f"tensorrt-stubs is not installed in {sys.prefix}: {INSTALL}", file=sys.stderr)
        return 1
    text, changed = patch(stub.read_text())
    for package in (stub.parent, stub.parent.parent / "tensorrt"):
        marker = package / "py.typed"
        if package.is_dir() and not marker.exists():
            marker.write_text("partial\n")
            changed += 1
    if text != stub.read_text():
        tmp = stub.with_suffix(".pyi.tmp")
        tmp.write_text(text)
        tmp.replace(stub)
    print(f"{stub}: {changed} change(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

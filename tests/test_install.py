"""The install the README's commands make: the test install pinned, users' requirements as ranges.

A new release of a dependency must not change what the suite reports: the README's test command
and ``.ci/run`` install through ``constraints.txt`` (exact versions, moved by
``tools/update_pins.sh``), and the checkers the suite runs are pinned in setup.py itself.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
CHECKERS = ("mypy", "ruff", "types-PyYAML")


def _setup_literals() -> tuple[list[str], dict[str, list[str]]]:
    """install_requires and extras_require, read from setup.py's literals (nothing is run)."""
    call = next(node for node in ast.walk(ast.parse((ROOT / "setup.py").read_text()))
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    keywords = {k.arg: k.value for k in call.keywords}
    return ast.literal_eval(keywords["install_requires"]), ast.literal_eval(keywords["extras_require"])


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version and re.fullmatch(r"[A-Za-z0-9_.\-]+", name), f"not an exact pin: {line!r}"
            pins[name.lower().replace("_", "-")] = version
    return pins


def _readme_test_command() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("**2. Run the tests**"):]
    return re.search(r"```bash\n(.+?)\n```", section, re.S).group(1)  # type: ignore[union-attr]


def test_ci_runs_the_readme_test_command_through_the_constraints() -> None:
    command = _readme_test_command()
    assert command in (ROOT / ".ci" / "run").read_text()
    assert "pip install -q -c constraints.txt -e \".[opencv,convert,test]\"" in command


def test_checkers_are_pinned_exactly_and_installed_as_pinned() -> None:
    _, extras = _setup_literals()
    pinned = {Requirement(r).name: Requirement(r) for r in extras["test"]}
    constraints = _constraints()
    for name in CHECKERS:
        spec = list(pinned[name].specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"{name} must be pinned exactly in the test extra"
        assert constraints[name.lower()] == spec[0].version, f"constraints.txt and setup.py disagree on {name}"
        assert importlib.metadata.version(name) == spec[0].version, (
            f"{name} {importlib.metadata.version(name)} is installed, the suite checks with {spec[0].version}: "
            "reinstall with the README's test command")


def test_constraints_cover_what_the_suite_depends_on() -> None:
    constraints = _constraints()
    for name in ("numpy", "onnx", "onnxruntime", "opencv-python-headless", "torch", "torchvision", "pytest",
                 "scikit-image", "pyyaml", "protobuf"):
        assert name in constraints, f"constraints.txt does not pin {name}"


def test_users_get_ranges_with_upper_bounds_only_where_private_apis_are_read() -> None:
    install, extras = _setup_literals()
    assert not any(Requirement(r).name.startswith("opencv") for r in install), (
        "pip's OpenCV in install_requires shadows JetPack's on a Jetson: keep it in the opencv extra")
    assert [Requirement(r).name for r in extras["opencv"]] == ["opencv-python-headless"]
    for requirement in install + [r for name, reqs in extras.items() if name != "test" for r in reqs]:
        req = Requirement(requirement)
        assert all(s.operator != "==" for s in req.specifier), f"{requirement}: users get ranges, not pins"
        bounded = any(s.operator in ("<", "<=") for s in req.specifier)
        # torchvision: the Mask R-CNN graph reads its detection modules' private attributes;
        # cuda-python: its major version must match the CUDA of the driver (one extra per major).
        assert not bounded or req.name in ("torchvision", "cuda-python"), f"{requirement}: unexpected upper bound"
        if req.name == "torchvision":
            assert bounded, "torchvision needs its upper bound (tests/test_torchvision_internals.py)"

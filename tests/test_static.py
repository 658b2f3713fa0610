"""Lint and type checks are part of the test suite, so the one test command covers them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> list[str]:
    exe = Path(sys.executable).with_name(name)
    if exe.exists():
        return [str(exe)]
    found = shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[test]'"
    return [found]


def test_ruff() -> None:
    proc = subprocess.run([*_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy() -> None:
    # The TensorRT code is checked against tensorrt-stubs, whose installed copy must be patched
    # to parse first (see the script); it fails with the install command if they are missing.
    patch = subprocess.run([sys.executable, str(ROOT / "tools" / "patch_tensorrt_stubs.py")], capture_output=True,
                           text=True)
    assert patch.returncode == 0, patch.stdout + patch.stderr
    proc = subprocess.run([*_tool("mypy")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

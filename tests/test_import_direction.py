"""Package boundaries (ARCHITECTURE.md): one installed import name, and imports that point one way.

- Everything installed lives under ``edgeseg`` (the wheel's top-level names).
- The runtime (``edgeseg`` outside ``edgeseg.converters``) imports neither torch nor a converter
  module, not even inside a function: torch-needing commands go through ``edgeseg.torch_side``.
- ``import edgeseg`` and ``edgeseg.load(...)(frame)`` leave torch and the converters unloaded.
- ``edgeseg.trt`` (the engine builder) does not import ``edgeseg.backends`` (the engine runner).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ExportedHRNet

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgeseg"
TORCH = ("torch", "torchvision")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth of the file (functions included)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def runtime_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "converters" not in p.relative_to(PACKAGE).parts)


def test_the_runtime_never_imports_torch_or_the_converters() -> None:
    offenders = {}
    for path in runtime_files():
        bad = sorted(m for m in imported_modules(path)
                     if m.split(".")[0] in TORCH or m == "edgeseg.converters" or m.startswith("edgeseg.converters."))
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert not offenders, offenders
    assert "importlib" in imported_modules(PACKAGE / "torch_side.py")  # the one door, by name at run time


def test_the_engine_builder_does_not_import_the_engine_runner() -> None:
    for path in sorted((PACKAGE / "trt").glob("*.py")):
        assert not [m for m in imported_modules(path) if m.startswith("edgeseg.backends")], path.name


def test_import_and_load_leave_torch_and_the_converters_unloaded(hrnet_small: ExportedHRNet) -> None:
    code = (
        "import sys, numpy as np, edgeseg\n"
        f"model = edgeseg.load({str(hrnet_small.path)!r}, threads=1)\n"
        f"model(np.zeros(({hrnet_small.frame_hw[0]}, {hrnet_small.frame_hw[1]}, 3), np.uint8))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')"
        " or m.startswith('edgeseg.converters')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_missing_pytorch_is_one_line_with_the_install_command(tmp_path: Path) -> None:
    """A runtime-only install: torch cannot be imported, `edgeseg convert` says what to install."""
    blocker = tmp_path / "torch.py"
    blocker.write_text("raise ImportError('No module named torch', name='torch')\n")
    cmd = [sys.executable, "-m", "edgeseg.cli", "convert", "hrnet", "--arch", "w18_small_v1", "--random-weights",
           "--num-classes", "3", "--frame", "64x64", "-o", str(tmp_path / "x.onnx")]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    assert proc.stderr == ("edgeseg: error: this needs PyTorch and torchvision: pip install 'edgeseg[convert]' "
                           "(or pip install -e '.[convert]' in a clone)\n")


@pytest.mark.slow
def test_the_wheel_installs_edgeseg_alone(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = tmp_path.glob("edgeseg-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"edgeseg"}, sorted(tops)
    assert "edgeseg/converters/maskrcnn/graph.py" in names and "edgeseg/torch_side.py" in names
    assert any(n.startswith("edgeseg/_ops_cpu") for n in names)  # the CPU build of the custom ops

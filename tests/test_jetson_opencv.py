"""JetPack's OpenCV survives installing edgeseg (issue 20), simulated on any machine.

On a Jetson the README makes the venv with ``--system-site-packages`` so that JetPack's OpenCV,
built with GStreamer, is imported; if installing edgeseg pulled pip's OpenCV into the venv it would
come first on ``sys.path`` and hide it. The simulation: a stand-in "system site-packages" folder
(every package of the test venv except OpenCV and edgeseg, plus a ``cv2`` that reports GStreamer and
has no pip record, as Debian's and JetPack's python3-opencv have none), put after a new venv's own
site-packages exactly where a real system folder sits; edgeseg installed into that venv by pip with
no index, so anything it would fetch fails the install; then what the venv imports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from edgeseg.opencv_origin import JETSON_WAY, PIP_WAY, OpenCVCopy, copies_on_path, shadowing

ROOT = Path(__file__).resolve().parents[1]

STAND_IN = '''"""A stand-in for JetPack's OpenCV: GStreamer built in, installed by apt (no pip record)."""
__version__ = "4.8.0"
FONT_HERSHEY_SIMPLEX = 0
CAP_GSTREAMER = 1800
JETPACK_STAND_IN = True


def getBuildInformation():
    return "  Video I/O:\\n    GStreamer:                   YES (1.20.3)\\n"


class videoio_registry:
    @staticmethod
    def getBackends():
        return [1800]

    @staticmethod
    def hasBackend(backend):
        return True

    @staticmethod
    def getBackendName(backend):
        return "GSTREAMER"
'''


def _system_site(tmp: Path) -> Path:
    """The stand-in system site-packages: links to this venv's packages but OpenCV and edgeseg,
    and JetPack's cv2."""
    system = tmp / "system-site-packages"
    system.mkdir()
    here = Path(sysconfig.get_paths()["purelib"])
    for entry in here.iterdir():
        name = entry.name.lower()
        if name.startswith(("cv2", "opencv", "edgeseg", "__editable__")) or name.endswith(".pth"):
            continue
        (system / entry.name).symlink_to(entry)
    (system / "cv2").mkdir()
    (system / "cv2" / "__init__.py").write_text(STAND_IN)
    return system


@pytest.fixture(scope="module")
def jetson_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("jetson")
    system = _system_site(tmp)
    venv = tmp / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # A .pth line appends the folder after the venv's own site-packages: where
    # --system-site-packages puts the system's.
    (Path(purelib) / "jetpack-system-site.pth").write_text(f"{system}\n")
    # The README's Jetson install, with no index: a dependency that is not already there fails it.
    # From a copy of what the sdist holds, so the build leaves nothing in the checkout.
    source = tmp / "edgeseg-src"
    source.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for folder in ("edgeseg", "plugins"):
        shutil.copytree(ROOT / folder, source / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so", "lib", "build"))
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": ""}
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                           "--no-build-isolation", "--no-index", str(source)],
                          capture_output=True, text=True, env=env, cwd=tmp)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return python


def _run(python: Path, code: str) -> str:
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


def test_install_keeps_the_system_opencv(jetson_venv: Path) -> None:
    out = _run(jetson_venv, "import cv2, edgeseg; print(getattr(cv2, 'JETPACK_STAND_IN', False)); "
                            "print(cv2.__file__); print(edgeseg.__file__)")
    stand_in, cv2_file, edgeseg_file = out.splitlines()
    assert stand_in == "True", cv2_file
    assert "system-site-packages" in cv2_file
    assert "/venv/" in edgeseg_file  # edgeseg itself went into the venv
    pip_cv2 = _run(jetson_venv, "import importlib.metadata as m; "
                                "print(sorted(d.metadata['Name'] for d in m.distributions() "
                                "if 'opencv' in d.metadata['Name'].lower()))")
    assert pip_cv2 == "[]"


def test_doctor_names_the_system_opencv(jetson_venv: Path) -> None:
    line = _run(jetson_venv, "from edgeseg.doctor import check_opencv; print(check_opencv().line())")
    assert line.startswith("ok    opencv             4.8.0 from ")
    assert "system-site-packages (not pip: a system package), video I/O: GSTREAMER" in line


def test_shadowing_is_found(tmp_path: Path) -> None:
    pip_site, system = tmp_path / "venv-site", tmp_path / "system"
    for folder in (pip_site, system):
        (folder / "cv2").mkdir(parents=True)
        (folder / "cv2" / "__init__.py").write_text("")
    copies = copies_on_path([str(pip_site), str(system)])
    assert [c.location for c in copies] == [pip_site / "cv2", system / "cv2"]
    # No pip record for either: neither shadows (two system copies are the user's business).
    assert shadowing(copies) is None
    marked = [OpenCVCopy(copies[0].location, "opencv-python-headless 5.1.0.95"), copies[1]]
    assert shadowing(marked) == copies[1]
    assert shadowing(marked[::-1]) is None  # the system one first: nothing hidden that matters


def test_doctor_warns_when_pip_shadows_the_system_opencv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from edgeseg import doctor, opencv_origin

    pip_copy = OpenCVCopy(tmp_path / "venv" / "cv2", "opencv-python-headless 5.1.0.95")
    system_copy = OpenCVCopy(Path("/usr/lib/python3/dist-packages/cv2"), None)
    monkeypatch.setattr(opencv_origin, "copies_on_path", lambda path=None: [pip_copy, system_copy])
    check = doctor.check_opencv()
    assert check.status == "warn"
    assert check.detail.endswith("; it shadows the system OpenCV at /usr/lib/python3/dist-packages")
    assert f"from {tmp_path / 'venv'} (opencv-python-headless 5.1.0.95)" in check.detail
    assert check.fix == ("pip uninstall opencv-python-headless (edgeseg installs pip's OpenCV only with its "
                         "[opencv] extra)")


NO_CV2 = "import sys; sys.modules['cv2'] = None; "


def test_import_without_opencv_names_both_ways() -> None:
    proc = subprocess.run([sys.executable, "-c", NO_CV2 + "import edgeseg"], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("edgeseg.opencv_origin.OpenCVMissingError: edgeseg needs OpenCV (cv2), which cannot be "
                           "imported (")
    assert last.endswith(f"; {PIP_WAY}; {JETSON_WAY}")


def test_command_without_opencv_is_one_line() -> None:
    proc = subprocess.run([sys.executable, "-c", NO_CV2 + "sys.argv = ['edgeseg', 'doctor']; import edgeseg.cli"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("edgeseg: error: edgeseg needs OpenCV (cv2)")
    assert "pip install 'edgeseg[opencv]'" in proc.stderr and "--system-site-packages" in proc.stderr

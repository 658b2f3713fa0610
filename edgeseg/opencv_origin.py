"""Which OpenCV this interpreter imports, where it comes from, and what it hides.

edgeseg does not require pip's OpenCV (see setup.py's ``opencv`` extra): on a Jetson the venv is
made with ``--system-site-packages`` so that JetPack's OpenCV, built with GStreamer, is used, and
a pip wheel installed into the venv would come first on ``sys.path`` and hide it. This module finds
every ``cv2`` on the path without importing the ones that are not first, so ``edgeseg doctor`` can
say which one runs and whether a pip OpenCV shadows a system one.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import sys
from dataclasses import dataclass
from pathlib import Path

from edgeseg.errors import BackendUnavailableError

# The two ways to have an OpenCV, named by every message about a missing or shadowed one.
PIP_WAY = "on a desktop or server: pip install 'edgeseg[opencv]' (pip's opencv-python-headless)"
JETSON_WAY = ("on a Jetson: JetPack's OpenCV with GStreamer (sudo apt install python3-opencv) in a venv made with "
              "python3 -m venv --system-site-packages, with no pip OpenCV installed into it")


class OpenCVMissingError(BackendUnavailableError):
    """No ``cv2`` can be imported."""


def missing_message(reason: str) -> str:
    return f"edgeseg needs OpenCV (cv2), which cannot be imported ({reason}); {PIP_WAY}; {JETSON_WAY}"


def require_opencv() -> None:
    """Import ``cv2`` or raise :class:`OpenCVMissingError` naming both ways to get one.

    Run as the ``edgeseg`` command, the message is the CLI's one error line and exit status 1
    instead: the package is imported before ``edgeseg.cli.main`` can catch anything."""
    try:
        import cv2  # noqa: F401
    except ImportError as exc:
        message = missing_message(str(exc))
        if Path(sys.argv[0]).name == "edgeseg":
            print(f"edgeseg: error: {message}", file=sys.stderr)
            raise SystemExit(1) from None
        raise OpenCVMissingError(message) from None


@dataclass(frozen=True)
class OpenCVCopy:
    """One ``cv2`` on ``sys.path``: where it lies and, for a pip install, its distribution."""

    location: Path  # the cv2 package folder, or the extension module file
    distribution: str | None  # "opencv-python-headless 5.1.0.95"; None: not installed by pip (a system package)

    @property
    def from_pip(self) -> bool:
        return self.distribution is not None


def _owner(location: Path, owners: dict[Path, str]) -> str | None:
    return owners.get(location.resolve())


def _pip_owned() -> dict[Path, str]:
    """Every path a pip distribution lists for its ``cv2``, resolved, to the distribution's name
    and version. Debian's and JetPack's python3-opencv carry no such record."""
    owned: dict[Path, str] = {}
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            parts = Path(str(file)).parts
            if parts and (parts[0] == "cv2" or parts[0].startswith("cv2.")):
                top = Path(str(dist.locate_file(parts[0])))
                owned[top.resolve()] = f"{dist.metadata['Name']} {dist.version}"
    return owned


def copies_on_path(path: list[str] | None = None) -> list[OpenCVCopy]:
    """Every ``cv2`` on *path* (default ``sys.path``) in import order: the first one is what
    ``import cv2`` loads, the others are shadowed by it. Nothing is imported."""
    owners = _pip_owned()
    found: list[OpenCVCopy] = []
    seen: set[Path] = set()
    for entry in sys.path if path is None else path:
        spec = importlib.machinery.PathFinder.find_spec("cv2", [entry or "."])
        if spec is None or (spec.origin is None and not spec.submodule_search_locations):
            continue
        if spec.submodule_search_locations:
            location = Path(next(iter(spec.submodule_search_locations)))
        else:
            location = Path(str(spec.origin))
        if location.resolve() in seen:
            continue
        seen.add(location.resolve())
        found.append(OpenCVCopy(location, _owner(location, owners)))
    return found


def shadowing(copies: list[OpenCVCopy]) -> OpenCVCopy | None:
    """The system OpenCV that a pip one hides, if the first copy is pip's and a later one is not."""
    if copies and copies[0].from_pip:
        return next((c for c in copies[1:] if not c.from_pip), None)
    return None

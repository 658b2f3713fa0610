"""The one door from the runtime to the converters, which need PyTorch.

The runtime (every ``edgeseg`` module outside ``edgeseg.converters``) never imports torch or a
converter module itself: the commands that need them (``edgeseg convert``, ``compare``, ``demo``)
ask :func:`converters` for the module at the moment they run, so ``import edgeseg`` and
``edgeseg.load`` stay light on a Jetson without PyTorch, and a missing PyTorch is one clear line
instead of an ImportError. ``tests/test_import_direction.py`` holds every other module to it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgeseg.errors import BackendUnavailableError

INSTALL = "pip install 'edgeseg[convert]' (or pip install -e '.[convert]' in a clone)"


def converters(module: str) -> ModuleType:
    """``edgeseg.converters.<module>``, e.g. ``api`` or ``parity``; :class:`BackendUnavailableError`
    with the install command when PyTorch or torchvision is missing."""
    try:
        return importlib.import_module(f"edgeseg.converters.{module}")
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] in ("torch", "torchvision"):
            raise BackendUnavailableError(f"this needs PyTorch and torchvision: {INSTALL}") from exc
        raise

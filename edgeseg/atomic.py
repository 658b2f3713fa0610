"""Outputs that appear whole or not at all.

Every file edgeseg writes (ONNX, engine, video, image, JSON) is written under a temporary name in
the destination folder and renamed over the final name only once it is complete, so an
interrupted run never leaves a truncated file that looks valid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgeseg.errors import OutputError


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail early, before any long work, if *path* cannot be written.

    Returns the path as a :class:`Path`. Raises :class:`OutputError` naming the cause and the fix.
    """
    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise OutputError(f"cannot write {out}: it is a folder; give a file name such as {out / 'out'}")
    if not parent.exists():
        raise OutputError(f"cannot write {out}: folder {parent} does not exist; create it or choose another path")
    if not parent.is_dir():
        raise OutputError(f"cannot write {out}: {parent} is a file, not a folder; choose another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgeseg-probe-", dir=parent)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}; choose a writable folder") from exc
    os.close(fd)
    os.unlink(probe)
    return out


def temporary_sibling(path: Path) -> Path:
    """A fresh, unused name next to *path* that keeps its extension (video writers pick the
    container from it)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(fd)
    # mkstemp creates 0600; give the final file the permissions any new file would get.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


def write_failed(path: Path, exc: OSError) -> OutputError:
    """The one-line error for a write to *path* that failed (a full disk, a vanished folder,
    permissions), after whatever was half written has been removed."""
    return OutputError(f"cannot write {path}: {exc.strerror or exc}; nothing was left behind: free space or "
                       "choose another folder")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it is renamed to *path*.

    If the block raises (including ``KeyboardInterrupt``) the temporary file is deleted and *path*
    is left as it was; an OSError (a full disk...) becomes :class:`OutputError` naming *path*.
    """
    final = check_writable(path)
    tmp = temporary_sibling(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise write_failed(final, exc) from exc
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh, empty folder beside *path* to fill; on success it becomes *path*, replacing
    a folder already there; on any error (Ctrl-C included) it is deleted and *path* is left as
    it was. Whether an existing *path* may be replaced is the caller's decision, made before."""
    final = Path(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    except OSError as exc:
        raise OutputError(f"cannot write {final}: {exc.strerror or exc}; choose a writable folder") from exc
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; give the folder a new folder's rights
        yield tmp
        if final.is_dir() and any(final.iterdir()):
            # rename() only replaces an empty folder: move the old one aside, and back on failure.
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, old)
            try:
                os.replace(tmp, final)
            except BaseException:
                os.replace(old, final)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise write_failed(final, exc) from exc
        raise

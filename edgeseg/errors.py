"""Typed exceptions raised by edgeseg.

Every message names what was wrong and what to do about it, so the CLI can print it as one line.
All of them derive from :class:`EdgesegError`; the ones caused by a bad argument also derive from
``ValueError`` so generic callers can catch them the usual way.
"""

from __future__ import annotations


class EdgesegError(Exception):
    """Base class of every error edgeseg raises on purpose."""


class ModelFileError(EdgesegError, ValueError):
    """A model file is missing, of the wrong type, or lacks edgeseg metadata."""


class FrameError(EdgesegError, ValueError):
    """A frame passed to a model is not an HxWx3 uint8 BGR image."""


class BackendUnavailableError(EdgesegError, ImportError):
    """The inference backend a model needs is not installed on this machine."""


class OutputError(EdgesegError, OSError):
    """An output file cannot be written where it was asked for."""


class SourceError(EdgesegError, OSError):
    """An input image, video or camera cannot be opened or read."""


class ArgumentError(EdgesegError, ValueError):
    """A command-line style argument (frame size, class list, ...) is malformed."""


class SourceUriError(SourceError, ArgumentError):
    """A source names a scheme, host, port, path or file type that cannot be right: found before anything is
    opened, a usage error (exit code 2 on the command line)."""


class OutputUriError(OutputError, ArgumentError):
    """An output names a scheme, host, port, path or file type that cannot be right: found before anything is
    opened or written, a usage error (exit code 2 on the command line)."""


class CacheError(ArgumentError):
    """A file edgeseg wrote to read back later (calibration statistics, a TensorRT timing cache)
    is damaged, truncated or not one of its kind; the message says to delete it or how it is
    rebuilt."""


class ConversionError(EdgesegError):
    """Converting a PyTorch model failed: unknown architecture, bad checkpoint, export failure."""


class UnknownArchError(ConversionError, ArgumentError):
    """The requested architecture name is not one edgeseg knows."""


class CheckpointError(ConversionError, ValueError):
    """A weights file is not a checkpoint, or needs full pickle loading."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's keys or tensor shapes do not fit the requested architecture."""


class EngineMismatchError(ModelFileError):
    """A TensorRT engine (or plugin library) was built for another TensorRT version or GPU."""


class EdgesegWarning(UserWarning):
    """Something works but is likely not what the user wants (few calibration images, ...); the
    CLI prints it as one ``warning:`` line."""

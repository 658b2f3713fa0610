"""The plugins' CUDA launchers as a test-only shared library, driven from Python on a GPU without
TensorRT.

:func:`build_library` compiles ``plugins/*/..._kernel.cu`` (the very launchers the TensorRT plugins'
``enqueue`` calls) with ``tests/cuda/kernel_entry.cu`` (``extern "C"`` entry points) into one
shared library, with the plugins' own nvcc flags (``--fmad=false``: the CPU build's floats).
:class:`Kernels` loads it with ctypes and runs the ops on PyTorch CUDA tensors. Used by
``tests/test_cuda_kernels.py``, ``benchmarks/cuda_kernels.py`` and ``tools/device_check.sh``.
"""

from __future__ import annotations

import ctypes
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeseg.custom_ops import PASTE_MODES
from tests.test_cuda_compile import NVCC_FLAGS, PLUGINS, ROOT, find_cuda_tool

ENTRY = ROOT / "tests" / "cuda" / "kernel_entry.cu"
SOURCES = (PLUGINS / "multilevel_roi_align" / "roi_align_kernel.cu", PLUGINS / "paste_masks" / "paste_masks_kernel.cu",
           PLUGINS / "zoom_linear" / "zoom_linear_kernel.cu", ENTRY)
LIBRARY = "libedgeseg_kernels_test.so"


def build_library(out_dir: Path, arch: int) -> Path:
    """Compile the library for ``sm_<arch>`` (e.g. 90 for an H100/H200) into *out_dir*; return its
    path. :class:`RuntimeError` with nvcc's output when it fails, or when nvcc is missing."""
    nvcc = find_cuda_tool("nvcc")
    if nvcc is None:
        raise RuntimeError("nvcc not found: install the CUDA toolkit")
    out = out_dir / LIBRARY
    cmd = [nvcc, *NVCC_FLAGS, "-shared", "-Xcompiler", "-fPIC", "-gencode", f"arch=compute_{arch},code=sm_{arch}",
           *map(str, SOURCES), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"nvcc failed ({' '.join(cmd)}):\n{proc.stdout}{proc.stderr}")
    return out


class Kernels:
    """The library's entry points on PyTorch CUDA tensors (the default stream; each call waits
    for its kernels and raises :class:`RuntimeError` on a CUDA error)."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        c = ctypes
        lib.edgeseg_test_roi_align.restype = c.c_int32
        lib.edgeseg_test_roi_align.argtypes = [
            c.c_int32, c.POINTER(c.c_void_p), c.POINTER(c.c_int32), c.POINTER(c.c_int32), c.POINTER(c.c_float),
            c.c_int32, c.c_int32, c.c_int32, c.c_void_p, c.c_int64, c.c_int32, c.c_int32, c.c_int32, c.c_int32,
            c.c_float, c.c_int32, c.c_int32, c.c_float, c.c_int32, c.c_void_p,
        ]
        lib.edgeseg_test_paste_masks.restype = c.c_int32
        lib.edgeseg_test_paste_masks.argtypes = [
            c.c_int32, c.c_void_p, c.c_void_p, c.c_void_p, c.c_int64, c.c_int32, c.c_int32, c.c_int32, c.c_float,
            c.c_int32, c.c_int32, c.c_void_p,
        ]
        lib.edgeseg_test_zoom_linear.restype = c.c_int32
        lib.edgeseg_test_zoom_linear.argtypes = [
            c.c_void_p, c.c_int32, c.c_int32, c.c_int32, c.c_void_p, c.POINTER(c.c_float), c.c_int32, c.c_int32,
            c.c_int32, c.c_int32, c.c_int32, c.c_int32, c.c_int32, c.c_void_p,
        ]
        lib.edgeseg_test_synchronize.restype = c.c_int32
        lib.edgeseg_test_error_string.restype = c.c_char_p
        lib.edgeseg_test_error_string.argtypes = [c.c_int32]
        self.lib = lib

    def _check(self, status: int, what: str) -> None:
        if status == 0:
            status = int(self.lib.edgeseg_test_synchronize())
        if status != 0:
            raise RuntimeError(f"{what}: CUDA error {status} ({self.lib.edgeseg_test_error_string(status).decode()})")

    def roi_align(self, features: Sequence[Any], rois: Any, output_hw: tuple[int, int], scales: Sequence[float],
                  sampling_ratio: int = 2, aligned: bool = False, canonical_scale: float = 224.0,
                  canonical_level: int = 4, sync: bool = True, level_rule: int = 0, image_area: float = 0.0,
                  sampling: int = 0) -> Any:
        """MultiLevelRoIAlign: *features* CUDA float32 or float16 [N, C, H_l, W_l] (one dtype),
        *rois* CUDA float32 [R, 5]; returns [R, C, out_h, out_w] in the features' dtype. The
        rest: the op's attributes (*sampling* 1 = crop_and_resize, rois normalised)."""
        import torch

        feats = [f.contiguous() for f in features]
        rois = rois.contiguous()
        assert rois.dtype == torch.float32 and all(f.dtype == feats[0].dtype for f in feats)
        n, c = int(feats[0].shape[0]), int(feats[0].shape[1])
        out = torch.empty((int(rois.shape[0]), c, *output_hw), dtype=feats[0].dtype, device=rois.device)
        levels = len(feats)
        status = self.lib.edgeseg_test_roi_align(
            int(feats[0].dtype == torch.float16),
            (ctypes.c_void_p * levels)(*[f.data_ptr() for f in feats]),
            (ctypes.c_int32 * levels)(*[int(f.shape[2]) for f in feats]),
            (ctypes.c_int32 * levels)(*[int(f.shape[3]) for f in feats]),
            (ctypes.c_float * levels)(*[float(s) for s in scales]),
            levels, n, c, rois.data_ptr(), int(rois.shape[0]), output_hw[0], output_hw[1], sampling_ratio,
            int(aligned), canonical_scale, canonical_level, level_rule, image_area, sampling, out.data_ptr(),
        )
        if sync:
            self._check(status, "roi_align")
        elif status != 0:
            raise RuntimeError(f"roi_align: launch failed with CUDA error {status}")
        return out

    def paste_masks(self, masks: Any, boxes: Any, frame_hw: tuple[int, int], mode: str = "torchvision",
                    threshold: float = 0.5, logits: bool = False, count: Any = None, out: Any = None,
                    sync: bool = True) -> Any:
        """PasteMasks: *masks* CUDA float32 or float16 [K, M, M], *boxes* CUDA float32 [K, 4] (frame
        pixels), *count* CUDA int32 [1] or None; returns uint8 [K, H, W] (*out* when given: rows
        from count on are left as they were)."""
        import torch

        masks, boxes = masks.contiguous(), boxes.contiguous()
        assert masks.dtype in (torch.float32, torch.float16) and boxes.dtype == torch.float32
        assert count is None or count.dtype == torch.int32
        assert out is None or out.dtype == torch.uint8
        k, m = int(masks.shape[0]), int(masks.shape[1])
        if out is None:
            out = torch.zeros((k, *frame_hw), dtype=torch.uint8, device=masks.device)
        status = self.lib.edgeseg_test_paste_masks(
            int(masks.dtype == torch.float16), masks.data_ptr(), boxes.data_ptr(),
            None if count is None else count.data_ptr(), k, m, frame_hw[0], frame_hw[1], threshold,
            PASTE_MODES.index(mode), int(logits), out.data_ptr(),
        )
        if sync:
            self._check(status, "paste_masks")
        elif status != 0:
            raise RuntimeError(f"paste_masks: launch failed with CUDA error {status}")
        return out

    def zoom_linear(self, image: Any, value_range: Any, height: int, width: int, canvas_height: int,
                    canvas_width: int, top: int = 0, left: int = 0, mean: Sequence[float] = (0.0,),
                    sync: bool = True) -> Any:
        """ZoomLinear: *image* CUDA float32 [H, W, C], *value_range* CUDA float32 [2]; returns
        float32 [C, canvas_height, canvas_width]."""
        import torch

        image, value_range = image.contiguous(), value_range.contiguous()
        assert image.dtype == torch.float32 and value_range.dtype == torch.float32
        rows, cols, channels = (int(d) for d in image.shape)
        out = torch.empty((channels, canvas_height, canvas_width), dtype=torch.float32, device=image.device)
        means = (ctypes.c_float * len(mean))(*[float(m) for m in mean])
        status = self.lib.edgeseg_test_zoom_linear(
            image.data_ptr(), rows, cols, channels, value_range.data_ptr(), means, len(mean), height, width,
            canvas_height, canvas_width, top, left, out.data_ptr(),
        )
        if sync:
            self._check(status, "zoom_linear")
        elif status != 0:
            raise RuntimeError(f"zoom_linear: launch failed with CUDA error {status}")
        return out

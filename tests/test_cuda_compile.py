"""The plugins' CUDA sources compile, warning-free, for every GPU architecture edgeseg targets.

Needs only the CUDA toolkit (nvcc), no GPU: every ``plugins/**/*.cu`` is compiled with the flags
and architectures below (plugins/CMakeLists.txt uses the same: a test below), and the object is checked to
hold machine code (SASS) for each target and PTX for the forward-compatible one. The launchers'
headers (and every other plugin header) must also compile as plain C++ without nvcc's device
pass, since the TensorRT plugin wrappers are ordinary .cpp files that include them.  (The wrappers'
own headers need TensorRT's: tests/test_plugin_library.py builds those.)
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "plugins"

# GPU architectures the plugin kernels are built for, as SASS: Turing, Ampere (A100, RTX 30),
# Jetson Orin, Ada, Hopper, Jetson Thor.  plugins/CMakeLists.txt has the same default (a test below).
SASS_ARCHS: tuple[int, ...] = (75, 80, 86, 87, 89, 90, 110)
# Also embedded as PTX, JIT-compiled by the driver on newer GPUs (Blackwell RTX 50 and later).
PTX_ARCHS: tuple[int, ...] = (120,)

# --fmad=false: the kernels must give the CPU build's floats bit for bit (they call the same math
# functions), so nvcc may not contract a * b + c into fused multiply-adds.  Never --use_fast_math.
NVCC_FLAGS: tuple[str, ...] = (
    "-std=c++17",
    "-O3",
    "--fmad=false",
    f"-I{PLUGINS}",
    "--Werror",
    "all-warnings",
    "-Xcompiler",
    "-Wall,-Wextra,-Werror",
)

NVCC_MISSING = "nvcc not found: install the CUDA toolkit to compile the plugin kernels"
CUDA_SOURCES: list[Path] = sorted(PLUGINS.rglob("*.cu"))
HEADERS: list[Path] = sorted(h for h in PLUGINS.rglob("*.h") if "<NvInfer" not in h.read_text())


def gencode_flags() -> list[str]:
    flags = []
    for arch in SASS_ARCHS:
        flags += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    for arch in PTX_ARCHS:
        flags += ["-gencode", f"arch=compute_{arch},code=compute_{arch}"]
    return flags


def find_cuda_tool(name: str) -> str | None:
    """`name` from PATH, else from $CUDA_HOME / $CUDA_PATH / /usr/local/cuda."""
    found = shutil.which(name)
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "bin" / name).is_file():
            return str(Path(root) / "bin" / name)
    return None


@pytest.fixture(scope="module")
def nvcc() -> str:
    found = find_cuda_tool("nvcc")
    if found is None:
        pytest.skip(NVCC_MISSING)
    return found


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)


def op_folders() -> list[Path]:
    """One folder per custom op: those holding the op's math header (<op>/*_math.h)."""
    return sorted({p.parent for p in PLUGINS.glob("*/*_math.h")})


def test_every_op_has_a_cuda_source() -> None:
    ops = op_folders()
    assert ops, f"no op folders (*/*_math.h) under {PLUGINS}"
    missing = [op.name for op in ops if not list(op.glob("*.cu"))]
    assert not missing, f"op folders without a CUDA source (.cu): {missing}"


def test_nvcc_knows_every_target_architecture(nvcc: str) -> None:
    proc = run([nvcc, "--list-gpu-arch"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = set(re.findall(r"compute_(\d+)", proc.stdout))
    lacking = [f"compute_{a}" for a in (*SASS_ARCHS, *PTX_ARCHS) if str(a) not in listed]
    assert not lacking, f"{nvcc} cannot target {lacking} (CUDA 13 or newer needed); it lists {sorted(listed)}"


def archs_from_cuobjdump(cuobjdump: str, obj: Path) -> tuple[set[int], set[int]] | None:
    """(SASS archs, PTX archs) listed by cuobjdump, or None if it failed."""
    found: list[set[int]] = []
    for option in ("--list-elf", "--list-ptx"):
        proc = run([cuobjdump, option, str(obj)])
        if proc.returncode != 0:
            return None
        found.append({int(a) for a in re.findall(r"\bsm_(\d+)", proc.stdout)})
    return found[0], found[1]


FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)


def archs_from_fatbin(obj: Path) -> tuple[set[int], set[int]] | None:
    """(SASS archs, PTX archs) read from the fat binary nvcc embeds in the object, or None when none
    is recognised.

    Container layout (undocumented, stable since CUDA 4): a 16-byte header (u32 magic 0xBA55ED50,
    u16 version 1, u16 header size, u64 size of the entries) followed by entries, each with a
    header of u16 kind (1 = PTX, 2 = ELF with SASS), u16 version, u32 header size, u64 payload
    size, ..., u32 architecture at byte 28 (e.g. 86), then the payload.
    """
    data = obj.read_bytes()
    sass: set[int] = set()
    ptx: set[int] = set()
    start = data.find(FATBIN_MAGIC)
    while start >= 0:
        if start + 16 <= len(data):
            version, header_size, entries_size = struct.unpack_from("<HHQ", data, start + 4)
            pos = start + header_size
            end = pos + entries_size
            if version == 1 and header_size >= 16 and end <= len(data):
                while pos + 32 <= end:
                    kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, pos)
                    (arch,) = struct.unpack_from("<I", data, pos + 28)
                    if entry_header < 32 or kind not in (1, 2):
                        break
                    (ptx if kind == 1 else sass).add(arch)
                    pos += entry_header + payload
        start = data.find(FATBIN_MAGIC, start + 4)
    return (sass, ptx) if sass or ptx else None


@pytest.mark.parametrize("source", CUDA_SOURCES, ids=lambda p: str(p.relative_to(PLUGINS)))
def test_cuda_source_compiles_for_all_targets(nvcc: str, source: Path, tmp_path: Path) -> None:
    obj = tmp_path / (source.stem + ".o")
    # One invocation per file, its targets compiled in parallel (--threads 0: one per core).
    cmd = [nvcc, *NVCC_FLAGS, *gencode_flags(), "--threads", "0", "-c", str(source), "-o", str(obj)]
    proc = run(cmd)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
    assert obj.is_file() and obj.stat().st_size > 0

    cuobjdump = find_cuda_tool("cuobjdump")
    archs = archs_from_cuobjdump(cuobjdump, obj) if cuobjdump else None
    if archs is None:
        archs = archs_from_fatbin(obj)
    if archs is None:
        pytest.skip(
            f"{source.name} compiled; its architectures are not checked: cuobjdump is not installed "
            "and no fat binary header was recognised in the object"
        )
    sass, ptx = archs
    assert sass >= set(SASS_ARCHS), f"{obj.name}: SASS for {sorted(sass)}, want {list(SASS_ARCHS)}"
    assert ptx >= set(PTX_ARCHS), f"{obj.name}: PTX for {sorted(ptx)}, want {list(PTX_ARCHS)}"


def test_headers_compile_as_plain_cpp(nvcc: str, tmp_path: Path) -> None:
    """Every plugin header on its own, as host C++ (no __CUDACC__), like a plugin .cpp includes it."""
    assert HEADERS
    units = []
    for header in HEADERS:
        unit = tmp_path / (header.relative_to(PLUGINS).as_posix().replace("/", "__") + ".cpp")
        unit.write_text(f'#include "{header.relative_to(PLUGINS).as_posix()}"\n')
        units.append(str(unit))
    # nvcc hands .cpp files to the host compiler with the CUDA include directory added.
    cmd = [nvcc, "-x", "c++", *NVCC_FLAGS, "-c", *units, "--output-directory", str(tmp_path)]
    proc = run(cmd)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}{proc.stderr}"


def test_cmake_default_architectures_are_the_targets() -> None:
    """With CUDA 13, plugins/CMakeLists.txt builds for exactly the architectures compiled above."""
    text = (PLUGINS / "CMakeLists.txt").read_text()
    base = re.search(r"set\(CMAKE_CUDA_ARCHITECTURES ((?:\d+-real ?)+)\)", text)
    cuda13 = re.search(r"VERSION_GREATER_EQUAL 13\.0\)\s*list\(APPEND CMAKE_CUDA_ARCHITECTURES ([^)]*)\)", text)
    assert base and cuda13, "default architecture lists not found in plugins/CMakeLists.txt"
    listed = (base.group(1) + " " + cuda13.group(1).split("#")[0]).split()
    real = {int(a.split("-")[0]) for a in listed if a.endswith("-real")}
    virtual = {int(a.split("-")[0]) for a in listed if a.endswith("-virtual")}
    assert real == set(SASS_ARCHS) and virtual == set(PTX_ARCHS), listed


def test_kernel_test_library_builds(nvcc: str, tmp_path: Path) -> None:
    """The library `pytest -m cuda` and tools/device_check.sh drive (the plugins' launchers plus
    extern "C" entry points) links here too, so a lent GPU machine's minutes go to running it."""
    from tests.cuda_kernels import LIBRARY, build_library

    path = build_library(tmp_path, 87)
    assert path.name == LIBRARY and path.is_file()
    exported = run(["nm", "-D", "--defined-only", str(path)]).stdout
    for name in ("edgeseg_test_roi_align", "edgeseg_test_paste_masks", "edgeseg_test_zoom_linear",
                 "edgeseg_test_synchronize"):
        assert f" T {name}" in exported, name


def test_kernel_test_library_is_built_from_the_plugins_launchers() -> None:
    from tests.cuda_kernels import SOURCES

    assert sorted(s for s in SOURCES if PLUGINS in s.parents) == CUDA_SOURCES
    assert all(s.is_file() for s in SOURCES)


def test_device_check_on_a_machine_without_a_gpu(tmp_path: Path) -> None:
    """tools/device_check.sh exits 0 where there is no GPU, saying so, after compiling the kernel
    test library (where nvcc is); the summary is written to its output folder."""
    import sys

    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "tools" / "device_check.sh"), str(tmp_path / "out")], cwd=ROOT,
                          capture_output=True, text=True, env=env, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    assert summary[0].endswith(", no GPU")
    assert summary[-1].startswith("skipped kernel tests, sanitizers, timings: no CUDA GPU visible to")
    if find_cuda_tool("nvcc"):
        assert summary[1].startswith("ok      kernel test library compiles (no GPU to run it)")

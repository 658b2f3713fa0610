"""Which JetPack ships which TensorRT and CUDA, for which Jetson: the facts, in one place.

``edgeseg doctor``, the README and the error messages that name a JetPack read them from here.
JetPack releases as NVIDIA ships them: 6.0 has TensorRT 8.6 (too old for edgeseg's IPluginV3
plugins); 6.1 and 6.2 ship TensorRT 10.3 with CUDA 12.6 for Orin; 7.0 and 7.1 ship TensorRT
10.13 with CUDA 13 for Thor; 7.2 ships TensorRT 10.16 with CUDA 13 for Thor and, from that
release on, Orin too. TensorRT 11.x is not in any JetPack: it reaches Jetsons only from JetPack
7.2.2, through the SBSA packages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The oldest TensorRT edgeseg's plugins build and run with.
MIN_TENSORRT = (10, 3)

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")


@dataclass(frozen=True)
class JetPack:
    """One JetPack release: its TensorRT (major.minor), its CUDA major and the Jetson modules it
    supports (``"Orin"``, ``"Thor"``)."""

    release: str
    tensorrt: str
    cuda_major: int
    modules: tuple[str, ...]

    @property
    def supported(self) -> bool:
        """Whether edgeseg runs on its TensorRT."""
        return tuple(int(p) for p in self.tensorrt.split(".")) >= MIN_TENSORRT


JETPACKS: tuple[JetPack, ...] = (
    JetPack("6.0", "8.6", 12, ("Orin",)),
    JetPack("6.1", "10.3", 12, ("Orin",)),
    JetPack("6.2", "10.3", 12, ("Orin",)),
    JetPack("7.0", "10.13", 13, ("Thor",)),
    JetPack("7.1", "10.13", 13, ("Thor",)),
    JetPack("7.2", "10.16", 13, ("Thor", "Orin")),
)

#: TensorRT 11.x on a Jetson: not in JetPack itself.
TENSORRT_11_ON_JETSON = "TensorRT 11.x reaches Jetsons only from JetPack 7.2.2, through the SBSA packages"


def jetson_module(model_file: Path = DEVICE_TREE_MODEL) -> str | None:
    """``"Orin"`` or ``"Thor"`` on a Jetson of that family (from the device tree's model string,
    e.g. "NVIDIA Jetson AGX Orin Developer Kit"); ``"Jetson"`` for an older or unknown module;
    None elsewhere."""
    try:
        model = model_file.read_bytes().decode(errors="replace").rstrip("\x00").strip()
    except OSError:
        return None
    if "jetson" not in model.lower() and "nvidia" not in model.lower():
        return None
    for module in ("Thor", "Orin"):
        if module.lower() in model.lower():
            return module
    return "Jetson"


def jetpacks_for(module: str) -> list[JetPack]:
    """The JetPack releases edgeseg supports on *module*, oldest first."""
    return [jp for jp in JETPACKS if module in jp.modules and jp.supported]


def expected_jetpack(module: str) -> str:
    """The JetPack releases for *module* and the TensorRT each ships, as a phrase:
    ``"JetPack 6.1/6.2 (TensorRT 10.3) or 7.2 (TensorRT 10.16)"``."""
    groups: dict[str, list[str]] = {}
    for jp in jetpacks_for(module):
        groups.setdefault(jp.tensorrt, []).append(jp.release)
    if not groups:
        return "no JetPack edgeseg supports (it needs an Orin or Thor with TensorRT 10.3 or newer)"
    parts = [f"{'/'.join(releases)} (TensorRT {trt})" for trt, releases in groups.items()]
    return "JetPack " + " or ".join(parts)


def _release(jp: JetPack) -> tuple[int, ...]:
    return tuple(int(p) for p in jp.release.split("."))


def tensorrt_fits_jetpack(module: str, tensorrt_version: str) -> bool:
    """Whether TensorRT *tensorrt_version* (``"10.3.0.30"``) is what a supported JetPack ships for
    *module*, or TensorRT 11 from the SBSA packages (which JetPack 7.2.2 and later take)."""
    major_minor = ".".join(tensorrt_version.split(".")[:2])
    if tensorrt_version.split(".")[0] == "11":
        return any(_release(jp) >= (7, 2) for jp in jetpacks_for(module))
    return any(jp.tensorrt == major_minor for jp in jetpacks_for(module))

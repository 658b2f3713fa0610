"""HRNetV2 architectures as data.

Each architecture is the stage table of the official HRNet-Semantic-Segmentation configs
(``experiments/cityscapes/seg_hrnet_*.yaml``, pytorch-v1.1 branch). Stage 1 is a single branch of
Bottleneck blocks; stages 2-4 have 2, 3 and 4 branches of BasicBlocks, each branch at half the
resolution and (for the standard models) twice the width of the previous one.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeseg.errors import UnknownArchError


@dataclass(frozen=True)
class StageSpec:
    """One multi-branch stage: ``modules`` HighResolutionModules in sequence, each branch with
    ``blocks[b]`` residual blocks of ``channels[b]`` channels."""

    modules: int
    blocks: tuple[int, ...]
    channels: tuple[int, ...]

    @property
    def branches(self) -> int:
        return len(self.channels)


@dataclass(frozen=True)
class HRNetSpec:
    """A whole HRNetV2 backbone + segmentation head (kernel-1 final conv, as in all official
    configs)."""

    name: str
    stem_blocks: int  # Bottleneck blocks in stage 1 ("layer1")
    stem_channels: int  # their bottleneck width; stage 1 outputs 4x this
    stages: tuple[StageSpec, StageSpec, StageSpec]
    final_conv_kernel: int = 1

    @property
    def head_channels(self) -> int:
        """Channels of the concatenated branches that feed the head."""
        return sum(self.stages[-1].channels)


def _standard(name: str, width: int, blocks: int, stem_blocks: int, modules: tuple[int, int, int]) -> HRNetSpec:
    widths = tuple(width * 2**i for i in range(4))
    return HRNetSpec(
        name=name,
        stem_blocks=stem_blocks,
        stem_channels=64,
        stages=(
            StageSpec(modules[0], (blocks,) * 2, widths[:2]),
            StageSpec(modules[1], (blocks,) * 3, widths[:3]),
            StageSpec(modules[2], (blocks,) * 4, widths[:4]),
        ),
    )


ARCHS: dict[str, HRNetSpec] = {
    "w18_small_v1": HRNetSpec(
        name="w18_small_v1",
        stem_blocks=1,
        stem_channels=32,
        stages=(
            StageSpec(1, (2, 2), (16, 32)),
            StageSpec(1, (2, 2, 2), (16, 32, 64)),
            StageSpec(1, (2, 2, 2, 2), (16, 32, 64, 128)),
        ),
    ),
    "w18_small_v2": _standard("w18_small_v2", 18, blocks=2, stem_blocks=2, modules=(1, 3, 2)),
    "w18": _standard("w18", 18, blocks=4, stem_blocks=4, modules=(1, 4, 3)),
    "w32": _standard("w32", 32, blocks=4, stem_blocks=4, modules=(1, 4, 3)),
    "w48": _standard("w48", 48, blocks=4, stem_blocks=4, modules=(1, 4, 3)),
}


def get_arch(name: str) -> HRNetSpec:
    """The spec named *name*; :class:`UnknownArchError` listing the known names otherwise."""
    key = name.lower().replace("-", "_")
    if key.startswith("hrnetv2_"):
        key = key[len("hrnetv2_") :]
    if key not in ARCHS:
        raise UnknownArchError(f"unknown HRNet arch {name!r}; choose one of: {', '.join(ARCHS)}")
    return ARCHS[key]

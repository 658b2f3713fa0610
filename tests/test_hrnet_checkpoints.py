"""HRNet architectures match the official model's layout; checkpoints load in every form users have
them, and every bad one is refused with a message that names the problem and the fix."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from edgeseg.converters.checkpoint import layout_of
from edgeseg.converters.hrnet.archs import ARCHS
from edgeseg.converters.hrnet.export import build_hrnet
from edgeseg.converters.hrnet.model import HRNetV2
from edgeseg.errors import CheckpointError, CheckpointMismatchError, UnknownArchError

OFFICIAL = json.loads((Path(__file__).parent / "data" / "hrnet_official_layout.json").read_text())


class TrainingConfig:
    """Stands for the config objects some training scripts pickle next to the weights."""

    lr = 0.01


def test_official_layout_file_covers_every_arch() -> None:
    assert set(OFFICIAL) == set(ARCHS)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_keys_and_shapes_match_official_model(arch: str) -> None:
    """The official seg_hrnet.py (pytorch-v1.1 branch), built for 19 classes, has this many keys
    and parameters, and this digest of its ordered ``name:shape`` list (tests/data, generated once
    from the official code)."""
    with torch.device("meta"):
        model = HRNetV2(ARCHS[arch], 19)
    rows = [f"{k}:{'x'.join(map(str, shape))}" for k, shape in layout_of(model).items()]
    ref = OFFICIAL[arch]
    assert len(rows) == ref["num_keys"]
    assert rows[0] == ref["first"] and rows[-1] == ref["last"] and ref["sample"] in rows
    params = sum(p.numel() for p in model.parameters())
    assert params == ref["num_params"]
    assert hashlib.sha256("\n".join(rows).encode()).hexdigest() == ref["sha256"]


def _random_state(arch: str = "w18_small_v1", num_classes: int = 19, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return HRNetV2(ARCHS[arch], num_classes).state_dict()


def _assert_loaded(model: HRNetV2, sd: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    for k, v in sd.items():
        assert torch.equal(got[k], v), k


def test_official_training_checkpoint_loads(tmp_path: Path) -> None:
    """Official files: FullModel keys prefixed ``model.``, the loss's class weights alongside."""
    sd = _random_state()
    official = {f"model.{k}": v for k, v in sd.items()}
    official["loss.criterion.weight"] = torch.ones(19)
    path = tmp_path / "official.pth"
    torch.save(official, path)
    _assert_loaded(build_hrnet("w18_small_v1", weights=path), sd)


def test_wrapped_and_old_checkpoints_load(tmp_path: Path) -> None:
    sd = _random_state()
    old = {f"model.{k}": v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": old, "epoch": 484}, path)
    model = build_hrnet("w18_small_v1", num_classes=19, weights=path)
    _assert_loaded(model, {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")})


def test_plain_and_dataparallel_state_dicts_load(tmp_path: Path) -> None:
    sd = _random_state(num_classes=5)
    torch.save(sd, tmp_path / "plain.pth")
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "dp.pth")
    for name in ("plain.pth", "dp.pth"):
        model = build_hrnet("w18_small_v1", weights=tmp_path / name)  # class count read from the file
        assert model.num_classes == 5
        _assert_loaded(model, sd)


def test_unknown_arch() -> None:
    with pytest.raises(UnknownArchError) as info:
        build_hrnet("w99", 19)
    assert str(info.value) == "unknown HRNet arch 'w99'; choose one of: w18_small_v1, w18_small_v2, w18, w32, w48"


def test_checkpoint_of_another_arch_names_keys_and_the_fitting_arch(tmp_path: Path) -> None:
    torch.save(_random_state("w18_small_v1"), tmp_path / "v1.pth")
    with pytest.raises(CheckpointMismatchError) as info:
        build_hrnet("w18_small_v2", 19, weights=tmp_path / "v1.pth")
    msg = str(info.value)
    assert msg.startswith("checkpoint does not fit hrnet w18_small_v2 with 19 classes: ")
    assert "first: layer1.0.conv1.weight: checkpoint (32, 64, 1, 1) vs model (64, 64, 1, 1)" in msg
    assert "missing key(s), first: layer1.1.conv1.weight" in msg
    assert msg.endswith("; it fits --arch w18_small_v1 --num-classes 19")


def test_checkpoint_with_another_class_count(tmp_path: Path) -> None:
    torch.save(_random_state("w18_small_v1", num_classes=21), tmp_path / "c21.pth")
    with pytest.raises(CheckpointMismatchError) as info:
        build_hrnet("w18_small_v1", 19, weights=tmp_path / "c21.pth")
    assert str(info.value) == (
        "checkpoint does not fit hrnet w18_small_v1 with 19 classes: 2 shape mismatch(es), first: "
        "last_layer.3.weight: checkpoint (21, 240, 1, 1) vs model (19, 240, 1, 1); "
        "last_layer.3.bias: checkpoint (21,) vs model (19,); it fits --arch w18_small_v1 --num-classes 21"
    )


def test_file_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match=r"^notes\.pth: not a PyTorch checkpoint \("):
        build_hrnet("w18_small_v1", 19, weights=path)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r"^list\.pth: not a checkpoint: holds list, expected a dict of tensors$"):
        build_hrnet("w18_small_v1", 19, weights=tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r"missing\.pth: no such weights file$"):
        build_hrnet("w18_small_v1", 19, weights=tmp_path / "missing.pth")


def test_checkpoint_needing_full_pickle_is_refused_unless_trusted(tmp_path: Path) -> None:
    sd = _random_state()
    path = tmp_path / "pickled.pth"
    torch.save({"state_dict": sd, "config": TrainingConfig()}, path)
    with pytest.raises(CheckpointError) as info:
        build_hrnet("w18_small_v1", 19, weights=path)
    assert str(info.value) == (
        "pickled.pth: refused: it needs full pickle loading, which can run arbitrary code, and "
        "torch.load(weights_only=True) rejects it; if you trust the file, pass --trust-checkpoint "
        "(Python: allow_pickle=True)"
    )
    _assert_loaded(build_hrnet("w18_small_v1", 19, weights=path, allow_pickle=True), sd)

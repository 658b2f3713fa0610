"""`edgeseg compare`: parity reports against the PyTorch model, passing and failing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import edgeseg.cli as cli
from tests.conftest import ExportedHRNet, ExportedMaskRCNN


def test_compare_hrnet_with_its_weights_passes(hrnet_small: ExportedHRNet, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "hrnet.pt"
    torch.save(hrnet_small.model.state_dict(), weights)  # type: ignore[attr-defined]
    assert cli.main(["compare", str(hrnet_small.path), "--weights", str(weights), "--frames", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[:3]] == ["logits", "label", "label"]
    assert all(line.endswith("ok") for line in out[:3])
    assert out[-1] == "PASS: edgeseg vs PyTorch on 2 frame(s)"


def test_compare_with_other_weights_fails(hrnet_small: ExportedHRNet, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    state = {k: v.clone() for k, v in hrnet_small.model.state_dict().items()}  # type: ignore[attr-defined]
    head = next(k for k in state if k.endswith("weight") and state[k].ndim == 4 and state[k].shape[0] == 19)
    state[head] += 0.5 * torch.randn_like(state[head])
    weights = tmp_path / "other.pt"
    torch.save(state, weights)
    assert cli.main(["compare", str(hrnet_small.path), "--weights", str(weights), "--frames", "1"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("logits      max relative error") and out[0].endswith("FAIL")
    assert out[-1].startswith("FAIL (") and out[-1].endswith("edgeseg vs PyTorch on 1 frame(s)")


def test_compare_maskrcnn_random_weights_passes(maskrcnn_cli: ExportedMaskRCNN,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`edgeseg convert maskrcnn --random-weights` is seeded: compare rebuilds the same model."""
    assert cli.main(["compare", str(maskrcnn_cli.path), "--random-weights", "--frames", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[:5]] == ["detections", "labels", "boxes", "scores", "masks"]
    assert out[-1] == "PASS: edgeseg vs PyTorch on 1 frame(s)"


def test_compare_needs_weights(hrnet_small: ExportedHRNet, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["compare", str(hrnet_small.path)]) == 2
    assert "give --weights PATH, or --random-weights" in capsys.readouterr().err

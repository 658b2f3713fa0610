"""`edgeseg eval`: a model scored against its own predictions gets 1.0; against shuffled labels, less."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import edgeseg
import edgeseg.cli as cli
from tests.conftest import ExportedHRNet, fit


def test_semantic_eval_against_own_predictions_and_shuffled(hrnet_small: ExportedHRNet, photos: list[np.ndarray],
                                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = edgeseg.load(hrnet_small.path)
    images, own, shuffled = tmp_path / "images", tmp_path / "own", tmp_path / "shuffled"
    for folder in (images, own, shuffled):
        folder.mkdir()
    permutation = np.roll(np.arange(256, dtype=np.uint8), 1)  # every class id -> the next
    for i, photo in enumerate(photos[:3]):
        frame = fit(photo, hrnet_small.frame_hw)
        labels = model.semantic(frame).label_map
        cv2.imwrite(str(images / f"{i}.png"), frame)
        cv2.imwrite(str(own / f"{i}.png"), labels)
        cv2.imwrite(str(shuffled / f"{i}.png"), permutation[labels])
    assert cli.main(["eval", str(hrnet_small.path), "--images", str(images), "--labels", str(own), "-q"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "small.onnx on 3 image(s): mIoU 1.0000, pixel accuracy 1.0000"
    assert cli.main(["eval", str(hrnet_small.path), "--images", str(images), "--labels", str(shuffled), "-q",
                     "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["mIoU"] < 0.2 and scores["images"] == 3


def test_eval_needs_the_right_annotations(hrnet_small: ExportedHRNet, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["eval", str(hrnet_small.path), "--images", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "edgeseg: error: a semantic model is scored against label images: give --labels FOLDER")

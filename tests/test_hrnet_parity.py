"""The exported graph, run through edgeseg.load (ONNX Runtime), against PyTorch eager with the
official pre-processing, on real photos."""

from __future__ import annotations

import numpy as np
import pytest

import edgeseg
from tests.conftest import ExportedHRNet, fit
from tests.hrnet_helpers import reference_outputs

MARGIN = 1e-3  # pixels whose top-2 logits are closer than this may legitimately flip


def relative_error(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got - ref| over max |ref|: the error relative to the logits' range."""
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def agreement_where_decided(labels: np.ndarray, up_logits: np.ndarray, ref_labels: np.ndarray) -> tuple[float, int]:
    top2 = np.sort(up_logits, axis=0)[-2:]
    decided = (top2[1] - top2[0]) >= MARGIN
    return float((labels[decided] == ref_labels[decided]).mean()), int(decided.sum())


@pytest.mark.parametrize("which", ["hrnet_small", "hrnet_resized"])
def test_logits_and_label_maps_match_pytorch(which: str, request: pytest.FixtureRequest,
                                             photos: list[np.ndarray]) -> None:
    exported: ExportedHRNet = request.getfixturevalue(which)
    model = edgeseg.load(exported.path, threads=2)
    logits_name = model.metadata.outputs["logits"]
    for photo in photos:
        frame = fit(photo, exported.frame_hw)
        out = model.run_outputs(frame, [logits_name, "label_map"])
        ref_logits, ref_up, ref_labels = reference_outputs(exported.model, frame, exported.input_hw)  # type: ignore[arg-type]
        assert out[logits_name].shape == ref_logits.shape
        err = relative_error(out[logits_name], ref_logits)
        assert err <= 1e-4, f"logits relative error {err:.2e}"
        agree, decided = agreement_where_decided(out["label_map"], ref_up, ref_labels)
        assert decided > 0.9 * frame.shape[0] * frame.shape[1]
        assert agree >= 0.9999, f"label maps agree on {agree:.6f} of {decided} decided pixels"
        # The public call returns the same label map as the raw graph output.
        np.testing.assert_array_equal(model.semantic(frame).label_map, out["label_map"])


def test_label_maps_are_not_trivial(hrnet_small: ExportedHRNet, photos: list[np.ndarray]) -> None:
    """Guards the parity test against a degenerate model (one class everywhere)."""
    model = edgeseg.load(hrnet_small.path)
    classes = set()
    for photo in photos:
        classes |= set(np.unique(model.semantic(fit(photo, hrnet_small.frame_hw)).label_map).tolist())
    assert len(classes) >= 3


def test_frame_of_another_size_maps_back(hrnet_small: ExportedHRNet, photos: list[np.ndarray]) -> None:
    model = edgeseg.load(hrnet_small.path)
    photo = photos[1]  # coffee, 400x600: larger than the 320x480 model frame
    result = model.semantic(photo)
    assert result.label_map.shape == photo.shape[:2]
    assert result.label_map.dtype == np.uint8
    at_model_size = model.semantic(fit(photo, hrnet_small.frame_hw)).label_map
    import cv2

    expected = cv2.resize(at_model_size, (photo.shape[1], photo.shape[0]), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(result.label_map, expected)


def test_metadata_describes_the_graph(hrnet_resized: ExportedHRNet) -> None:
    model = edgeseg.load(hrnet_resized.path)
    m = model.metadata
    assert (m.kind, m.arch, m.num_classes) == ("semantic", "hrnetv2_w18_small_v2", 7)
    assert m.frame_hw == (301, 453) and m.input_hw == (224, 320)
    assert m.extra["align_corners"] is True
    assert m.preprocessing.mean == (0.485, 0.456, 0.406) and m.preprocessing.std == (0.229, 0.224, 0.225)
    assert m.classes[0] == "class_0" and len(m.palette) == 7
    inputs = {s.name: s for s in model.backend.inputs}
    assert inputs["frame"].shape == (301, 453, 3) and inputs["frame"].dtype == np.uint8
    outputs = {s.name: s for s in model.backend.outputs}
    assert outputs["label_map"].shape == (301, 453) and outputs["label_map"].dtype == np.uint8
    assert outputs["logits"].shape == (1, 7, 56, 80)

"""edgeseg.evaluation: COCO AP and mIoU on a small generated data set, with oracle predictors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.classes import generated_palette
from edgeseg.errors import ArgumentError, BackendUnavailableError, SourceError
from edgeseg.evaluation import coco_instance_ap, semantic_miou
from edgeseg.result import InstanceResult, SemanticResult
from edgeseg.scenes import CLASS_NAMES, VAL_INDEX_OFFSET, Scene, SceneSpec, make_scene, write_dataset

SPEC = SceneSpec(size=(96, 128), objects=(3, 7), object_size=(0.2, 0.45), min_visible_area=30)
SEED = 3
N_VAL = 6
NAMES = ("background", *CLASS_NAMES)
PALETTE = generated_palette(len(NAMES))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("evaluation") / "scenes"
    return write_dataset(root, 0, N_VAL, SEED, SPEC.size, spec=SPEC) / "val"


@pytest.fixture(scope="module")
def truth() -> dict[bytes, Scene]:
    """Ground truth by image bytes, so an oracle can recognise the frame it is given."""
    scenes = [make_scene(SPEC, SEED, VAL_INDEX_OFFSET + i) for i in range(N_VAL)]
    return {s.image.tobytes(): s for s in scenes}


Edit = Callable[[np.ndarray], np.ndarray]


def instance_oracle(truth: dict[bytes, Scene], relabel: Edit = lambda x: x,
                    mask_edit: Edit = lambda m: m) -> Callable[[np.ndarray], InstanceResult]:
    def predict(frame: np.ndarray) -> InstanceResult:
        s = truth[frame.tobytes()]
        n = len(s.labels)
        return InstanceResult(
            boxes=s.boxes.copy(), scores=np.linspace(1.0, 0.5, n, dtype=np.float32),
            labels=relabel(s.labels).astype(np.int32), masks=mask_edit(s.masks.astype(np.uint8)),
            classes=NAMES, palette=PALETTE,
        )
    return predict


def semantic_oracle(truth: dict[bytes, Scene],
                    edit: Callable[[np.ndarray], np.ndarray] = lambda x: x) -> Callable[[np.ndarray], SemanticResult]:
    def predict(frame: np.ndarray) -> SemanticResult:
        return SemanticResult(edit(truth[frame.tobytes()].label_map.copy()), NAMES, PALETTE)
    return predict


def test_import_needs_neither_torch_nor_pycocotools() -> None:
    code = "import sys, edgeseg.evaluation; print('torch' in sys.modules, 'pycocotools' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_perfect_instances_score_one(dataset: Path, truth: dict[bytes, Scene]) -> None:
    m = coco_instance_ap(instance_oracle(truth), dataset / "instances.json", dataset / "images")
    assert m["images"] == N_VAL
    for key in ("mask_AP", "mask_AP50", "mask_AP75", "box_AP", "box_AP50", "box_AP75"):
        assert m[key] == pytest.approx(1.0), key


def test_wrong_labels_score_near_zero(dataset: Path, truth: dict[bytes, Scene]) -> None:
    shifted = instance_oracle(truth, relabel=lambda x: x % len(CLASS_NAMES) + 1)  # every label wrong
    m = coco_instance_ap(shifted, dataset / "instances.json", dataset / "images")
    assert m["mask_AP"] < 0.05 and m["box_AP"] < 0.05


def test_coarse_masks_lower_mask_ap_only(dataset: Path, truth: dict[bytes, Scene]) -> None:
    kernel = np.ones((5, 5), np.uint8)
    eroded = instance_oracle(truth, mask_edit=lambda ms: np.stack([cv2.erode(m, kernel) for m in ms]))
    m = coco_instance_ap(eroded, dataset / "instances.json", dataset / "images")
    assert m["box_AP"] == pytest.approx(1.0)
    assert 0.05 < m["mask_AP"] < 0.9


def test_no_detections_score_zero(dataset: Path) -> None:
    def nothing(frame: np.ndarray) -> InstanceResult:
        h, w = frame.shape[:2]
        return InstanceResult(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32),
                              np.zeros((0, h, w), np.uint8), NAMES, PALETTE)
    m = coco_instance_ap(nothing, dataset / "instances.json", dataset / "images")
    assert m["mask_AP"] == 0.0 and m["box_AP"] == 0.0


def test_category_map_and_max_images(dataset: Path, truth: dict[bytes, Scene]) -> None:
    # The predictor's labels are off by 10; the map brings them back to the data set's ids.
    off = instance_oracle(truth, relabel=lambda x: x + 10)
    m = coco_instance_ap(off, dataset / "instances.json", dataset / "images",
                         category_map={k + 10: k for k in range(1, 6)}, max_images=2)
    assert m["images"] == 2 and m["mask_AP"] == pytest.approx(1.0)


def test_missing_pycocotools_says_how_to_install(dataset: Path, truth: dict[bytes, Scene],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("pycocotools", "pycocotools.mask", "pycocotools.coco", "pycocotools.cocoeval"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(BackendUnavailableError) as info:
        coco_instance_ap(instance_oracle(truth), dataset / "instances.json", dataset / "images")
    assert str(info.value) == "COCO AP needs pycocotools: pip install pycocotools"


def test_semantic_result_refused_by_coco(dataset: Path, truth: dict[bytes, Scene]) -> None:
    with pytest.raises(ArgumentError, match="not an InstanceResult"):
        coco_instance_ap(semantic_oracle(truth), dataset / "instances.json", dataset / "images")


def test_perfect_label_maps_score_one(dataset: Path, truth: dict[bytes, Scene]) -> None:
    m = semantic_miou(semantic_oracle(truth), dataset / "images", dataset / "labels", len(NAMES))
    assert m["mIoU"] == 1.0 and m["pixel_accuracy"] == 1.0 and m["images"] == N_VAL
    assert list(m["per_class_IoU"]) == list(NAMES)
    assert all(v == 1.0 for v in m["per_class_IoU"].values())


def test_shuffled_label_maps_score_low(dataset: Path, truth: dict[bytes, Scene]) -> None:
    perm = np.array([0, 2, 3, 4, 5, 1], np.uint8)  # background kept, every object class wrong
    m = semantic_miou(semantic_oracle(truth, lambda x: perm[x]), dataset / "images", dataset / "labels", len(NAMES))
    assert m["per_class_IoU"]["background"] == 1.0
    assert all(m["per_class_IoU"][c] == 0.0 for c in CLASS_NAMES if m["per_class_IoU"][c] is not None)
    assert m["mIoU"] < 0.25


def test_confusion_matrix_by_hand(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "a.png"), np.zeros((2, 4, 3), np.uint8))
    # labels: class 0, 1, ignored (255), unmapped (7 -> ignored with the map below)
    cv2.imwrite(str(tmp_path / "lab" / "a.png"), np.array([[10, 10, 11, 11], [255, 7, 11, 10]], np.uint8))
    pred = np.array([[0, 1, 1, 1], [1, 1, 9, 0]], np.uint8)  # 9: outside the classes, counts as wrong

    def predict(frame: np.ndarray) -> SemanticResult:
        return SemanticResult(pred, ("a", "b"), PALETTE[:2])

    m = semantic_miou(predict, tmp_path / "img", tmp_path / "lab", 2, class_map={10: 0, 11: 1})
    # class 0: gt at (0,0),(0,1),(1,3); predicted 0 at (0,0),(1,3) -> TP 2, FN 1, FP 0 -> 2/3
    # class 1: gt at (0,2),(0,3),(1,2); predicted 1 at (0,2),(0,3), plus FP at (0,1) -> 2 / (2 + 1 + 1)
    assert m["per_class_IoU"] == {"a": pytest.approx(2 / 3), "b": pytest.approx(0.5)}
    assert m["confusion"] == [[2, 1], [0, 2]]
    assert m["pixel_accuracy"] == pytest.approx(4 / 6)


def test_absent_class_left_out_of_the_mean(dataset: Path, truth: dict[bytes, Scene]) -> None:
    m = semantic_miou(semantic_oracle(truth), dataset / "images", dataset / "labels", len(NAMES) + 1)
    assert m["per_class_IoU"]["6"] is None and m["mIoU"] == 1.0


def test_missing_label_map(tmp_path: Path, dataset: Path, truth: dict[bytes, Scene]) -> None:
    (tmp_path / "labels").mkdir()
    with pytest.raises(SourceError, match=r"label map .*000000\.png for 000000\.png is missing"):
        semantic_miou(semantic_oracle(truth), dataset / "images", tmp_path / "labels", len(NAMES))


def test_instance_json_is_what_pycocotools_reads(dataset: Path) -> None:
    # The data set's uncompressed RLE and [x, y, w, h] boxes agree with pycocotools' own view.
    from pycocotools import mask as mask_utils  # type: ignore[import-untyped]

    coco = json.loads((dataset / "instances.json").read_text())
    ann = coco["annotations"][0]
    rle = mask_utils.frPyObjects(ann["segmentation"], *ann["segmentation"]["size"])
    assert int(mask_utils.area(rle)) == ann["area"]
    assert [round(v) for v in mask_utils.toBbox(rle)] == ann["bbox"]

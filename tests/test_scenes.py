"""The generated scene data set: deterministic, exact annotations, atomic writers."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg import scenes
from edgeseg.errors import ArgumentError, OutputError
from edgeseg.scenes import (
    CLASS_NAMES,
    VAL_INDEX_OFFSET,
    Scene,
    SceneSpec,
    make_scene,
    make_scene_clip,
    mask_to_rle,
    rle_to_mask,
    scene_clip,
    write_dataset,
)

# Small frames and many objects: quick, and plenty of occlusion and cut edges.
SPEC = SceneSpec(size=(96, 128), objects=(4, 10), object_size=(0.2, 0.5), min_visible_area=30)


def assert_same_scene(a: Scene, b: Scene) -> None:
    for name in ("image", "masks", "boxes", "labels", "label_map"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), name


def decode_rle(rle: dict, h: int, w: int) -> np.ndarray:
    """Independent decoder of COCO's uncompressed RLE (column-major runs, zeros first)."""
    assert rle["size"] == [h, w]
    flat = np.zeros(h * w, bool)
    pos, value = 0, False
    for run in rle["counts"]:
        flat[pos : pos + run] = value
        pos += run
        value = not value
    assert pos == h * w
    return flat.reshape(w, h).T


def test_import_needs_neither_torch_nor_skimage() -> None:
    code = "import sys, edgeseg.scenes; print('torch' in sys.modules, 'skimage' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_same_seed_and_index_give_identical_scenes() -> None:
    assert_same_scene(make_scene(SPEC, 7, 3), make_scene(SPEC, 7, 3))
    a, b, c = make_scene(SPEC, 7, 3), make_scene(SPEC, 7, 4), make_scene(SPEC, 8, 3)
    assert not np.array_equal(a.image, b.image)
    assert not np.array_equal(a.image, c.image)


def test_scenes_do_not_depend_on_generation_order() -> None:
    forward = [make_scene(SPEC, 1, i) for i in range(6)]
    backward = [make_scene(SPEC, 1, i) for i in reversed(range(6))][::-1]
    make_scene(SceneSpec(size=(64, 64)), 99, 0)  # anything in between
    for i in (5, 2):
        assert_same_scene(forward[i], make_scene(SPEC, 1, i))
    for f, b in zip(forward, backward, strict=True):
        assert_same_scene(f, b)


def test_annotations_are_exact() -> None:
    h, w = SPEC.size
    counts = np.zeros(len(CLASS_NAMES) + 1, int)
    touches_edge = 0
    for index in range(25):
        scene = make_scene(SPEC, 2, index)
        n = len(scene.labels)
        assert scene.image.shape == (h, w, 3) and scene.image.dtype == np.uint8
        assert scene.masks.shape == (n, h, w) and scene.masks.dtype == bool
        assert scene.boxes.shape == (n, 4) and scene.boxes.dtype == np.float32
        assert scene.labels.dtype == np.int64 and scene.label_map.dtype == np.uint8
        assert scene.label_map.shape == (h, w)
        # Visible parts are disjoint, and painted with their labels they are the label map.
        assert scene.masks.sum(axis=0).max(initial=0) <= 1
        painted = np.zeros((h, w), np.uint8)
        for mask, box, label in zip(scene.masks, scene.boxes, scene.labels, strict=True):
            assert 1 <= label <= len(CLASS_NAMES)
            assert mask.sum() >= SPEC.min_visible_area
            ys, xs = np.nonzero(mask)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            painted[mask] = label
            counts[label] += 1
            touches_edge += int(box[0] == 0 or box[1] == 0 or box[2] == w or box[3] == h)
        np.testing.assert_array_equal(scene.label_map, painted)
    assert (counts[1:] > 0).all(), counts  # every class shows up
    assert touches_edge > 0


def test_hidden_objects_are_removed_from_the_image() -> None:
    # Without a background photo's variation, every pixel that differs from the object-free
    # background must belong to an annotated object.
    spec = SceneSpec(size=(96, 128), objects=(12, 12), object_size=(0.3, 0.6), min_visible_area=200,
                     min_visible_fraction=0.5)
    for index in range(5):
        scene = make_scene(spec, 4, index)
        empty = make_scene(SceneSpec(size=spec.size, objects=(0, 0)), 4, index)
        changed = (scene.image != empty.image).any(axis=2)
        assert not (changed & (scene.label_map == 0)).any()
        for mask in scene.masks:
            assert mask.sum() >= 200


def test_class_subset_gets_ids_from_one() -> None:
    spec = SceneSpec(size=(64, 64), classes=("ring", "star"))
    labels = np.concatenate([make_scene(spec, 0, i).labels for i in range(10)])
    assert set(labels.tolist()) == {1, 2}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": ("circle", "hexagon")},
         "scene classes ['circle', 'hexagon'] must be distinct names from "
         "['circle', 'triangle', 'square', 'star', 'ring']"),
        ({"objects": (5, 2)}, "object count range (5, 2) must satisfy 0 <= min <= max <= 255"),
        ({"size": (8, 100)}, "scene size 8x100 is too small; use at least 16x16 pixels"),
    ],
)
def test_bad_specs(kwargs: dict, message: str) -> None:
    with pytest.raises(ArgumentError) as info:
        SceneSpec(**kwargs)
    assert str(info.value) == message


def test_rle_round_trip() -> None:
    rng = np.random.default_rng(0)
    cases = [np.zeros((5, 7), bool), np.ones((5, 7), bool), rng.random((6, 9)) < 0.5, make_scene(SPEC, 0, 0).masks[0]]
    cases[2][0, 0] = True  # a mask that starts with ones: counts start with an empty run of zeros
    for mask in cases:
        rle = mask_to_rle(mask)
        assert rle["size"] == list(mask.shape)
        assert all(isinstance(c, int) for c in rle["counts"])
        np.testing.assert_array_equal(decode_rle(rle, *mask.shape), mask)
        np.testing.assert_array_equal(rle_to_mask(rle), mask)
    assert mask_to_rle(cases[2])["counts"][0] == 0
    # Column-major: the second pixel in order is row 1 of column 0.
    assert mask_to_rle(np.array([[0, 0], [1, 0]], bool))["counts"] == [1, 1, 2]


def read_json(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def test_write_dataset(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "shapes", n_train=3, n_val=2, seed=5, size=(96, 128), spec=SPEC)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes"]  # no temporary left beside it
    info = read_json(root / "dataset.json")
    assert info["seed"] == 5 and info["size"] == [96, 128] and info["classes"] == list(CLASS_NAMES)
    assert info["splits"]["train"]["images"] == 3 and info["splits"]["val"]["images"] == 2
    for split, first, count in (("train", 0, 3), ("val", VAL_INDEX_OFFSET, 2)):
        coco = read_json(root / split / "instances.json")
        assert [c["id"] for c in coco["categories"]] == [1, 2, 3, 4, 5]
        assert [c["name"] for c in coco["categories"]] == list(CLASS_NAMES)
        assert [im["id"] for im in coco["images"]] == list(range(1, count + 1))
        ann_ids = [a["id"] for a in coco["annotations"]]
        assert len(set(ann_ids)) == len(ann_ids)
        assert info["splits"][split]["instances"] == len(ann_ids)
        for im in coco["images"]:
            assert im["scene_index"] == first + im["id"] - 1
            scene = make_scene(SPEC, 5, im["scene_index"])
            image = cv2.imread(str(root / split / "images" / im["file_name"]), cv2.IMREAD_UNCHANGED)
            labels = cv2.imread(str(root / split / "labels" / im["file_name"]), cv2.IMREAD_UNCHANGED)
            assert image is not None and labels is not None
            np.testing.assert_array_equal(image, scene.image)
            assert labels.dtype == np.uint8
            np.testing.assert_array_equal(labels, scene.label_map)
            anns = [a for a in coco["annotations"] if a["image_id"] == im["id"]]
            assert len(anns) == len(scene.labels)
            for a, mask, box, label in zip(anns, scene.masks, scene.boxes, scene.labels, strict=True):
                decoded = decode_rle(a["segmentation"], im["height"], im["width"])
                np.testing.assert_array_equal(decoded, mask)
                x1, y1, x2, y2 = box.tolist()
                assert a["bbox"] == [x1, y1, x2 - x1, y2 - y1]
                assert a["area"] == int(mask.sum()) and a["category_id"] == label and a["iscrowd"] == 0


def test_write_dataset_with_pycocotools(tmp_path: Path) -> None:
    mask_utils = pytest.importorskip("pycocotools.mask")
    coco_mod = pytest.importorskip("pycocotools.coco")
    root = write_dataset(tmp_path / "d", n_train=2, n_val=0, seed=1, size=(64, 80))
    coco = coco_mod.COCO(str(root / "train" / "instances.json"))
    for ann in coco.loadAnns(coco.getAnnIds()):
        scene = make_scene(SceneSpec(size=(64, 80)), 1, ann["image_id"] - 1)
        mask = coco.annToMask(ann).astype(bool)
        assert any(np.array_equal(mask, m) for m in scene.masks)
        rle = mask_utils.frPyObjects(ann["segmentation"], 64, 80)
        assert mask_utils.toBbox(rle).tolist() == ann["bbox"]
        assert mask_utils.area(rle) == ann["area"]


def test_written_dataset_is_byte_identical(tmp_path: Path) -> None:
    a = write_dataset(tmp_path / "a", 2, 1, seed=3, size=(64, 64))
    b = write_dataset(tmp_path / "b", 2, 1, seed=3, size=(64, 64))
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert len(files_a) == 2 * 2 + 1 * 2 + 3
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_write_dataset_refuses_to_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write_dataset(root, 1, 1, seed=0, size=(32, 32))
    before = (root / "dataset.json").read_bytes()
    with pytest.raises(OutputError) as info:
        write_dataset(root, 2, 1, seed=1, size=(32, 32))
    assert str(info.value) == (
        f"cannot write a data set to {root}: the folder is not empty; choose another folder "
        "or pass overwrite=True to replace it"
    )
    assert (root / "dataset.json").read_bytes() == before
    write_dataset(root, 2, 1, seed=1, size=(32, 32), overwrite=True)
    assert read_json(root / "dataset.json")["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    # An empty folder is simply filled.
    (tmp_path / "empty").mkdir()
    write_dataset(tmp_path / "empty", 1, 0, size=(32, 32))
    assert (tmp_path / "empty" / "dataset.json").is_file()


def test_write_dataset_bad_places(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError) as info:
        write_dataset(tmp_path / "file", 1, 0)
    assert str(info.value) == f"cannot write a data set to {tmp_path / 'file'}: it is a file; choose a folder name"
    with pytest.raises(OutputError) as info:
        write_dataset(tmp_path / "no" / "d", 1, 0)
    assert str(info.value) == (
        f"cannot write {tmp_path / 'no' / 'd'}: folder {tmp_path / 'no'} does not exist; "
        "create it or choose another path"
    )


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type) -> None:
    real = scenes.make_scene
    calls = []

    def failing(spec: SceneSpec, seed: int, index: int) -> Scene:
        calls.append(index)
        if len(calls) == 3:
            raise error("interrupted")
        return real(spec, seed, index)

    monkeypatch.setattr(scenes, "make_scene", failing)
    with pytest.raises(error):
        write_dataset(tmp_path / "d", 2, 2, size=(32, 32))
    assert list(tmp_path.iterdir()) == []
    # A failed overwrite keeps the old data set.
    monkeypatch.setattr(scenes, "make_scene", real)
    write_dataset(tmp_path / "d", 1, 0, seed=0, size=(32, 32))
    monkeypatch.setattr(scenes, "make_scene", failing)
    calls.clear()
    with pytest.raises(error):
        write_dataset(tmp_path / "d", 2, 2, seed=9, size=(32, 32), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    assert read_json(tmp_path / "d" / "dataset.json")["seed"] == 0


def test_scene_clip_moves_smoothly() -> None:
    spec = SceneSpec(size=(72, 96), objects=(3, 3), object_size=(0.3, 0.4), min_visible_area=1)
    frames = list(scene_clip(spec, 0, 12))
    again = list(scene_clip(spec, 0, 12))
    for a, b in zip(frames, again, strict=True):
        assert_same_scene(a, b)
    assert len(frames) == 12
    for a, b in itertools.pairwise(frames):
        assert not np.array_equal(a.label_map, b.label_map)  # the objects move
        # ... but only a little between frames.
        assert np.mean(a.label_map != b.label_map) < 0.1
    with pytest.raises(ArgumentError, match="a clip needs at least 1 frame, got 0"):
        scene_clip(spec, 0, 0)


def test_make_scene_clip(tmp_path: Path) -> None:
    path = make_scene_clip(tmp_path / "clip.mp4", frames=20, size=(64, 96), fps=10.0, seed=2)
    assert path == tmp_path / "clip.mp4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 20
    assert frames[0].shape == (64, 96, 3)
    with pytest.raises(OutputError, match=r"clip\.png: the scene clip is a video; name it \.mp4"):
        make_scene_clip(tmp_path / "clip.png", frames=2)


def test_failed_clip_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = scenes._compose
    calls = []

    def failing(*args: object, **kwargs: object) -> Scene:
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(scenes, "_compose", failing)
    with pytest.raises(KeyboardInterrupt):
        make_scene_clip(tmp_path / "clip.mp4", frames=10, size=(48, 64))
    assert list(tmp_path.iterdir()) == []

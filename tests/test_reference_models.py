"""The reference models: the light Mask R-CNN arch converts and matches torchvision, the shipped
weights load strictly and still segment the generated scenes, and the demo runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import edgeseg
from edgeseg.converters.checkpoint import read_state_dict
from edgeseg.converters.maskrcnn.archs import arch_key, build_arch
from edgeseg.converters.maskrcnn.export import export_maskrcnn
from edgeseg.converters.maskrcnn.graph import GraphOptions
from edgeseg.converters.parity import box_iou, mask_iou
from edgeseg.converters.reference import (
    HRNET,
    MASKRCNN,
    SCENE_CLASSES,
    WEIGHTS_DIR,
    hrnet_predictor,
    maskrcnn_predictor,
    reference_hrnet,
    reference_maskrcnn,
    scene_classes,
)
from edgeseg.evaluation import coco_instance_ap, semantic_miou
from edgeseg.result import InstanceResult
from edgeseg.scenes import VAL_INDEX_OFFSET, SceneSpec, make_scene, write_dataset

BUDGET_BYTES = 15_000_000  # both shipped weight files together
VAL_SCENES = 20


def assert_same_detections(ours: InstanceResult, ref: InstanceResult, top: int) -> None:
    assert len(ours) >= top and len(ref) >= top, (len(ours), len(ref))
    np.testing.assert_array_equal(ours.labels[:top], ref.labels[:top])
    assert box_iou(ours.boxes[:top], ref.boxes[:top]).min() >= 0.98
    np.testing.assert_allclose(ours.scores[:top], ref.scores[:top], atol=1e-3)
    ious = mask_iou(ours.masks[:top], ref.masks[:top])
    assert ious.mean() >= 0.98, f"mean mask IoU {ious.mean():.4f} (min {ious.min():.4f})"


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


def test_lite_arch_is_a_documented_name() -> None:
    assert arch_key("maskrcnn_resnet18-fpn-lite") == "resnet18_fpn_lite" == MASKRCNN.arch
    model = build_arch("resnet18_fpn_lite", 6)
    assert 3_800_000 < sum(p.numel() for p in model.parameters()) < 4_200_000
    # four FPN maps (strides 4, 8, 16 and the pooled 32), RoIAlign on the three convolutional ones
    feats = model.backbone(torch.zeros(1, 3, 64, 96))
    assert [(k, tuple(v.shape[1:])) for k, v in feats.items()] == [
        ("0", (64, 16, 24)), ("1", (64, 8, 12)), ("2", (64, 4, 6)), ("pool", (64, 2, 3))]
    assert model.roi_heads.box_roi_pool.featmap_names == ["0", "1", "2"]
    assert (model.transform.min_size, model.transform.max_size) == ((256,), 512)


def test_lite_arch_converts_and_matches_torchvision(tmp_path: Path) -> None:
    """Random weights, a frame smaller than min_size (upscaled in the graph), score threshold 0 so
    that 100 detections are compared."""
    model = build_arch("resnet18_fpn_lite", 6)
    model.roi_heads.score_thresh = 0.0
    path = tmp_path / "lite.onnx"
    export_maskrcnn(model, path, (160, 224), GraphOptions(score_thresh=0.0), arch="maskrcnn_resnet18_fpn_lite")
    onnx_model = edgeseg.load(path, threads=2)
    assert onnx_model.metadata.input_hw == (256, 358) and onnx_model.metadata.extra["padded_hw"] == [256, 384]
    frame = make_scene(SceneSpec(size=(160, 224)), 5, 0).image
    assert_same_detections(onnx_model.instances(frame), maskrcnn_predictor(model)(frame), top=50)


def test_shipped_weights_are_fp16_within_budget_and_load_strictly() -> None:
    files = [WEIGHTS_DIR / MASKRCNN.weights, WEIGHTS_DIR / HRNET.weights]
    assert sum(f.stat().st_size for f in files) <= BUDGET_BYTES
    for f in files:
        sd = torch.load(f, weights_only=True, map_location="cpu")
        assert {v.dtype for v in sd.values() if v.is_floating_point()} == {torch.float16}, f.name
        assert read_state_dict(f).keys() == sd.keys()
    # load_strict raises on any missing, unexpected or misshapen key
    assert reference_maskrcnn().roi_heads.box_predictor.cls_score.out_features == len(SCENE_CLASSES)
    assert reference_hrnet().num_classes == len(SCENE_CLASSES)


@pytest.fixture(scope="module")
def val_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reference") / "scenes"
    return write_dataset(root, 0, VAL_SCENES, 0, MASKRCNN.frame_hw) / "val"


def test_shipped_hrnet_segments_scenes(val_split: Path) -> None:
    m = semantic_miou(hrnet_predictor(reference_hrnet()), val_split / "images", val_split / "labels",
                      len(SCENE_CLASSES))
    assert m["mIoU"] >= 0.7, m["per_class_IoU"]


def test_shipped_maskrcnn_detects_scenes(val_split: Path) -> None:
    m = coco_instance_ap(maskrcnn_predictor(reference_maskrcnn()), val_split / "instances.json", val_split / "images")
    assert m["mask_AP50"] >= 0.5 and m["box_AP50"] >= 0.5, m


@pytest.fixture(scope="module")
def shipped_maskrcnn_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped Mask R-CNN converted at its training frame size (torchvision's score threshold)."""
    path = tmp_path_factory.mktemp("reference") / "scenes_maskrcnn.onnx"
    export_maskrcnn(reference_maskrcnn(), path, MASKRCNN.frame_hw, classes=scene_classes(),
                    arch=f"maskrcnn_{MASKRCNN.arch}")
    return path


def test_shipped_maskrcnn_onnx_matches_eager(shipped_maskrcnn_onnx: Path) -> None:
    model = reference_maskrcnn()
    path = shipped_maskrcnn_onnx
    onnx_model = edgeseg.load(path, threads=2)
    assert onnx_model.classes == SCENE_CLASSES
    eager = maskrcnn_predictor(model)
    for i in range(2):
        frame = make_scene(SceneSpec(size=MASKRCNN.frame_hw), 0, VAL_INDEX_OFFSET + i).image
        ours, ref = onnx_model.instances(frame), eager(frame)
        assert len(ours) == len(ref) > 0
        assert_same_detections(ours, ref, top=len(ref))


def test_demo_needs_no_torch_to_import() -> None:
    code = "import sys, edgeseg.demo, edgeseg.evaluation; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]


def test_demo_writes_an_annotated_video(tmp_path: Path) -> None:
    from edgeseg.demo import run_demo

    path = run_demo(tmp_path / "demo", frames=3, size=(144, 256), stills=1, threads=2, quiet=True)
    assert path == tmp_path / "demo" / "demo.mp4"
    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = cap.read()
    cap.release()
    assert ok and n == 3 and frame.shape == (144, 512, 3)  # Mask R-CNN | HRNet side by side
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "demo.mp4", "demo_000.png", "scenes.mp4", "scenes_hrnet_w18s1.onnx", "scenes_maskrcnn_lite.onnx"]


@pytest.mark.parametrize("kind", ["maskrcnn", "hrnet"])
def test_training_script_runs(kind: str, tmp_path: Path) -> None:
    """samples/train_reference.py end to end on a few tiny steps: weights, record, both score columns."""
    script = Path(__file__).resolve().parents[1] / "samples" / "train_reference.py"
    run = subprocess.run([sys.executable, str(script), kind, "--out", str(tmp_path), "--iters", "2", "--batch", "2",
                          "--warmup", "1", "--size", "128", "--crop", "96", "--val", "2", "--log-every", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "it 2/2" in run.stdout and "ETA" in run.stdout
    ref = MASKRCNN if kind == "maskrcnn" else HRNET
    sd = torch.load(tmp_path / ref.weights, weights_only=True)
    assert {v.dtype for v in sd.values() if v.is_floating_point()} == {torch.float16}
    record = json.loads((tmp_path / ref.weights).with_suffix(".json").read_text())
    assert record["arch"] == ref.arch and record["data"]["seed"] == 0
    assert record["data"]["train_scene_indices"] == [0, 3]
    key = "mask_AP" if kind == "maskrcnn" else "mIoU"
    assert set(record["metrics"]) >= {"pytorch", "onnx"} and key in record["metrics"]["onnx"]


def test_eval_cli_scores_an_instance_model_on_coco_json(shipped_maskrcnn_onnx: Path, val_split: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`edgeseg eval` on the generated val split: a real AP against the ground truth, 1.0 against
    the model's own predictions written as ground truth, far less with the classes shuffled."""
    mask_api = pytest.importorskip("pycocotools.mask", reason="COCO AP needs pycocotools: pip install pycocotools")
    import edgeseg.cli as cli

    def eval_json(annotations: Path) -> dict[str, float]:
        argv = ["eval", str(shipped_maskrcnn_onnx), "--images", str(val_split / "images"), "--coco", str(annotations),
                "--max-images", "8", "--json", "-q"]
        assert cli.main(argv) == 0
        return json.loads(capsys.readouterr().out)

    truth = eval_json(val_split / "instances.json")
    assert truth["mask_AP50"] >= 0.5 and truth["images"] == 8

    coco = json.loads((val_split / "instances.json").read_text())
    model = edgeseg.load(shipped_maskrcnn_onnx)
    own: list[dict[str, object]] = []
    for image in sorted(coco["images"], key=lambda im: im["id"])[:8]:
        frame = cv2.imread(str(val_split / "images" / image["file_name"]))
        assert frame is not None
        det = model.instances(frame)
        for k in range(len(det)):
            rle = mask_api.encode(np.asfortranarray(det.masks[k]))
            x0, y0, x1, y1 = (float(v) for v in det.boxes[k])
            own.append({"id": len(own) + 1, "image_id": image["id"], "category_id": int(det.labels[k]),
                        "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                        "area": float(det.masks[k].sum()), "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0})
    coco["annotations"] = own
    (tmp_path / "own.json").write_text(json.dumps(coco))
    scores = eval_json(tmp_path / "own.json")
    assert scores["mask_AP"] == pytest.approx(1.0, abs=0.01) and scores["box_AP"] == pytest.approx(1.0, abs=0.01)

    for ann in coco["annotations"]:
        ann["category_id"] = ann["category_id"] % len(coco["categories"]) + 1  # every class -> the next
    (tmp_path / "shuffled.json").write_text(json.dumps(coco))
    assert eval_json(tmp_path / "shuffled.json")["mask_AP"] < 0.2

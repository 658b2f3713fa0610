"""matterport Mask R-CNN (Keras ``.h5`` + ``Config``) without TensorFlow: the Config read without
running it, the ``.h5`` read with h5py, and the eager PyTorch rebuild of ``detect()``.

Parity with matterport's own ``detect()`` uses ``../shared/matterport`` (weights, Config, photo,
what ``detect()`` returned with intermediates); those tests skip where it is absent. The rest
runs anywhere: each convention against skimage/scipy or hand-computed values, the Config reader,
the ``.h5`` layouts."""

from __future__ import annotations

import json
import lzma
import math
import shutil
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np
import pytest
import torch
import yaml
from skimage.transform import resize as sk_resize

from edgeseg.converters.matterport import conventions as cv
from edgeseg.converters.matterport.config import DEFAULTS, read_config
from edgeseg.converters.matterport.detect import EagerMatterport, load_eager, refine_detections
from edgeseg.converters.matterport.h5weights import KerasWeights, read_h5_weights
from edgeseg.converters.matterport.network import MatterportNet, load_keras_weights, tf_same_max_pool, tf_same_pad
from edgeseg.converters.parity import box_iou, mask_iou
from edgeseg.errors import ArgumentError, CheckpointError, CheckpointMismatchError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "matterport"
needs_shared = pytest.mark.skipif(not (SHARED / "weights_caseA.h5.xz").is_file(),
                                  reason=f"matterport reference data not found at {SHARED} (a plain clone has no "
                                         "../shared): the parity tests need it")

TRAINING_SCRIPT = '''
import numpy as np
from mrcnn.config import Config
from mrcnn import model as modellib

class ShapesConfig(Config):
    NAME = "shapes"
    IMAGES_PER_GPU = 1
    NUM_CLASSES = 1 + 3  # background + 3 shapes
    BACKBONE = "resnet50"
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    MEAN_PIXEL = np.array([120.0, 110.5, -1])
    TRAIN_ROIS_PER_IMAGE = 32
    MY_DATASET_ROOT = "/data/shapes"

if __name__ == "__main__":
    class InferenceConfig(ShapesConfig):
        IMAGES_PER_GPU = 1
        DETECTION_MIN_CONFIDENCE = 0.5
        IMAGE_SHAPE = [1, 2, 3]
    config = InferenceConfig()
    model = modellib.MaskRCNN(mode="inference", config=config, model_dir=".")
'''


def _script(tmp_path: Path, text: str = TRAINING_SCRIPT, name: str = "train_shapes.py") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# ---------------------------------------------------------------------------------------------
# (a) the Config, read without running it

def test_config_from_training_script_follows_inheritance(tmp_path: Path) -> None:
    cfg = read_config(f"{_script(tmp_path)}:InferenceConfig")
    assert cfg.source == "train_shapes.py:InferenceConfig"
    assert cfg["NUM_CLASSES"] == 4 and cfg["BACKBONE"] == "resnet50"
    assert cfg["RPN_ANCHOR_SCALES"] == [8, 16, 32, 64, 128]
    assert cfg["MEAN_PIXEL"] == [120.0, 110.5, -1]
    assert cfg["DETECTION_MIN_CONFIDENCE"] == 0.5  # the subclass wins over its base
    assert cfg["DETECTION_NMS_THRESHOLD"] == 0.3  # matterport's default underneath
    assert cfg.image_shape == (128, 128, 3) and cfg.batch_size == 1 and cfg.image_meta_size == 16
    assert cfg.backbone_shapes == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    assert cfg.ignored == {"NAME": "a label for logs and checkpoints", "TRAIN_ROIS_PER_IMAGE": "training only",
                           "MY_DATASET_ROOT": "not an attribute matterport's model reads",
                           "IMAGE_SHAPE": "computed from the other attributes (Config.__init__ overwrites it)"}


def test_config_needs_a_class_name_when_there_are_several(tmp_path: Path) -> None:
    with pytest.raises(ArgumentError) as e:
        read_config(_script(tmp_path))
    assert str(e.value) == ("train_shapes.py: expected exactly one subclass of matterport's Config, found "
                            "InferenceConfig, ShapesConfig; name the one to use as train_shapes.py:ClassName")
    with pytest.raises(ArgumentError) as e:
        read_config(f"{_script(tmp_path)}:Nope")
    assert str(e.value) == ("train_shapes.py: no subclass of matterport's Config named Nope (subclasses found: "
                            "InferenceConfig, ShapesConfig)")
    only = _script(tmp_path, "from mrcnn.config import Config\nclass C(Config):\n    NUM_CLASSES = 2\n", "one.py")
    assert read_config(only).source == "one.py:C"


def test_config_refuses_a_base_from_another_file(tmp_path: Path) -> None:
    p = _script(tmp_path, "from coco import CocoConfig\nclass InferenceConfig(CocoConfig):\n    IMAGES_PER_GPU = 1\n")
    for spec in (str(p), f"{p}:InferenceConfig"):
        with pytest.raises(ArgumentError) as e:
            read_config(spec)
        assert str(e.value) == ("train_shapes.py: class InferenceConfig derives from CocoConfig, which this file "
                                "imports rather than defines; edgeseg reads one file without running it: pass the file "
                                "that defines CocoConfig (as file.py:CocoConfig) with InferenceConfig's values added "
                                "there, or a JSON/YAML of all the attributes")


@pytest.mark.parametrize(("line", "what"), [
    ("NUM_CLASSES = len(CLASS_NAMES)", "a call of len()"),
    ("IMAGE_MAX_DIM = SIZE", "the name SIZE"),
    ("MEAN_PIXEL = np.array([1, 2, 3]) / 2", "arithmetic on non-numbers"),
    ("IMAGE_MIN_DIM = [x for x in (1, 2)][0]", "the expression [x for x in (1, 2)][0]"),
])
def test_config_refuses_what_is_not_a_literal(tmp_path: Path, line: str, what: str) -> None:
    p = _script(tmp_path, f"import numpy as np\nfrom mrcnn.config import Config\nclass C(Config):\n    {line}\n")
    name = line.split(" =")[0]
    with pytest.raises(ArgumentError) as e:
        read_config(p)
    assert str(e.value) == (f"train_shapes.py:4: C.{name} is {what}, not a literal; edgeseg does not run the Config: "
                            f"write the value itself (e.g. {name} = 3), or pass a JSON/YAML of the attributes")


def test_config_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    p = _script(tmp_path, f"open({str(marker)!r}, 'w').close()\nfrom mrcnn.config import Config\n"
                          "class C(Config):\n    NUM_CLASSES = 2\n")
    assert read_config(p)["NUM_CLASSES"] == 2
    assert not marker.exists()


def test_config_refuses_init_and_unsupported_values(tmp_path: Path) -> None:
    p = _script(tmp_path, "from mrcnn.config import Config\nclass C(Config):\n    def __init__(self):\n"
                          "        self.NUM_CLASSES = 3\n")
    with pytest.raises(ArgumentError) as e:
        read_config(p)
    assert str(e.value) == ("train_shapes.py: class C defines __init__, which sets values when it runs; edgeseg reads "
                            "the Config without running it: move those values to class attributes, or pass a "
                            "JSON/YAML of them")
    expected = {
        "IMAGE_RESIZE_MODE = 'pad64'": "train_shapes.py:C: IMAGE_RESIZE_MODE = 'pad64' is not supported: the padded "
                                       "size depends on each frame; use IMAGE_RESIZE_MODE = \"square\"",
        "IMAGE_RESIZE_MODE = 'none'": "train_shapes.py:C: IMAGE_RESIZE_MODE = 'none' is not supported: frames of any "
                                      "size are not one static graph; use IMAGE_RESIZE_MODE = \"square\"",
        "IMAGE_RESIZE_MODE = 'crop'": "train_shapes.py:C: IMAGE_RESIZE_MODE = 'crop' is not supported: a random crop, "
                                      "for training only; use IMAGE_RESIZE_MODE = \"square\" for inference",
        "TRAIN_BN = True": "train_shapes.py:C: TRAIN_BN = True runs BatchNorm in training mode at inference, which a "
                           "static graph does not reproduce; set TRAIN_BN = False (matterport's default)",
        "BACKBONE = 'resnet18'": "train_shapes.py:C: BACKBONE = 'resnet18' is not supported; matterport's built-in "
                                 "backbones are \"resnet50\" and \"resnet101\"",
        "IMAGE_MAX_DIM = 500": "train_shapes.py:C: IMAGE_MAX_DIM = 500 must be a multiple of 64 (matterport refuses it "
                               "too: the FPN halves the image 6 times)",
    }
    for line, message in expected.items():
        p.write_text(f"from mrcnn.config import Config\nclass C(Config):\n    NUM_CLASSES = 2\n    {line}\n")
        with pytest.raises(ArgumentError) as e:
            read_config(p)
        assert str(e.value) == message


def test_config_from_json_and_yaml_checks_derived_values(tmp_path: Path) -> None:
    values: dict[str, Any] = {"NUM_CLASSES": 3, "IMAGE_MAX_DIM": 256, "IMAGE_MIN_DIM": 200, "BACKBONE": "resnet50",
                              "IMAGE_SHAPE": [256, 256, 3], "BATCH_SIZE": 2, "LEARNING_RATE": 0.01}
    (tmp_path / "c.json").write_text(json.dumps(values))
    cfg = read_config(tmp_path / "c.json")
    assert cfg["NUM_CLASSES"] == 3 and cfg.image_shape == (256, 256, 3)
    assert cfg.ignored["LEARNING_RATE"] == "training only"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**values, "IMAGE_SHAPE": [512, 512, 3]}))
    with pytest.raises(ArgumentError) as e:
        read_config(tmp_path / "c.yaml")
    assert str(e.value) == ("c.yaml: IMAGE_SHAPE is [512, 512, 3] but matterport computes [256, 256, 3] from the "
                            "other attributes; the file is not one Config's values")


def test_defaults_are_matterports() -> None:
    # the values of mrcnn/config.py at 3deaec5 that shape inference (spot checks of the table)
    assert DEFAULTS["BACKBONE"] == "resnet101" and DEFAULTS["IMAGES_PER_GPU"] == 2
    assert DEFAULTS["IMAGE_MIN_DIM"] == 800 and DEFAULTS["IMAGE_MAX_DIM"] == 1024
    assert DEFAULTS["DETECTION_MIN_CONFIDENCE"] == 0.7 and DEFAULTS["MEAN_PIXEL"] == [123.7, 116.8, 103.9]


@needs_shared
def test_config_of_case_a_gives_every_value_matterport_had() -> None:
    data = json.loads((SHARED / "config_caseA.json").read_text())
    cfg = read_config(SHARED / "config_caseA.json")
    held = data["all_values_as_instance_has_them"]
    for k, v in held.items():
        if k in cfg.values:
            assert cfg[k] == v, k
    assert cfg.derived() == {"BATCH_SIZE": 1, "IMAGE_SHAPE": held["IMAGE_SHAPE"], "IMAGE_META_SIZE": 18,
                             "BACKBONE_SHAPES": [[128, 128], [64, 64], [32, 32], [16, 16], [8, 8]]}


# ---------------------------------------------------------------------------------------------
# conventions, each alone

@pytest.mark.parametrize(("shape", "out"), [((400, 600, 3), (341, 512)), ((28, 28, 3), (57, 33)),
                                             ((30, 20, 3), (7, 90)), ((5, 9, 3), (5, 9))])
def test_zoom_linear_is_skimage_bit_for_bit(shape: tuple[int, int, int], out: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, shape).astype(np.uint8)
    img[: shape[0] // 2, : shape[1] // 2] = 100  # flat regions: truncation to uint8 is where order matters
    ref = sk_resize(img, out, order=1, mode="constant", cval=0, clip=True, preserve_range=True, anti_aliasing=False)
    mine = cv.zoom_linear(torch.from_numpy(img), *out).numpy()
    assert mine.dtype == ref.dtype == np.float64
    assert np.array_equal(mine, ref)
    mask = rng.random((28, 28), dtype=np.float32)
    ref_m = sk_resize(mask, out, order=1, mode="constant", cval=0, clip=True, anti_aliasing=False)
    assert np.array_equal(cv.zoom_linear(torch.from_numpy(mask), *out).to(torch.float32).numpy(), ref_m)


def test_zoom_linear_pulls_borders_towards_zero() -> None:
    up = cv.zoom_linear(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), 1, 8)
    # 0.75 at the first sample, clipped up to 1; 4 * 0.75 + 0 * 0.25 = 3.0 at the last, kept
    assert up[0].tolist() == [1.0, 1.25, 1.75, 2.25, 2.75, 3.25, 3.75, 3.0]
    col = cv.zoom_linear(torch.tensor([[4.0]]), 1, 4)  # a constant row: clipped to its single value
    assert col[0].tolist() == [4.0, 4.0, 4.0, 4.0]
    mixed = cv.zoom_linear(torch.tensor([[4.0, -1.0]]), 1, 4)  # 0 inside the input range: plain clip
    assert mixed[0].tolist() == [3.0, 2.75, 0.25, -0.75]


def test_square_scale_and_python_rounding() -> None:
    assert cv.square_scale(400, 600, 256, 512) == 512 / 600
    assert cv.scaled_size(400, 600, 512 / 600) == (341, 512)
    assert cv.square_scale(100, 100, 50, 512) == 1.0  # never shrinks to reach min_dim
    assert cv.square_scale(100, 200, 150, 1024) == 1.5
    assert cv.scaled_size(5, 7, 0.5) == (2, 4)  # round(2.5) == 2, round(3.5) == 4: halves to even


def test_mold_image_truncates_pads_and_subtracts_the_mean() -> None:
    img = np.full((3, 4, 3), 200, np.uint8)
    molded, window, scale = cv.mold_image(img, 0, 64, 0, [123.7, 116.8, 103.9])
    assert scale == 1 and window == (30, 30, 33, 34)  # top (64-3)//2 = 30, the odd row at the bottom
    assert molded.dtype == np.float32 and molded[0, 0].tolist() == pytest.approx([-123.7, -116.8, -103.9])
    assert molded[30, 30].tolist() == [np.float32(200 - 123.7), np.float32(200 - 116.8), np.float32(200 - 103.9)]
    up, window, scale = cv.mold_image(np.full((2, 2, 3), 10, np.uint8), 4, 64, 0, [0.0, 0.0, 0.0])
    # 2 -> 4: corner samples are 0.75*10 + 0.25*0 = 7.5 before the clip, so the clip to [10, 10]
    # keeps every value at 10
    assert window == (30, 30, 34, 34) and np.all(up[30:34, 30:34] == 10)


def test_level_anchors_have_no_half_cell_offset() -> None:
    a = cv.level_anchors(32, [0.5, 1, 2], (2, 3), 4, 1)
    assert a.shape == (18, 4)
    h, w = 32 / math.sqrt(0.5), 32 * math.sqrt(0.5)  # ratio = width / height
    assert a[0].tolist() == pytest.approx([-h / 2, -w / 2, h / 2, w / 2])  # centre (0, 0)
    assert a[1].tolist() == pytest.approx([-16, -16, 16, 16])
    assert a[3].tolist() == pytest.approx([-h / 2, 4 - w / 2, h / 2, 4 + w / 2])  # next x, same y
    assert a[9][1] == pytest.approx(-w / 2) and a[9][0] == pytest.approx(4 - h / 2)  # next y
    assert cv.norm_boxes(np.array([[0, 0, 64, 64]]), (64, 64)).tolist() == [[0.0, 0.0, 1.0, 1.0]]


def test_box_deltas_clip_and_denorm() -> None:
    boxes = torch.tensor([[0.2, 0.2, 0.6, 0.4]])
    out = cv.apply_box_deltas(boxes, torch.tensor([[0.5, -0.5, math.log(2.0), 0.0]]))
    # centre (0.4, 0.3) moves by (0.5 * 0.4, -0.5 * 0.2); the height doubles to 0.8
    assert out[0].tolist() == pytest.approx([0.2, 0.1, 1.0, 0.3], abs=1e-6)
    assert cv.clip_boxes(out, [0.1, 0.15, 0.9, 0.9])[0].tolist() == pytest.approx([0.2, 0.15, 0.9, 0.3], abs=1e-6)
    # np.around halves to even; +1 on y2/x2 (exclusive ends)
    # 0.25 * 2 = 0.5 -> 0, 0.75 * 2 = 1.5 -> 2, 0.75 * 2 + 1 = 2.5 -> 2
    assert cv.denorm_boxes(np.array([[0.25, 0.75, 0.75, 0.25]], np.float32), (3, 3)).tolist() == [[0, 2, 2, 2]]


def test_nms_suppresses_only_above_the_threshold_and_keeps_the_lower_index_on_ties() -> None:
    boxes = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 0.5], [0, 0, 1, 0.5], [0, 0.6, 1, 1]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.8, 0.1])
    # IoU(0, 1) is exactly 0.5: not suppressed at 0.5; 1 and 2 are the same box with the same score
    assert cv.nms(boxes, scores, 10, 0.5).tolist() == [0, 1, 3]
    assert cv.nms(boxes, scores, 10, 0.49).tolist() == [0, 3]
    assert cv.nms(boxes, scores, 2, 0.5).tolist() == [0, 1]


def test_roi_levels_round_half_to_even_with_the_image_area() -> None:
    area = 512.0 * 512.0
    side = 224.0 / 512.0  # log2 term 0 -> level 4
    sides = [side, side * 2 ** 0.5, side * 2 ** 1.5, side * 2 ** -0.5, side * 2 ** -1.5, side * 8, 0.0]
    boxes = torch.tensor([[0, 0, s, s] for s in sides], dtype=torch.float32)
    levels = cv.roi_levels(boxes, area).tolist()
    # terms 0, 0.5, 1.5, -0.5, -1.5 round to 0, 0, 2, 0, -2 (halves to even); 3 is capped at 5;
    # a zero box goes to 2. The float32 sqrt/log can land a hair off the half: allow the two neighbours.
    assert levels[0] == 4 and levels[5] == 5 and levels[6] == 2
    assert levels[1] in (4, 5) and levels[2] in (5,) and levels[3] in (3, 4) and levels[4] in (2, 3)
    exact = torch.tensor([[0.0, 0.0, 0.5, 0.5]])  # sqrt(0.25) / (224 / 512) = 1.142...: log2 0.19 -> 4
    assert cv.roi_levels(exact, area).tolist() == [4]


def test_crop_and_resize_samples_corner_aligned() -> None:
    h, w = 5, 9
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    feature = torch.stack([10 * yy + xx, -yy])  # linear, so a bilinear sample is exact
    box = torch.tensor([[0.25, 0.125, 0.75, 0.875]])
    out = cv.crop_and_resize(feature, box, 3)
    ys = [0.25 * 4 + j * 0.5 * 4 / 2 for j in range(3)]  # first and last sample on the box edges
    xs = [0.125 * 8 + j * 0.75 * 8 / 2 for j in range(3)]
    assert np.allclose(out[0, 0].numpy(), [[10 * y + x for x in xs] for y in ys])
    assert np.allclose(out[0, 1].numpy(), [[-y for _ in xs] for y in ys])
    outside = cv.crop_and_resize(feature, torch.tensor([[-0.5, 0.0, 0.5, 1.0]]), 3)
    assert outside[0, 0, 0].tolist() == [0.0, 0.0, 0.0]  # y = -2 lies outside: extrapolation value 0
    assert outside[0, 0, 1].tolist() == [0.0, 4.0, 8.0]


def test_tf_same_max_pool_pads_after_only() -> None:
    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    out = tf_same_max_pool(x, 3, 2)
    # windows start at 0 and 2: rows/cols {0,1,2} and {2,3,(pad)}
    assert out[0, 0].tolist() == [[10.0, 11.0], [14.0, 15.0]]
    assert torch.nn.functional.max_pool2d(x, 3, 2, padding=1)[0, 0].tolist() == [[5.0, 7.0], [13.0, 15.0]]


def test_tf_same_padding_of_a_stride_2_window_is_asymmetric() -> None:
    x = torch.ones(1, 1, 4, 6)
    padded = tf_same_pad(x, 3, 2)  # 4 -> 2 outputs: (2-1)*2 + 3 - 4 = 1 cell, after
    assert padded.shape == (1, 1, 5, 7) and padded[0, 0, 0, 0] == 1 and padded[0, 0, -1].sum() == 0
    net = MatterportNet(50, 8, 16, 3, 3, anchor_stride=2)
    probs, deltas = net.rpn(torch.zeros(1, 8, 5, 8))  # ceil(5/2) * ceil(8/2) cells, 3 anchors each
    assert probs.shape == (3 * 4 * 3, 2) and deltas.shape == (36, 4)
    assert len(cv.level_anchors(32, [0.5, 1, 2], (5, 8), 4, 2)) == 36


def test_paste_mask_is_skimage_zoom_then_half() -> None:
    rng = np.random.default_rng(1)
    m = rng.random((28, 28), dtype=np.float32)
    full = cv.paste_mask(m, (3, 5, 40, 17), (50, 20))
    ref = sk_resize(m, (37, 12), order=1, mode="constant", cval=0, clip=True, anti_aliasing=False) >= 0.5
    assert full.dtype == bool and np.array_equal(full[3:40, 5:17], ref)
    assert not full[:3].any() and not full[40:].any() and not full[:, :5].any() and not full[:, 17:].any()
    # a mask whose every sample is >= 0.5: the zero border pulls the box's edge pixels below 0.5
    # (0.6 * 0.75 = 0.45 at a corner), but skimage clips to the mask's range [0.6, 0.6] first,
    # so the whole box is foreground
    flat = np.full((28, 28), 0.6, np.float32)
    assert cv.paste_mask(flat, (0, 0, 56, 56), (56, 56)).all()
    assert sk_resize(flat, (56, 56), order=1, mode="constant", cval=0, clip=False, anti_aliasing=False)[0, 0] < 0.5


# ---------------------------------------------------------------------------------------------
# (b) Keras layouts and the .h5

def _keras_layout(module: torch.nn.Module, param: str, t: torch.Tensor) -> np.ndarray:
    if param == "kernel" and isinstance(module, torch.nn.Linear):
        return t.t().numpy()
    if param == "kernel":
        return t.permute(2, 3, 1, 0).numpy()  # OIHW -> HWIO; ConvTranspose (in,out,kh,kw) -> (kh,kw,out,in)
    return t.numpy()


def _keras_weights_of(net: MatterportNet) -> KerasWeights:
    names = {"weight": "kernel", "bias": "bias"}
    bn = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
    layers = {}
    for layer, m in net.keras_layers.items():
        table = bn if isinstance(m, torch.nn.BatchNorm2d) else names
        layers[layer] = {k: _keras_layout(m, k, getattr(m, attr).detach()) for attr, k in table.items()}
    return KerasWeights(layers=layers, groups={k: k for k in layers}, keras_version="2.15.0", path="/x/w.h5")


def test_keras_layouts_are_the_definitions() -> None:
    """Conv2D HWIO, Dense (in, out) and Conv2DTranspose (kh, kw, out, in), each against the Keras
    definition written out in numpy, after load_keras_weights."""
    torch.manual_seed(0)
    net = MatterportNet(50, 8, 16, 3, 3)
    rng = np.random.default_rng(0)
    w = _keras_weights_of(net)
    k_deconv = rng.standard_normal((2, 2, 256, 256)).astype(np.float32)
    k_dense = rng.standard_normal((16, 3)).astype(np.float32)
    k_conv = rng.standard_normal((3, 3, 8, 256)).astype(np.float32)
    w.layers["mrcnn_mask_deconv"]["kernel"] = k_deconv
    w.layers["mrcnn_class_logits"]["kernel"] = k_dense
    w.layers["mrcnn_mask_conv1"]["kernel"] = k_conv
    fresh = MatterportNet(50, 8, 16, 3, 3)
    load_keras_weights(fresh, w)
    x = rng.standard_normal((1, 256, 2, 3)).astype(np.float32)  # NCHW
    got = torch.nn.functional.conv_transpose2d(torch.from_numpy(x), fresh.mask_deconv.weight, stride=2).detach().numpy()
    ref = np.zeros((1, 256, 4, 6), np.float32)
    for di in range(2):
        for dj in range(2):  # out[2i+di, 2j+dj, o] = sum_c in[i, j, c] * K[di, dj, o, c]
            ref[0, :, di::2, dj::2] = np.einsum("cij,oc->oij", x[0], k_deconv[di, dj])
    assert np.allclose(got, ref, atol=1e-4)
    v = rng.standard_normal((4, 16)).astype(np.float32)
    assert np.allclose(fresh.class_logits(torch.from_numpy(v)).detach().numpy(),
                       v @ k_dense + w.layers["mrcnn_class_logits"]["bias"], atol=1e-5)
    img = rng.standard_normal((1, 8, 3, 3)).astype(np.float32)
    conv1 = fresh.mask_convs[0]
    assert isinstance(conv1, torch.nn.Conv2d)
    conv = torch.nn.functional.conv2d(torch.from_numpy(img), conv1.weight).detach().numpy()
    assert np.allclose(conv[0, :, 0, 0], np.einsum("chw,hwco->o", img[0], k_conv), atol=1e-4)


def test_a_file_that_does_not_fit_names_the_first_layer_and_shape() -> None:
    net = MatterportNet(50, 8, 16, 3, 3)
    w = _keras_weights_of(net)
    w.layers["fpn_c4p4"]["kernel"] = np.zeros((1, 1, 1024, 9), np.float32)
    w.layers["mrcnn_class_logits"]["kernel"] = np.zeros((16, 5), np.float32)
    with pytest.raises(CheckpointMismatchError) as e:
        load_keras_weights(net, w)
    assert str(e.value) == ("w.h5: layer fpn_c4p4 kernel has shape (1, 1, 1024, 9) but the Config's network needs "
                            "(1, 1, 1024, 8); check NUM_CLASSES, TOP_DOWN_PYRAMID_SIZE, FPN_CLASSIF_FC_LAYERS_SIZE "
                            "and BACKBONE against the training Config")
    w = _keras_weights_of(net)
    del w.layers["res3b_branch2a"]
    with pytest.raises(CheckpointMismatchError) as e:
        load_keras_weights(net, w)
    assert str(e.value) == ("w.h5: has no weights for layer res3b_branch2a, which the Config's network needs; is it "
                            "a matterport Mask R-CNN .h5 of this Config?")


def _write_h5(path: Path, nested_name: str = "rpn_model", under_model_weights: bool = False) -> None:
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if under_model_weights else f
        root.attrs["layer_names"] = [b"conv1", b"input_image", nested_name.encode(), b"mrcnn_class_conv1",
                                     b"mrcnn_class_bn1"]
        root.attrs["keras_version"] = b"2.2.4"
        g = root.create_group("conv1")
        g.attrs["weight_names"] = [b"conv1/kernel:0", b"conv1/bias:0"]
        g["conv1/kernel:0"] = np.ones((7, 7, 3, 64), np.float32)
        g["conv1/bias:0"] = np.zeros(64, np.float32)
        root.create_group("input_image").attrs["weight_names"] = np.array([], dtype="S1")
        r = root.create_group(nested_name)
        r.attrs["weight_names"] = [b"rpn_conv_shared/kernel:0", b"rpn_class_raw/bias:0"]
        r["rpn_conv_shared/kernel:0"] = np.ones((3, 3, 64, 512), np.float32)
        r["rpn_class_raw/bias:0"] = np.ones(6, np.float32)
        t = root.create_group("mrcnn_class_conv1")  # TimeDistributed: stored under the wrapper's name
        t.attrs["weight_names"] = ["mrcnn_class_conv1/kernel:0"]
        t["mrcnn_class_conv1/kernel:0"] = np.ones((7, 7, 64, 1024), np.float32)
        b = root.create_group("mrcnn_class_bn1")  # weights named after an inner layer: keyed by the group
        names = [f"time_distributed_3/{p}:0" for p in ("gamma", "beta", "moving_mean", "moving_variance")]
        b.attrs["weight_names"] = [n.encode() for n in names]
        for n in names:
            b[n] = np.ones(4, np.float32)


@pytest.mark.parametrize("under_model_weights", [False, True])
def test_h5_layout_with_the_nested_rpn_model(tmp_path: Path, under_model_weights: bool) -> None:
    _write_h5(tmp_path / "w.h5", under_model_weights=under_model_weights)
    w = read_h5_weights(tmp_path / "w.h5")
    assert list(w.layers) == ["conv1", "rpn_conv_shared", "rpn_class_raw", "mrcnn_class_conv1", "mrcnn_class_bn1"]
    assert list(w.layers["mrcnn_class_bn1"]) == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert w.groups["rpn_class_raw"] == "rpn_model" and w.keras_version == "2.2.4"
    assert w.layers["conv1"]["kernel"].shape == (7, 7, 3, 64) and set(w.layers["conv1"]) == {"kernel", "bias"}
    with pytest.raises(CheckpointError) as e:
        _ = w.resnet_depth
    assert str(e.value) == ("w.h5: has 0 ResNet stage-4 blocks (res4?_branch2a layers); matterport's ResNet-50 has 6 "
                            "and ResNet-101 23: is this a matterport Mask R-CNN .h5?")


def test_h5_errors(tmp_path: Path) -> None:
    (tmp_path / "not.h5").write_bytes(b"hello")
    with pytest.raises(CheckpointError) as e:
        read_h5_weights(tmp_path / "not.h5")
    assert str(e.value).startswith("not.h5: not an HDF5 file (")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(CheckpointError) as e:
        read_h5_weights(tmp_path / "plain.h5")
    assert str(e.value) == ("plain.h5: has no 'layer_names' attribute, so it is not a Keras 2 HDF5 weights file; pass "
                            "the .h5 that model.keras_model.save_weights() wrote (Keras 3 .weights.h5 files are not "
                            "supported)")


# ---------------------------------------------------------------------------------------------
# (c) parity with matterport's detect() on ../shared/matterport

@pytest.fixture(scope="module")
def case_a(tmp_path_factory: pytest.TempPathFactory) -> tuple[EagerMatterport, Any, Path]:
    if not (SHARED / "weights_caseA.h5.xz").is_file():
        pytest.skip(f"matterport reference data not found at {SHARED} (a plain clone has no ../shared)")
    h5 = tmp_path_factory.mktemp("matterport") / "weights_caseA.h5"
    with lzma.open(SHARED / "weights_caseA.h5.xz") as src, h5.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 22)
    model = load_eager(h5, SHARED / "config_caseA.json")
    return model, np.load(SHARED / "outputs_caseA.npz"), h5


@pytest.fixture(scope="module")
def detections_a(case_a: tuple[EagerMatterport, Any, Path]) -> Any:
    model, _, _ = case_a
    bgr = cv2.imread(str(SHARED / "input_caseA.png"))
    assert bgr is not None
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return model.detect(rgb)


@needs_shared
def test_h5_of_case_a(case_a: tuple[EagerMatterport, Any, Path]) -> None:
    w = read_h5_weights(case_a[2])
    meta = json.loads((SHARED / "meta_caseA.json").read_text())
    assert w.keras_version == "2.15.0" and w.resnet_depth == 50
    assert sum(a.size for layer in w.layers.values() for a in layer.values()) == meta["weights"]["param_count"]
    assert w.groups["rpn_bbox_pred"] == "rpn_model"
    assert w.layers["mrcnn_mask_deconv"]["kernel"].shape == (2, 2, 256, 256)


@needs_shared
def test_detect_parity_with_matterport(detections_a: Any) -> None:
    ref = np.load(SHARED / "outputs_caseA.npz")
    n, _, w = (int(v) for v in ref["masks_shape"])
    ref_masks = np.unpackbits(ref["masks_packbits"], axis=-1)[..., :w].astype(bool)
    d = detections_a
    assert len(d.rois) == n == 100
    used: set[int] = set()
    ious, score_err, m_ious = [], [], []
    for i in range(n):  # each reference detection matched by class and best box IoU
        cands = [j for j in range(len(d.rois)) if j not in used and d.class_ids[j] == ref["class_ids"][i]]
        iou = box_iou(np.repeat(ref["rois"][i:i + 1], len(cands), 0), d.rois[cands]) if cands else np.zeros(0)
        j = cands[int(np.argmax(iou))]
        used.add(j)
        ious.append(float(iou.max()))
        score_err.append(abs(float(d.scores[j]) - float(ref["scores"][i])))
        m_ious.append(float(mask_iou(d.masks[j:j + 1], ref_masks[i:i + 1])[0]))
    assert min(ious) >= 0.99
    assert max(score_err) <= 1e-3
    assert float(np.mean(m_ious)) >= 0.98
    # what this rebuild reaches (README): the same boxes, classes and order, scores to 1e-4,
    # a handful of mask pixels within 1e-3 of 0.5 flipped
    assert np.array_equal(d.rois, ref["rois"]) and np.array_equal(d.class_ids, ref["class_ids"])
    assert max(score_err) < 1e-4
    assert int((d.masks != ref_masks).sum()) < 100


@needs_shared
def test_detect_intermediates(detections_a: Any) -> None:
    ref = np.load(SHARED / "outputs_caseA.npz")
    got = detections_a.intermediates
    assert np.array_equal(got["molded_image"], ref["molded_image"])  # resize, truncation, mean: exact
    assert np.array_equal(got["window"], ref["window"])
    assert np.array_equal(got["anchors_norm"], ref["anchors_norm"])
    # the network in float32 on another library: differences of float rounding only
    assert np.abs(got["rpn_class_probs"] - ref["rpn_class_probs"]).max() < 5e-4
    assert np.abs(got["rpn_bbox_deltas"] - ref["rpn_bbox_deltas"]).max() < 2e-3
    # the proposals: the same set; near-tied fg scores (7 exact ties near 1.0 in TF) may swap
    # order, which can flip one NMS decision out of 1000
    a, b = got["rpn_rois_norm"], ref["rpn_rois_norm"]
    dist = np.abs(a[:, None, :] - b[None, :, :]).max(-1)
    assert int((dist.min(0) > 1e-4).sum()) <= 2
    n = int(ref["num_raw_detections"])
    assert np.abs(got["detections_raw_norm"] - ref["detections_raw_norm"][:n]).max() < 1e-3
    assert np.abs(got["mrcnn_mask_det"] - ref["mrcnn_mask_det"]).max() < 1e-2


@needs_shared
def test_each_step_on_matterports_own_intermediates(case_a: tuple[EagerMatterport, Any, Path],
                                                   detections_a: Any) -> None:
    """Every step after the network fed matterport's own inputs to it: the proposal and
    refinement logic to float32 rounding, the unmolding and the paste exactly, the heads on
    matterport's RoIs to float32 rounding."""
    model, ref, _ = case_a
    rois = model.proposals(torch.from_numpy(ref["rpn_class_probs"]), torch.from_numpy(ref["rpn_bbox_deltas"]))
    assert np.abs(rois.numpy() - ref["rpn_rois_norm"]).max() <= 1e-6
    n = int(ref["num_raw_detections"])
    window = cv.norm_boxes(ref["window"], (512, 512))
    dets = refine_detections(torch.from_numpy(ref["rpn_rois_norm"]), torch.from_numpy(ref["mrcnn_class_probs"]),
                             torch.from_numpy(ref["mrcnn_bbox_deltas"]), window, model.cfg)
    assert dets.shape == (n, 6) and np.abs(dets.numpy() - ref["detections_raw_norm"][:n]).max() <= 1e-6
    boxes = cv.unmold_boxes(ref["detections_raw_norm"][:n, :4], tuple(ref["window"]), (512, 512), (400, 600))
    assert np.array_equal(boxes, ref["rois"])
    h, w = 400, 600
    ref_masks = np.unpackbits(ref["masks_packbits"], axis=-1)[..., :w].astype(bool)
    pasted = np.stack([cv.paste_mask(ref["mrcnn_mask_det"][i], ref["rois"][i], (h, w)) for i in range(n)])
    assert np.array_equal(pasted, ref_masks)
    # the features of the same molded image (it equals matterport's bit for bit)
    feats = [torch.from_numpy(f) for f in detections_a.features]
    with torch.no_grad():
        probs, deltas = model.net.box_head(cv.pyramid_roi_align(feats, torch.from_numpy(ref["rpn_rois_norm"]), 7,
                                                                512.0 * 512.0))
        det = torch.from_numpy(ref["detections_raw_norm"][:n])
        masks = model.net.mask_head(cv.pyramid_roi_align(feats, det[:, :4], 14, 512.0 * 512.0))
    assert np.abs(probs.numpy() - ref["mrcnn_class_probs"]).max() < 1e-4
    assert np.abs(deltas.numpy() - ref["mrcnn_bbox_deltas"]).max() < 1e-3
    assert np.abs(masks[torch.arange(n), det[:, 4].long()].numpy() - ref["mrcnn_mask_det"]).max() < 1e-3


@needs_shared
def test_weights_and_config_that_disagree(case_a: tuple[EagerMatterport, Any, Path], tmp_path: Path) -> None:
    h5 = case_a[2]
    values = json.loads((SHARED / "config_caseA.json").read_text())["config_subclass_overrides"]
    (tmp_path / "c.json").write_text(json.dumps({**values, "NUM_CLASSES": 4}))
    with pytest.raises(CheckpointMismatchError) as e:
        load_eager(h5, tmp_path / "c.json")
    assert str(e.value) == ("weights_caseA.h5: layer mrcnn_class_logits kernel has shape (256, 6) but the Config's "
                            "network needs (256, 4); check NUM_CLASSES, TOP_DOWN_PYRAMID_SIZE, "
                            "FPN_CLASSIF_FC_LAYERS_SIZE and BACKBONE against the training Config")
    del values["BACKBONE"]
    (tmp_path / "c.json").write_text(json.dumps(values))
    with pytest.raises(CheckpointMismatchError) as e:
        load_eager(h5, tmp_path / "c.json")
    assert str(e.value) == ("weights_caseA.h5 holds a ResNet-50 backbone but c.json has BACKBONE = 'resnet101'; set "
                            "BACKBONE = \"resnet50\" (matterport's default is resnet101)")

"""matterport's Keras network (``mrcnn/model.py``) as PyTorch modules, named as its Keras layers.

Every module is registered under its Keras layer name (``conv1``, ``bn2a_branch2a``,
``fpn_c5p5``, ``rpn_conv_shared``, ``mrcnn_class_conv1``...) in :attr:`MatterportNet.keras_layers`,
so :func:`load_keras_weights` fills them from the ``.h5`` one layer at a time and names the first
layer that does not fit. Layouts: NCHW tensors; Keras kernels are transposed once at load.

What differs from a torchvision ResNet-FPN (each read in ``mrcnn/model.py``):
- Caffe-style ResNet (``resnet_graph``, ``conv_block``): stride 2 on the first 1x1 conv of a block
  and on its 1x1 shortcut; every conv has a bias; BatchNorm with epsilon 1e-3 (Keras's default).
- The stem MaxPool(3, 2, 'same') pads 0 before and 1 after (TF 'same'), padded cells ignored.
- FPN: nearest x2 upsampling, P6 = P5[::2, ::2] (``MaxPooling2D(pool_size=1, strides=2)``).
- RPN: a two-class softmax per anchor (not a sigmoid), outputs reshaped in NHWC order.
- Box head: a 7x7 'valid' conv as the first fully connected layer, over HWC.
"""

from __future__ import annotations

from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.converters.matterport.config import MatterportConfig
from edgeseg.converters.matterport.h5weights import KerasWeights
from edgeseg.errors import CheckpointMismatchError

_M = TypeVar("_M", bound=nn.Module)

#: Keras's BatchNormalization epsilon, which matterport's ``BatchNorm`` subclass keeps
BN_EPS = 1e-3


def tf_same_pad(x: torch.Tensor, k: int, s: int, value: float = 0.0) -> torch.Tensor:
    """TF ``padding='same'`` for a k x k window of stride s on NCHW: total padding
    ``max((ceil(n/s)-1)*s + k - n, 0)`` per axis, the odd cell after (bottom/right)."""
    pads = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad order: last axis first
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


def tf_same_max_pool(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """TF ``MaxPooling2D(k, s, padding='same')``: :func:`tf_same_pad` with cells that never win."""
    return F.max_pool2d(tf_same_pad(x, k, s, float("-inf")), k, s)


class _Block(nn.Module):
    """One bottleneck block (``conv_block`` when *stride*/*shortcut*, else ``identity_block``)."""

    def __init__(self, cin: int, filters: tuple[int, int, int], stride: int, shortcut: bool) -> None:
        super().__init__()
        f1, f2, f3 = filters
        self.conv_a = nn.Conv2d(cin, f1, 1, stride)
        self.bn_a = nn.BatchNorm2d(f1, eps=BN_EPS)
        self.conv_b = nn.Conv2d(f1, f2, 3, 1, 1)
        self.bn_b = nn.BatchNorm2d(f2, eps=BN_EPS)
        self.conv_c = nn.Conv2d(f2, f3, 1)
        self.bn_c = nn.BatchNorm2d(f3, eps=BN_EPS)
        self.short: nn.Module | None = nn.Conv2d(cin, f3, 1, stride) if shortcut else None
        self.bn_short: nn.Module | None = nn.BatchNorm2d(f3, eps=BN_EPS) if shortcut else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn_a(self.conv_a(x)))
        y = F.relu(self.bn_b(self.conv_b(y)))
        y = self.bn_c(self.conv_c(y))
        s = x if self.short is None or self.bn_short is None else self.bn_short(self.short(x))
        return F.relu(y + s)


class MatterportNet(nn.Module):
    """The backbone, FPN, RPN and the two heads of matterport's inference model; the steps
    between them (proposals, RoI pooling, refinement) are in :mod:`.detect`."""

    def __init__(self, depth: int, fpn: int, fc: int, num_classes: int, anchors_per_cell: int,
                 anchor_stride: int = 1) -> None:
        super().__init__()
        self.keras_layers: dict[str, nn.Module] = {}
        self.num_classes = num_classes
        self.conv1 = self._named("conv1", nn.Conv2d(3, 64, 7, 2))
        self.bn_conv1 = self._named("bn_conv1", nn.BatchNorm2d(64, eps=BN_EPS))
        stages = [(2, 3, (64, 64, 256), 1), (3, 4, (128, 128, 512), 2),
                  (4, {50: 6, 101: 23}[depth], (256, 256, 1024), 2), (5, 3, (512, 512, 2048), 2)]
        self.stages = nn.ModuleList()
        cin = 64
        for stage, count, filters, stride in stages:
            blocks = nn.Sequential()
            for i in range(count):
                b = _Block(cin, filters, stride if i == 0 else 1, shortcut=i == 0)
                name = f"{stage}{chr(97 + i)}"
                for part, conv, bn in (("2a", b.conv_a, b.bn_a), ("2b", b.conv_b, b.bn_b), ("2c", b.conv_c, b.bn_c),
                                       ("1", b.short, b.bn_short)):
                    if conv is not None and bn is not None:
                        self._named(f"res{name}_branch{part}", conv)
                        self._named(f"bn{name}_branch{part}", bn)
                blocks.append(b)
                cin = filters[2]
            self.stages.append(blocks)
        self.lateral = nn.ModuleList(self._named(f"fpn_c{k}p{k}", nn.Conv2d(c, fpn, 1))
                                     for k, c in ((2, 256), (3, 512), (4, 1024), (5, 2048)))
        self.smooth = nn.ModuleList(self._named(f"fpn_p{k}", nn.Conv2d(fpn, fpn, 3, 1, 1)) for k in (2, 3, 4, 5))
        a = anchors_per_cell
        # padded in rpn(): with RPN_ANCHOR_STRIDE 2 TF's 'same' is asymmetric
        self.rpn_conv = self._named("rpn_conv_shared", nn.Conv2d(fpn, 512, 3, anchor_stride))
        self.rpn_class = self._named("rpn_class_raw", nn.Conv2d(512, 2 * a, 1))
        self.rpn_bbox = self._named("rpn_bbox_pred", nn.Conv2d(512, 4 * a, 1))
        self.class_conv1 = self._named("mrcnn_class_conv1", nn.Conv2d(fpn, fc, 7))
        self.class_bn1 = self._named("mrcnn_class_bn1", nn.BatchNorm2d(fc, eps=BN_EPS))
        self.class_conv2 = self._named("mrcnn_class_conv2", nn.Conv2d(fc, fc, 1))
        self.class_bn2 = self._named("mrcnn_class_bn2", nn.BatchNorm2d(fc, eps=BN_EPS))
        self.class_logits = self._named("mrcnn_class_logits", nn.Linear(fc, num_classes))
        self.bbox_fc = self._named("mrcnn_bbox_fc", nn.Linear(fc, 4 * num_classes))
        self.mask_convs = nn.ModuleList(
            self._named(f"mrcnn_mask_conv{i}", nn.Conv2d(fpn if i == 1 else 256, 256, 3, 1, 1)) for i in (1, 2, 3, 4))
        self.mask_bns = nn.ModuleList(self._named(f"mrcnn_mask_bn{i}", nn.BatchNorm2d(256, eps=BN_EPS))
                                      for i in (1, 2, 3, 4))
        self.mask_deconv = self._named("mrcnn_mask_deconv", nn.ConvTranspose2d(256, 256, 2, 2))
        self.mask_logits = self._named("mrcnn_mask", nn.Conv2d(256, num_classes, 1))
        self.eval()

    def _named(self, name: str, module: _M) -> _M:
        self.keras_layers[name] = module
        return module

    def backbone_fpn(self, x: torch.Tensor) -> list[torch.Tensor]:
        """NCHW molded image (minus MEAN_PIXEL) -> [P2, P3, P4, P5, P6]."""
        x = F.pad(x, (3, 3, 3, 3))  # ZeroPadding2D((3, 3)) before the 'valid' 7x7/2 conv
        x = F.relu(self.bn_conv1(self.conv1(x)))
        x = tf_same_max_pool(x, 3, 2)
        cs = []
        for stage in self.stages:
            x = stage(x)
            cs.append(x)
        p = self.lateral[3](cs[3])
        ps = [p]
        for i in (2, 1, 0):  # P4 = up(P5) + lateral(C4), ...
            p = F.interpolate(p, scale_factor=2.0, mode="nearest") + self.lateral[i](cs[i])
            ps.insert(0, p)
        ps = [conv(p) for conv, p in zip(self.smooth, ps, strict=True)]
        return [*ps, ps[3][:, :, ::2, ::2]]

    def rpn(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One level -> (class probabilities [N*A, 2] (bg, fg), raw deltas [N*A, 4]) in Keras's
        reshape order: y, then x, then anchor."""
        x = F.relu(self.rpn_conv(tf_same_pad(feature, 3, self.rpn_conv.stride[0])))
        logits = self.rpn_class(x).permute(0, 2, 3, 1).reshape(-1, 2)
        deltas = self.rpn_bbox(x).permute(0, 2, 3, 1).reshape(-1, 4)
        return torch.softmax(logits, dim=-1), deltas

    def box_head(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[R, C, POOL, POOL] -> (class probabilities [R, K], raw deltas [R, K, 4])."""
        x = F.relu(self.class_bn1(self.class_conv1(pooled)))
        x = F.relu(self.class_bn2(self.class_conv2(x))).flatten(1)
        probs = torch.softmax(self.class_logits(x), dim=-1)
        return probs, self.bbox_fc(x).reshape(-1, self.num_classes, 4)

    def mask_head(self, pooled: torch.Tensor) -> torch.Tensor:
        """[R, C, MASK_POOL, MASK_POOL] -> sigmoid masks [R, K, 2*MASK_POOL, 2*MASK_POOL]."""
        x = pooled
        for conv, bn in zip(self.mask_convs, self.mask_bns, strict=True):
            x = F.relu(bn(conv(x)))
        x = F.relu(self.mask_deconv(x))
        return torch.sigmoid(self.mask_logits(x))


def build_network(cfg: MatterportConfig, depth: int) -> MatterportNet:
    """The network for *cfg* with a ResNet of *depth* (50 or 101), random weights."""
    return MatterportNet(depth, cfg["TOP_DOWN_PYRAMID_SIZE"], cfg["FPN_CLASSIF_FC_LAYERS_SIZE"], cfg["NUM_CLASSES"],
                         len(cfg["RPN_ANCHOR_RATIOS"]), cfg["RPN_ANCHOR_STRIDE"])


def _torch_layout(module: nn.Module, param: str, array: torch.Tensor) -> torch.Tensor:
    """A Keras array in the PyTorch layout of *module*'s *param*."""
    if param != "kernel":
        return array
    if isinstance(module, nn.ConvTranspose2d):
        return array.permute(3, 2, 0, 1)  # (kh, kw, out, in) -> (in, out, kh, kw)
    if isinstance(module, nn.Conv2d):
        return array.permute(3, 2, 0, 1)  # HWIO -> OIHW
    return array.t()  # Dense (in, out) -> Linear (out, in)


_PARAMS = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
           "moving_mean": "running_mean", "moving_variance": "running_var"}


def load_keras_weights(net: MatterportNet, weights: KerasWeights) -> None:
    """Copy *weights* into *net*, layer by layer in model order; raise
    :class:`CheckpointMismatchError` naming the first layer that is missing, extra, or of
    another shape (with both shapes, in Keras's layout)."""
    name = weights.path.rsplit("/", 1)[-1]
    for layer, module in net.keras_layers.items():
        if layer not in weights.layers:
            raise CheckpointMismatchError(f"{name}: has no weights for layer {layer}, which the Config's network "
                                          "needs; is it a matterport Mask R-CNN .h5 of this Config?")
        arrays = weights.layers[layer]
        expected = set(_PARAMS) & ({"kernel", "bias"} if not isinstance(module, nn.BatchNorm2d)
                                   else {"gamma", "beta", "moving_mean", "moving_variance"})
        if set(arrays) != expected:
            raise CheckpointMismatchError(f"{name}: layer {layer} holds {sorted(arrays)}, expected {sorted(expected)}")
        for param, array in arrays.items():
            target = getattr(module, _PARAMS[param])
            value = _torch_layout(module, param, torch.from_numpy(array))
            if tuple(value.shape) != tuple(target.shape):
                # back to Keras's layout: OIHW and (in, out, kh, kw) both permute to (kh, kw, ., .)
                keras_shape = (tuple(target.shape[::-1]) if isinstance(module, nn.Linear) or param != "kernel"
                               else tuple(target.permute(2, 3, 1, 0).shape))
                raise CheckpointMismatchError(
                    f"{name}: layer {layer} {param} has shape {tuple(array.shape)} but the Config's network needs "
                    f"{keras_shape}; check NUM_CLASSES, TOP_DOWN_PYRAMID_SIZE, FPN_CLASSIF_FC_LAYERS_SIZE and "
                    "BACKBONE against the training Config")
            with torch.no_grad():
                target.copy_(value)
    extra = [layer for layer in weights.layers if layer not in net.keras_layers]
    if extra:
        raise CheckpointMismatchError(f"{name}: layer {extra[0]} (group {weights.groups[extra[0]]}) is not part of "
                                      "matterport's inference network for this Config")

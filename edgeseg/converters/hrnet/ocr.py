"""HRNet + OCR (object-contextual representations), as the official HRNet-OCR branch builds it
(``lib/models/seg_hrnet_ocr.py``): the HRNetV2 backbone of :mod:`edgeseg.converters.hrnet.model`
with the OCR head in place of ``last_layer``.

Parameter names and shapes are the official ones (``aux_head``, ``conv3x3_ocr``,
``ocr_distri_head.object_context_block.f_pixel/f_object/f_down/f_up``,
``ocr_distri_head.conv_bn_dropout``, ``cls_head``; a BN followed by its ReLU is a Sequential of its
own there, hence the extra ``.0`` in their keys), so its checkpoints load strictly. The
computation follows the official forward in the same order (``forward``, 633-648):

    feats  = concat of the 4 branches                       [N, C, h, w]      (C = 15 * width)
    aux    = aux_head(feats)                                [N, K, h, w]      soft object regions
    feats  = conv3x3_ocr(feats)                             [N, M, h, w]      (M = MID_CHANNELS)
    object = SpatialGather(feats, aux)                      [N, M, K, 1]      softmax over pixels
    feats  = SpatialOCR(feats, object)                      [N, M, h, w]      attention over objects
    ocr    = cls_head(feats)                                [N, K, h, w]

The network returns ``[aux, ocr][output_index]`` (``TEST.OUTPUT_INDEX`` of the config; -1, the
OCR logits, by default). There is no pooling in ObjectAttention: the official module is always
built with scale 1 (``MODEL.OCR.SCALE`` is never read), and Dropout2d is the identity at inference.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeseg.converters.hrnet.archs import HRNetSpec
from edgeseg.converters.hrnet.model import HRNetV2

#: what TEST.OUTPUT_INDEX picks from the official forward's [aux, ocr]
OUTPUTS = ("aux", "ocr")


@dataclass(frozen=True)
class OCRSpec:
    """The OCR head's sizes (``MODEL.OCR``) and which of its two outputs the graph gives."""

    mid_channels: int = 512
    key_channels: int = 256
    output: str = "ocr"  # "aux" or "ocr"


def _bn_relu(channels: int) -> nn.Sequential:
    # the official ModuleHelper.BNReLU: its own Sequential, so the BN keys read "<name>.<i>.0.*"
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


def _project(cin: int, cout: int, depth: int) -> nn.Sequential:
    """*depth* x (1x1 conv without bias, BN+ReLU)."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 1, bias=False), _bn_relu(cout)]
    return nn.Sequential(*layers)


class SpatialGather(nn.Module):
    """One feature vector per class: the features averaged over the pixels with the class's
    softmax (over the pixel axis) of the aux logits as weights. ``feats [N, M, h, w]``,
    ``aux [N, K, h, w]`` -> ``[N, M, K, 1]``."""

    def forward(self, feats: Tensor, aux: Tensor) -> Tensor:
        n, k = int(aux.shape[0]), int(aux.shape[1])
        m = int(feats.shape[1])
        probs = torch.softmax(aux.reshape(n, k, -1), dim=2)  # the official scale is 1
        context = torch.matmul(probs, feats.reshape(n, m, -1).permute(0, 2, 1))  # [N, K, M]
        return context.permute(0, 2, 1).unsqueeze(3)


class ObjectAttention(nn.Module):
    """Each pixel attends to the K object vectors: query from the pixel, key and value from the
    objects, ``key_channels ** -0.5`` scaled dot products, softmax over the objects."""

    def __init__(self, channels: int, key_channels: int) -> None:
        super().__init__()
        self.key_channels = key_channels
        self.f_pixel = _project(channels, key_channels, 2)
        self.f_object = _project(channels, key_channels, 2)
        self.f_down = _project(channels, key_channels, 1)
        self.f_up = nn.Sequential(nn.Conv2d(key_channels, channels, 1, bias=False), _bn_relu(channels))

    def forward(self, feats: Tensor, objects: Tensor) -> Tensor:
        n, h, w = int(feats.shape[0]), int(feats.shape[2]), int(feats.shape[3])
        c = self.key_channels
        query = self.f_pixel(feats).reshape(n, c, -1).permute(0, 2, 1)  # [N, hw, c]
        key = self.f_object(objects).reshape(n, c, -1)  # [N, c, K]
        value = self.f_down(objects).reshape(n, c, -1).permute(0, 2, 1)  # [N, K, c]
        sim = torch.softmax(torch.matmul(query, key) * c**-0.5, dim=-1)
        context = torch.matmul(sim, value).permute(0, 2, 1).reshape(n, c, h, w)
        return self.f_up(context)


class SpatialOCR(nn.Module):
    """ObjectAttention, then [context, feats] -> 1x1 conv, BN+ReLU (the official
    ``SpatialOCR_Module``; its Dropout2d does nothing at inference and is left out)."""

    def __init__(self, channels: int, key_channels: int) -> None:
        super().__init__()
        self.object_context_block = ObjectAttention(channels, key_channels)
        self.conv_bn_dropout = nn.Sequential(nn.Conv2d(2 * channels, channels, 1, bias=False), _bn_relu(channels))

    def forward(self, feats: Tensor, objects: Tensor) -> Tensor:
        context = self.object_context_block(feats, objects)
        return self.conv_bn_dropout(torch.cat([context, feats], dim=1))


class HRNetOCR(HRNetV2):
    """HRNetV2 backbone + OCR head; input and output as :class:`HRNetV2` (logits at 1/4
    resolution), the logits being the ones ``ocr.output`` names."""

    def __init__(self, spec: HRNetSpec, num_classes: int, align_corners: bool = True,
                 ocr: OCRSpec | None = None) -> None:
        super().__init__(spec, num_classes, align_corners)
        del self.last_layer  # the official OCR model has none
        self.ocr = ocr or OCRSpec()
        c, m = spec.head_channels, self.ocr.mid_channels
        self.conv3x3_ocr = nn.Sequential(nn.Conv2d(c, m, 3, 1, 1), nn.BatchNorm2d(m), nn.ReLU(inplace=True))
        self.ocr_gather_head = SpatialGather()
        self.ocr_distri_head = SpatialOCR(m, self.ocr.key_channels)
        self.cls_head = nn.Conv2d(m, num_classes, 1)
        self.aux_head = nn.Sequential(nn.Conv2d(c, c, 1), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                                      nn.Conv2d(c, num_classes, 1))
        self.head_input_pad = 0  # zero channels added to the heads' input (for_export)

    @property
    def arch_label(self) -> str:
        return f"hrnet_ocr_{self.spec.name}"

    def forward(self, x: Tensor) -> Tensor:
        return self.heads(self.features(x))[OUTPUTS.index(self.ocr.output)]

    def for_export(self, multiple: int = 16) -> HRNetOCR:
        """A copy computing the same logits whose two head convolutions read the concatenated
        branches padded with zero channels (and zero weights) to a multiple of *multiple*.

        The concatenation has 15 * width channels (270 for W18), which keeps ONNX Runtime's CPU
        convolutions off their blocked (NCHWc, 16-channel) path: measured on the 512x1024 shared
        case at one thread, the padded graph ran in 1904 ms instead of 2167 ms. The added terms
        are exact zeros; the sums may round differently (logits within 4e-5)."""
        pad = -self.spec.head_channels % multiple
        out = copy.deepcopy(self)
        if pad:
            out.head_input_pad = pad
            for seq in (out.conv3x3_ocr, out.aux_head):
                conv = seq[0]
                assert isinstance(conv, nn.Conv2d) and conv.bias is not None
                k = int(conv.kernel_size[0])  # the two head convs: square, stride 1, "same" padding
                wider = nn.Conv2d(conv.in_channels + pad, conv.out_channels, k, 1, k // 2)
                with torch.no_grad():
                    wider.weight.zero_()
                    wider.weight[:, : conv.in_channels] = conv.weight
                    wider.bias = nn.Parameter(conv.bias.detach().clone())
                seq[0] = wider
        return out.eval()

    def heads(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        """(aux, ocr) logits from the concatenated branches (the official forward's [aux, ocr]);
        with ``ocr.output == "aux"`` only the aux head runs, and ocr is the aux logits too."""
        if self.head_input_pad:
            feats = F.pad(feats, (0, 0, 0, 0, 0, self.head_input_pad))
        aux = self.aux_head(feats)
        if self.ocr.output == "aux":
            return aux, aux
        feats = self.conv3x3_ocr(feats)
        objects = self.ocr_gather_head(feats, aux)
        return aux, self.cls_head(self.ocr_distri_head(feats, objects))

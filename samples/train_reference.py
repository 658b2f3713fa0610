"""Train edgeseg's reference models from scratch on the CPU, on scenes generated on the fly.

    python samples/train_reference.py maskrcnn --out edgeseg/data/weights   # light Mask R-CNN
    python samples/train_reference.py hrnet --out edgeseg/data/weights      # HRNetV2-W18-Small-v1
    python samples/train_reference.py hrnet --eval-only                     # re-score shipped weights

Each run draws fresh training scenes (``edgeseg.scenes.make_scene(spec, seed, i)``, i = 0, 1, ...;
never a validation index), trains with AdamW (linear warm-up, cosine decay to zero), prints
progress (iteration, loss, it/s, ETA), and saves the weights as an fp16 ``state_dict`` (loadable
with ``torch.load(weights_only=True)``). It then scores those fp16 weights on the held-out split
(validation scenes ``VAL_INDEX_OFFSET + i`` of the same seed) in PyTorch eager and, converted to
ONNX, through ``edgeseg.load`` on the same frames: COCO mask/box AP for Mask R-CNN, mIoU for
HRNet. A JSON file next to the weights records the command, seed, iterations, time and metrics.

Everything is seeded (scenes by ``--seed``, weights and crops by torch's generator), but CPU
kernels are not bit-exact across machines and thread counts, so a re-run lands close to, not
exactly on, the recorded metrics. Needs the ``convert`` and ``demo`` extras and pycocotools.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgeseg.atomic import atomic_output
from edgeseg.converters.hrnet.archs import get_arch
from edgeseg.converters.hrnet.export import build_hrnet, export_hrnet
from edgeseg.converters.hrnet.model import HRNetV2
from edgeseg.converters.maskrcnn.archs import ARCHS, arch_key, build_arch
from edgeseg.converters.maskrcnn.export import export_maskrcnn
from edgeseg.converters.parity import bgr_to_rgb_tensor
from edgeseg.converters.reference import (
    HRNET,
    MASKRCNN,
    SCENE_CLASSES,
    hrnet_predictor,
    maskrcnn_predictor,
    normalise,
    reference_hrnet,
    reference_maskrcnn,
    scene_classes,
)
from edgeseg.scenes import Scene, SceneSpec, make_scene, write_dataset
from edgeseg.version import __version__

DEFAULTS: dict[str, dict[str, Any]] = {
    # Measured on one core of the 2-core development machine: ~1.5 s per Mask R-CNN iteration
    # (4 scenes of 256x256), ~1.0 s per HRNet iteration (8 crops of 192x192).
    "maskrcnn": {"iters": 1150, "batch": 4, "lr": 1e-3, "warmup": 150, "crop": 0},
    "hrnet": {"iters": 1700, "batch": 8, "lr": 2e-3, "warmup": 100, "crop": 192},
}


def lr_at(it: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up from peak/100 to *peak*, then cosine decay to zero."""
    if it < warmup:
        return peak * (0.01 + 0.99 * it / warmup)
    return 0.5 * peak * (1.0 + math.cos(math.pi * (it - warmup) / max(total - warmup, 1)))


def scenes(spec: SceneSpec, seed: int, batch: int) -> Iterator[list[Scene]]:
    i = 0
    while True:
        yield [make_scene(spec, seed, i + k) for k in range(batch)]
        i += batch


def fmt_time(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60:d}:{m % 60:02d}:{s:02d}"


class Progress:
    def __init__(self, total: int, every: int) -> None:
        self.total, self.every = total, every
        self.start = time.perf_counter()
        self.window: list[float] = []

    def update(self, it: int, losses: dict[str, float], lr: float) -> None:
        self.window.append(sum(losses.values()))
        if (it + 1) % self.every and it + 1 != self.total:
            return
        elapsed = time.perf_counter() - self.start
        rate = (it + 1) / elapsed
        parts = " ".join(f"{k.removeprefix('loss_')} {v:.3f}" for k, v in losses.items())
        print(f"it {it + 1}/{self.total}  loss {np.mean(self.window):.4f} ({parts})  lr {lr:.2e}  "
              f"{rate:.2f} it/s  elapsed {fmt_time(elapsed)}  ETA {fmt_time((self.total - it - 1) / rate)}",
              flush=True)
        self.window.clear()


def replay_build_draws(construct: Callable[[], object]) -> None:
    """Put PyTorch's global random state where the shipped weights' training run had it.

    That run's builders seeded the global RNG with 0 and drew the initial weights from it, and
    torchvision's samplers then drew from where that left off. The builders now leave the caller's
    random state alone, so the same construction is replayed here (*construct* builds the same
    architecture) to keep the documented command reproducing the shipped weights.
    """
    torch.manual_seed(0)
    construct()


def train_maskrcnn(args: argparse.Namespace, spec: SceneSpec) -> torch.nn.Module:
    model = build_arch(MASKRCNN.arch, len(SCENE_CLASSES))  # seeded random init
    replay_build_draws(lambda: ARCHS[arch_key(MASKRCNN.arch)](len(SCENE_CLASSES)))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    progress = Progress(args.iters, args.log_every)
    for it, batch in zip(range(args.iters), scenes(spec, args.seed, args.batch), strict=False):
        lr = lr_at(it, args.iters, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        images = [bgr_to_rgb_tensor(s.image) for s in batch]
        targets = [{"boxes": torch.from_numpy(s.boxes), "labels": torch.from_numpy(s.labels),
                    "masks": torch.from_numpy(s.masks.view(np.uint8))} for s in batch]
        losses = model(images, targets)
        loss = sum(losses.values(), torch.zeros(()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        progress.update(it, {k: float(v.detach()) for k, v in losses.items()}, lr)
    return model.eval()


def _crop(batch: list[Scene], crop: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(np.stack([s.image for s in batch]))
    labels = torch.from_numpy(np.stack([s.label_map for s in batch])).long()
    h, w = labels.shape[1:]
    if crop and crop < min(h, w):
        ys = torch.randint(0, h - crop + 1, (len(batch),), generator=gen).tolist()
        xs = torch.randint(0, w - crop + 1, (len(batch),), generator=gen).tolist()
        images = torch.stack([im[y : y + crop, x : x + crop] for im, y, x in zip(images, ys, xs, strict=True)])
        labels = torch.stack([lb[y : y + crop, x : x + crop] for lb, y, x in zip(labels, ys, xs, strict=True)])
    flip = torch.rand(len(batch), generator=gen) < 0.5
    images = torch.where(flip.view(-1, 1, 1, 1), images.flip(2), images)
    labels = torch.where(flip.view(-1, 1, 1), labels.flip(2), labels)
    return images, labels


def train_hrnet(args: argparse.Namespace, spec: SceneSpec) -> torch.nn.Module:
    model = build_hrnet(HRNET.arch, len(SCENE_CLASSES))
    replay_build_draws(lambda: HRNetV2(get_arch(HRNET.arch), len(SCENE_CLASSES)))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    gen = torch.Generator().manual_seed(args.seed)
    progress = Progress(args.iters, args.log_every)
    for it, batch in zip(range(args.iters), scenes(spec, args.seed, args.batch), strict=False):
        lr = lr_at(it, args.iters, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        images, labels = _crop(batch, args.crop, gen)
        logits = model(normalise(images))
        # Official HRNet recipe: logits upsampled to the label size, then cross-entropy.
        up = F.interpolate(logits, size=labels.shape[1:], mode="bilinear", align_corners=model.align_corners)
        loss = F.cross_entropy(up, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        progress.update(it, {"loss_ce": float(loss.detach())}, lr)
    return model.eval()


def save_fp16(model: torch.nn.Module, path: Path) -> None:
    sd = {k: v.detach().half() if v.is_floating_point() else v.detach() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save(sd, tmp)


def evaluate(kind: str, weights: Path, val_dir: Path, onnx_dir: Path | None) -> dict[str, dict[str, Any]]:
    """Scores of the fp16 *weights* on the split in *val_dir*: PyTorch eager, and, with *onnx_dir*,
    the ONNX graph converted from the same weights and run through ``edgeseg.load`` (CPU)."""
    from edgeseg.evaluation import coco_instance_ap, semantic_miou
    from edgeseg.model import load

    results: dict[str, dict[str, Any]] = {}
    if kind == "maskrcnn":
        model = reference_maskrcnn(weights)
        predictors: dict[str, Any] = {"pytorch": maskrcnn_predictor(model)}
        if onnx_dir is not None:
            path = onnx_dir / "maskrcnn.onnx"
            export_maskrcnn(model, path, (args_size(val_dir), args_size(val_dir)), classes=scene_classes(),
                            arch=f"maskrcnn_{MASKRCNN.arch}")
            predictors["onnx"] = load(path).instances
        for name, predict in predictors.items():
            start = time.perf_counter()
            results[name] = coco_instance_ap(predict, val_dir / "instances.json", val_dir / "images")
            results[name]["seconds"] = round(time.perf_counter() - start, 1)
        return results
    net = reference_hrnet(weights)
    predictors = {"pytorch": hrnet_predictor(net)}
    if onnx_dir is not None:
        path = onnx_dir / "hrnet.onnx"
        export_hrnet(net, path, (args_size(val_dir), args_size(val_dir)), classes=scene_classes())
        predictors["onnx"] = load(path).semantic
    for name, predict in predictors.items():
        start = time.perf_counter()
        m = semantic_miou(predict, val_dir / "images", val_dir / "labels", len(SCENE_CLASSES))
        m.pop("confusion")
        results[name] = {**m, "seconds": round(time.perf_counter() - start, 1)}
    return results


def args_size(val_dir: Path) -> int:
    """The (square) scene size of a split written by write_dataset."""
    info = json.loads((val_dir.parent / "dataset.json").read_text())
    return int(info["size"][0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=sorted(DEFAULTS))
    parser.add_argument("--out", type=Path, default=Path("edgeseg/data/weights"), help="folder for the weights")
    parser.add_argument("--seed", type=int, default=0, help="scene data set seed (and torch seed)")
    parser.add_argument("--size", type=int, default=256, help="square scene size in pixels")
    parser.add_argument("--iters", type=int)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--crop", type=int, help="hrnet: square training crop (0 = whole scenes)")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--val", type=int, default=200, help="held-out scenes to score on (0: skip)")
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--eval-only", action="store_true", help="score the weights already in --out")
    parser.add_argument("--no-onnx", action="store_true", help="score in PyTorch only (no ONNX conversion)")
    args = parser.parse_args(argv)
    for key, value in DEFAULTS[args.model].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    spec = SceneSpec(size=(args.size, args.size))
    ref = MASKRCNN if args.model == "maskrcnn" else HRNET
    weights = args.out / ref.weights
    record_path = weights.with_suffix(".json")
    record: dict[str, Any] = json.loads(record_path.read_text()) if args.eval_only and record_path.exists() else {}
    if not args.eval_only:
        print(f"training {args.model} ({ref.arch}) from scratch: {args.iters} iterations x {args.batch} scenes "
              f"{args.size}x{args.size}, seed {args.seed}, {args.threads} thread(s)", flush=True)
        start, cpu_start = time.perf_counter(), time.process_time()
        model = train_maskrcnn(args, spec) if args.model == "maskrcnn" else train_hrnet(args, spec)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        save_fp16(model, weights)
        print(f"saved {weights} ({weights.stat().st_size / 1e6:.2f} MB) after {fmt_time(seconds)}", flush=True)
        record = {
            "model": args.model,
            "arch": ref.arch,
            "classes": list(SCENE_CLASSES),
            "weights": weights.name,
            "command": "python samples/train_reference.py " + shlex.join(sys.argv[1:] if argv is None else argv),
            "hyperparameters": {k: getattr(args, k) for k in ("iters", "batch", "lr", "warmup", "crop",
                                                               "weight_decay", "threads", "size")},
            "optimizer": "AdamW, linear warm-up from lr/100, cosine decay to 0",
            "data": {"generator": "edgeseg.scenes.make_scene", "seed": args.seed,
                     "train_scene_indices": [0, args.iters * args.batch - 1],
                     "spec": dataclasses.asdict(spec)},
            "training_seconds": round(seconds),
            "training_cpu_seconds": round(cpu_seconds),
            "parameters": sum(p.numel() for p in model.parameters()),
            "machine": f"{platform.machine()}, torch {torch.__version__}, edgeseg {__version__}",
        }
    if args.val:
        with tempfile.TemporaryDirectory(prefix="edgeseg-val-") as tmp:
            val_dir = write_dataset(Path(tmp) / "scenes", 0, args.val, args.seed, (args.size, args.size)) / "val"
            results = evaluate(args.model, weights, val_dir, None if args.no_onnx else Path(tmp))
        print(f"held-out split: {args.val} scenes {args.size}x{args.size} (seed {args.seed}), fp16 weights", flush=True)
        keys = [k for k, v in results["pytorch"].items() if isinstance(v, float)]
        print(f"  {'metric':<16}" + "".join(f"{name:>10}" for name in results), flush=True)
        for k in keys:
            print(f"  {k:<16}" + "".join(f"{r[k]:>10.4f}" for r in results.values()), flush=True)
        record["metrics"] = {"val_scenes": args.val, "val_scene_indices": f"VAL_INDEX_OFFSET + 0..{args.val - 1}",
                             **results}
    with atomic_output(record_path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {record_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``edgeseg`` command.

    edgeseg convert hrnet --arch w18_small_v2 --weights W.pth --frame 512x1024 -o hrnet.onnx
    edgeseg convert hrnet --config seg_hrnet_ocr_w48.yaml --weights best.pth --frame 512x1024 -o ocr.onnx
    edgeseg convert maskrcnn --arch resnet50_fpn --weights W.pth --frame 720x1280 -o maskrcnn.onnx
    edgeseg convert matterport --config train.py --weights mask_rcnn_x.h5 --frame 720x1280 -o m.onnx
    edgeseg run hrnet.onnx --source clip.mp4 -o out.mp4
    edgeseg info hrnet.onnx
    edgeseg demo-clip -o clip.mp4

Errors print as one line, ``edgeseg: error: ...``, with exit code 2 for a bad argument, 1 for
anything else that went wrong, 130 when interrupted (outputs written so far are kept).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from edgeseg import uris
from edgeseg.custom_ops import PASTE_MODES
from edgeseg.errors import ArgumentError, EdgesegError, EdgesegWarning, ModelFileError, OutputError, SourceError
from edgeseg.torch_side import converters
from edgeseg.version import __version__

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def parse_hw(text: str, flag: str = "--frame") -> tuple[int, int]:
    """``"720x1280"`` -> (720, 1280): HEIGHTxWIDTH in pixels, both positive."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        h, w = int(parts[0]), int(parts[1])
    except ValueError:
        raise ArgumentError(f"{flag} {text!r} is malformed: write HEIGHTxWIDTH in pixels, e.g. 720x1280") from None
    if h <= 0 or w <= 0:
        raise ArgumentError(f"{flag} {text!r}: height and width must be positive, e.g. 720x1280")
    return h, w


def _ranged(flag: str, kind: type = int, low: float | None = None, high: float | None = None,
            low_open: bool = False) -> Callable[[str], Any]:
    """An argparse type: *kind* (int or float) within the range, checked by edgeseg.ranges as the
    library checks it; out of range is a usage error (exit 2) naming the allowed range."""
    from edgeseg import ranges

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} {text!r}: must be {ranges.describe(low, high, kind is int, low_open)}") from None
        try:
            return ranges.check(flag, value, low, high, integer=kind is int, low_open=low_open)
        except ArgumentError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"edgeseg: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _hw_type(flag: str) -> Callable[[str], tuple[int, int]]:
    def convert(text: str) -> tuple[int, int]:
        try:
            return parse_hw(text, flag)
        except ArgumentError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _report(args: argparse.Namespace, meta: Any) -> None:
    if args.random_weights:
        print("edgeseg: warning: random weights: the model's output is noise", file=sys.stderr)
    print(
        f"wrote {args.output}: {meta.arch}, {meta.num_classes} classes, frame {meta.frame_hw[0]}x{meta.frame_hw[1]}"
        f", network input {meta.input_hw[0]}x{meta.input_hw[1]}"
    )


def cmd_convert(args: argparse.Namespace) -> int:
    """``edgeseg convert FAMILY``: the flags, handed to edgeseg.converters.api.export."""
    api = converters("api")
    options = {name: getattr(args, name) for name in api.FAMILIES[args.model].options}
    meta = api.export(
        args.model, args.output, arch=args.arch, frame_hw=args.frame, weights=args.weights,
        random_weights=args.random_weights, num_classes=args.num_classes, classes=args.classes,
        allow_pickle=args.trust_checkpoint, quiet=args.quiet, precision=args.precision,
        calibration=_calibration(args), **options,
    )
    _report(args, meta)
    return 0


def _calibration(args: argparse.Namespace) -> Any:
    from edgeseg.precision.convert import Calibration

    return Calibration(images=args.calib_images, count=args.calib_count, method=args.calib_method,
                       cache=args.calib_cache)


def _precision_arguments(p: argparse.ArgumentParser) -> None:
    from edgeseg.precision import calibration, int8
    from edgeseg.precision.rules import PRECISIONS

    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="what the graph computes in: fp32, fp16 (FP16 network layers, FP32 detection logic) or "
                        "int8 (Q/DQ, calibrated on --calib-images); TensorRT 10.3 and 11 build it as it is")
    p.add_argument("--calib-images", type=Path, help="int8: folder of representative images")
    p.add_argument("--calib-count", type=_ranged("--calib-count", int, 1), default=calibration.DEFAULT_COUNT,
                   help=f"int8: images used (default {calibration.DEFAULT_COUNT})")
    p.add_argument("--calib-method", choices=tuple(int8.METHODS), default=int8.DEFAULT_METHOD,
                   help=f"int8: range estimator (default {int8.DEFAULT_METHOD})")
    p.add_argument("--calib-cache", type=Path,
                   help="int8: statistics file, read if it exists, else written (default: a file per model and "
                        "image set in ~/.cache/edgeseg/calibration)")


class _Removed(argparse.Action):
    """An option that existed once: a usage error that names its replacement."""

    def __init__(self, option_strings: list[str], dest: str, nargs: Any = 0, **kwargs: Any) -> None:
        self.replacement = kwargs.pop("replacement")
        super().__init__(option_strings, dest, nargs=nargs, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.error(f"{option_string} is gone: {self.replacement}")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C so a stopped run finalises its output the same way."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_run(args: argparse.Namespace) -> int:
    from edgeseg.model import load
    from edgeseg.pipeline import Pipeline
    from edgeseg.progress import FrameProgress
    from edgeseg.sinks import open_sinks
    from edgeseg.sources import open_source

    if not args.output and not args.show and args.json is None:
        raise ArgumentError("nothing to write: give -o FILE (image, video or folder/), --show and/or --json FILE.jsonl")
    _check_sources_and_outputs(args)
    if len(args.source) > 1:
        return _run_streams(args)
    args.source = args.source[0]
    model: Any = load(args.model, threads=args.threads)
    if _tracking(args, model):
        from edgeseg.tracking import Tracked

        model = Tracked(model)
    source = open_source(args.source, width=args.width, height=args.height, fps=args.fps)
    sinks = open_sinks(args.output or [], show=args.show, jsonl=args.json, fps=source.fps)
    for sink in sinks.sinks:
        if hasattr(sink, "url"):  # a live view: say where to point the browser
            print(f"live view: {sink.url}", file=sys.stderr)
    total = source.frame_count if not source.live and (source.frame_count or 0) > 1 else None
    progress = FrameProgress(total, quiet=args.quiet)

    pipe = Pipeline(source, model, sinks, draw=_overlay(args), hud=args.hud, progress=progress,
                    reconnect_seconds=args.reconnect_seconds,
                    on_warning=lambda message: print(f"edgeseg: warning: {message}", file=sys.stderr))
    interrupted = False
    try:
        with _sigterm_as_interrupt():
            pipe.run()
    except KeyboardInterrupt:
        interrupted = True
    except EdgesegError:
        print(pipe.summary.describe())  # what was kept before the source failed (the pipeline finished the progress)
        raise
    print(pipe.summary.describe())
    return EXIT_INTERRUPTED if interrupted or pipe.summary.interrupted else 0


def _stream_output(template: str | Path, stream: int) -> str:
    """An output of stream *stream* of a run with several sources (``-o cam{stream}.mp4``)."""
    return str(template).replace("{stream}", str(stream))


def _check_sources_and_outputs(args: argparse.Namespace) -> None:
    """Every --source, -o and --json of ``edgeseg run`` checked (edgeseg.sources.check_source,
    edgeseg.sinks.check_outputs) before the model loads and before any source or output opens: a
    malformed URI is a usage error, a missing file or unwritable folder an error, both one line."""
    from edgeseg.sinks import check_outputs
    from edgeseg.sources import check_source

    several = len(args.source) > 1
    if several:
        if args.show:
            raise ArgumentError("--show with several sources: one window per stream is not supported; use "
                                "-o http://0.0.0.0:809{stream} for a live view of each")
        templates = [*(args.output or []), *([args.json] if args.json is not None else [])]
        plain = [t for t in templates if "{stream}" not in str(t)]
        if plain:
            raise ArgumentError(f"several sources write several outputs: put {{stream}} in {plain[0]} "
                                "(e.g. -o cam{stream}.mp4, --json cam{stream}.jsonl)")
    for i, uri in enumerate(args.source):
        try:
            check_source(uri)
        except SourceError as exc:
            if not several:
                raise
            raise type(exc)(f"stream {i}: {exc}; no stream was started: mend or drop that --source") from exc
        try:
            check_outputs([_stream_output(o, i) if several else o for o in args.output or []],
                          None if args.json is None else _stream_output(args.json, i) if several else args.json)
        except OutputError as exc:
            if not several:
                raise
            raise type(exc)(f"stream {i}: {exc}; no stream was started") from exc


def _overlay(args: argparse.Namespace) -> Callable[[Any, Any], Any]:
    """The drawing ``edgeseg run`` asks for (``--alpha``, ``--no-legend``)."""
    from edgeseg import draw

    def overlay(frame: Any, result: Any) -> Any:
        # looked up at call time, so the drawing can be swapped (tests do)
        return draw.draw_result(frame, result, alpha=args.alpha, legend=not args.no_legend)

    return overlay


def _tracking(args: argparse.Namespace, model: Any) -> bool:
    """Whether to give objects track IDs: ``--track`` on an instance model (a semantic one has
    none to track: a warning line)."""
    if args.track and model.metadata.kind != "instance":
        print(f"edgeseg: warning: --track: {args.model.name} is a semantic model; it has no instances to track",
              file=sys.stderr)
    return bool(args.track) and model.metadata.kind == "instance"


def _run_streams(args: argparse.Namespace) -> int:
    """``edgeseg run M --source A --source B ...``: one model, one pipeline per stream, outputs
    by template (``-o cam{stream}.mp4``), one summary line per stream."""
    from edgeseg.model import load
    from edgeseg.pipeline import Pipeline, run_streams, shared
    from edgeseg.sinks import open_sinks
    from edgeseg.sources import open_source

    base: Any = load(args.model, threads=args.threads)
    model = shared(base)
    track = _tracking(args, base)
    overlay = _overlay(args)
    pipelines = []

    def warner(i: int) -> Callable[[str], None]:
        return lambda message: print(f"edgeseg: warning: stream {i}: {message}", file=sys.stderr)

    try:
        for i, uri in enumerate(args.source):
            try:
                source = open_source(uri, width=args.width, height=args.height, fps=args.fps)
            except SourceError as exc:
                raise SourceError(f"stream {i}: {exc}; no stream was started: mend or drop that --source") from exc
            sinks = open_sinks([_stream_output(o, i) for o in args.output or []],
                               jsonl=_stream_output(args.json, i) if args.json is not None else None,
                               fps=source.fps)
            stream_model: Any = model
            if track:
                from edgeseg.tracking import Tracked

                stream_model = Tracked(model)  # one tracker per stream, one model for all
            pipelines.append(Pipeline(
                source, stream_model, sinks, hud=args.hud, reconnect_seconds=args.reconnect_seconds, stream=i,
                draw=overlay, on_warning=warner(i)))
    except BaseException:
        for p in pipelines:
            p.sink.close()
            p.source.close()
        raise
    with _sigterm_as_interrupt():
        outcomes = run_streams(pipelines)
    failed = False
    for o in outcomes:
        if o.error is not None and not isinstance(o.error, KeyboardInterrupt):
            failed = True
            print(f"stream {o.stream} ({o.uri}): error: {o.error}; {o.summary.describe()}")
        else:
            print(f"stream {o.stream} ({o.uri}): {o.summary.describe()}")
    if any(o.summary.interrupted for o in outcomes):
        return EXIT_INTERRUPTED
    return EXIT_ERROR if failed else 0


def cmd_bench(args: argparse.Namespace) -> int:
    import json

    from edgeseg.bench import bench, bench_frames
    from edgeseg.model import load

    model = load(args.model, threads=args.threads)
    frames = bench_frames(args.source, args.runs, model.frame_hw)
    report = bench(model, frames, runs=args.runs, warmup=args.warmup, with_draw=not args.no_draw)
    print(json.dumps(report.to_dict()) if args.json else report.table())
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from edgeseg.bench import bench_frames
    from edgeseg.model import load

    converters("api").check_weights(args.weights, args.random_weights)
    model = load(args.model, threads=args.threads)
    if model.backend.name != "onnxruntime":
        raise ArgumentError(f"{args.model.name}: compare an .onnx file (an engine's own parity: pytest -m gpu)")
    parity = converters("parity")
    reference = parity.reference_model(model.metadata, args.weights, allow_pickle=args.trust_checkpoint,
                                       config=args.config)
    frames = bench_frames(args.source, args.frames, model.frame_hw)[: args.frames]
    report = parity.compare(model, reference, frames)
    print(report.text())
    return 0 if report.passed else EXIT_ERROR


def _parse_id_map(text: str | None, flag: str) -> dict[int, int] | None:
    """``7:0,8:1`` or a JSON file {"7": 0, ...} -> {7: 0, 8: 1}."""
    import json

    if text is None:
        return None
    try:
        if Path(text).is_file():
            return {int(k): int(v) for k, v in json.loads(Path(text).read_text()).items()}
        return {int(a): int(b) for a, b in (pair.split(":") for pair in text.split(",") if pair.strip())}
    except (ValueError, AttributeError) as exc:
        raise ArgumentError(f"{flag} {text!r}: give FROM:TO pairs like 7:0,8:1 or a JSON file {{\"7\": 0}}") from exc


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from edgeseg import evaluation
    from edgeseg.model import load

    model = load(args.model, threads=args.threads)
    if model.metadata.kind == "instance":
        if args.coco is None:
            raise ArgumentError("an instance model is scored against COCO annotations: give --coco instances.json")
        scores = evaluation.coco_instance_ap(model.instances, args.coco, args.images,
                                             category_map=_parse_id_map(args.category_map, "--category-map"),
                                             max_images=args.max_images, quiet=args.quiet)
        if args.json:
            print(json.dumps(scores))
            return 0
        print(f"{args.model.name} on {int(scores['images'])} image(s) of {args.coco.name}:")
        for kind in ("box", "mask"):
            print(f"  {kind:<5} AP {scores[f'{kind}_AP']:.3f}  AP50 {scores[f'{kind}_AP50']:.3f}  "
                  f"AP75 {scores[f'{kind}_AP75']:.3f}")
        return 0
    if args.labels is None:
        raise ArgumentError("a semantic model is scored against label images: give --labels FOLDER")
    result = evaluation.semantic_miou(model.semantic, args.images, args.labels, model.metadata.num_classes,
                                      ignore_label=args.ignore_label,
                                      class_map=_parse_id_map(args.class_map, "--class-map"),
                                      max_images=args.max_images, quiet=args.quiet)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "confusion"}))
        return 0
    print(f"{args.model.name} on {result['images']} image(s): mIoU {result['mIoU']:.4f}, "
          f"pixel accuracy {result['pixel_accuracy']:.4f}")
    for name, iou in result["per_class_IoU"].items():
        print(f"  {name:<20} {'-' if iou is None else f'{iou:.4f}'}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Describe an .onnx or .engine file; engines are described from their header, so this
    needs neither TensorRT nor a GPU."""
    from edgeseg.custom_ops import PLUGIN_NAMESPACE, PLUGIN_VERSION
    from edgeseg.metadata import METADATA_KEY, ModelMetadata

    path: Path = args.model
    if path.suffix.lower() == ".engine" and path.is_file():
        from edgeseg.engine_file import read_header

        header = read_header(path)
        if METADATA_KEY not in header.metadata:
            raise ModelFileError(f"{path.name}: the engine carries no edgeseg metadata; build it with `edgeseg build`")
        m = ModelMetadata.from_json(header.metadata[METADATA_KEY], source=path.name)
        b = header.build
        backend = "tensorrt"
        tensors: list[tuple[str, str, list[int | str], str]] = [
            (t.role, t.name, list(t.shape), t.dtype) for t in b.tensors]
        plugins = b.plugins
        # engines from before the precision moved into the graph recorded their builder flags
        precision = m.precision_summary() if b.precision == m.precision else (
            b.precision + (f", FP32 pinned: {' '.join(b.fp32_layers)}" if b.fp32_layers else ""))
        built = f"TensorRT {b.tensorrt_version} for {b.gpu_name} (compute capability {b.compute_capability})"
        # how the build went, as `edgeseg build` recorded it (absent from engines built before it did)
        notes = [f"{label} {b.extra[key]}" for key, label in (
            ("workspace_mib", "workspace MiB"), ("fp32_layers_pinned", "layers pinned to FP32"),
            ("calibration_images", "INT8 calibration images")) if key in b.extra]
        if notes:
            built += "; " + ", ".join(notes)
    else:
        from edgeseg.model import load

        model = load(path)
        m = model.metadata
        backend = model.backend.name
        tensors = [(role, s.name, list(s.shape), str(s.dtype))
                   for role, specs in (("input", model.backend.inputs), ("output", model.backend.outputs))
                   for s in specs]
        plugins = model.backend.custom_ops
        precision = m.precision_summary()
        built = ""
    print(f"file:         {path}")
    print(f"kind:         {m.kind}")
    print(f"arch:         {m.arch}")
    print(f"backend:      {backend}")
    print(f"frame:        {m.frame_hw[0]}x{m.frame_hw[1]} uint8 BGR; network input {m.input_hw[0]}x{m.input_hw[1]}")
    print(f"classes ({m.num_classes}): {', '.join(m.classes)}")
    for role, name, shape, dtype in tensors:
        print(f"{role + ':':13} {name} {shape} {dtype}")
    print(f"precision:    {precision}")
    if built:
        print(f"built by:     {built}")
    if plugins:
        print(f"plugins:      {', '.join(plugins)} (namespace {PLUGIN_NAMESPACE}, version {PLUGIN_VERSION})")
    print(f"converted by: edgeseg {m.edgeseg_version}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    import json

    from edgeseg.doctor import as_json, cpu_path_works, report, run_checks

    results = run_checks()
    print(json.dumps(as_json(results)) if args.json else report(results))
    return 0 if cpu_path_works(results) else EXIT_ERROR


def cmd_lint(args: argparse.Namespace) -> int:
    """Check an ONNX file against what TensorRT's ONNX parser refuses: one line per violation
    (node, op, rule) and exit 1, or one line and exit 0 when it passes."""
    from edgeseg.lint import RULES, lint_file

    if args.model.suffix.lower() == ".engine":
        raise ArgumentError(f"{args.model.name}: lint checks the .onnx file an engine is built from")
    found = lint_file(args.model)
    for violation in found:
        print(violation)
    if not found:
        print(f"{args.model.name}: passes the {len(RULES)} rules of TensorRT's ONNX parser that edgeseg checks")
    return EXIT_ERROR if found else 0


def cmd_build(args: argparse.Namespace) -> int:
    from edgeseg.trt.gpu_imports import import_tensorrt

    import_tensorrt()
    from edgeseg.trt.build import BuildOptions, build_engine

    options = BuildOptions(timing_cache=args.timing_cache, workspace_mib=args.workspace,
                           embed_plugins=args.embed_plugins, verbose=args.verbose)
    out = build_engine(args.model, args.output, options, quiet=args.quiet)
    print(f"wrote {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from edgeseg.demo import run_demo

    path = run_demo(args.output, frames=args.frames, stills=args.stills, threads=args.threads, quiet=args.quiet)
    if args.quiet:  # run_demo says where everything is unless quiet
        print(f"wrote {path}")
    return 0


def cmd_demo_clip(args: argparse.Namespace) -> int:
    from edgeseg.democlip import make_demo_clip

    path = make_demo_clip(args.output, size_hw=args.frame)
    print(f"wrote {path}")
    return 0


def _output_help() -> str:
    """Every kind of ``-o``, from the lists the sinks dispatch on (argparse's help is %-formatted)."""
    from edgeseg.sinks import OUTPUT_FORMS

    return OUTPUT_FORMS.replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="edgeseg", description="Segmentation models from PyTorch to ONNX/TensorRT, run on video.")
    p.add_argument("--version", action="version", version=f"edgeseg {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    conv = sub.add_parser("convert", help="PyTorch checkpoint -> edgeseg ONNX")
    models = conv.add_subparsers(dest="model", required=True, parser_class=_Parser)
    h = models.add_parser("hrnet", help="HRNetV2 and HRNet-OCR semantic segmentation (official "
                                        "HRNet-Semantic-Segmentation)")
    h.add_argument("--arch", default="", help="w18_small_v1, w18_small_v2, w18, w32 or w48 (plain HRNetV2)")
    h.add_argument("--config", help="the official experiment .yaml instead of --arch: seg_hrnet or seg_hrnet_ocr, "
                                    "its stages, classes and align_corners")
    h.add_argument("--weights", type=Path, help="checkpoint (.pth): official files or a plain state_dict")
    h.add_argument("--random-weights", action="store_true", help="no checkpoint: untrained weights (tests)")
    h.add_argument("--num-classes", type=_ranged("--num-classes", int, 1),
                   help="default: from the checkpoint or --classes")
    h.add_argument("--classes", help="class names: cityscapes, lip, pascal_context, cocostuff, ade20k, a .txt (one "
                                     "per line) or a .json list (default with --config: its DATASET.DATASET)")
    h.add_argument("--frame", type=_hw_type("--frame"), required=True, help="camera frame HEIGHTxWIDTH, e.g. 512x1024")
    h.add_argument("--input-size", dest="input_hw", type=_hw_type("--input-size"),
                   help="run the network at HxW (default: frame)")
    h.add_argument("--align-corners", action="store_true", help="checkpoints of the HRNet-OCR branch")
    h.add_argument("--trust-checkpoint", action="store_true", help="allow full pickle loading (runs code)")
    _precision_arguments(h)
    h.add_argument("-o", "--output", type=Path, required=True, help="ONNX file to write")
    h.add_argument("-q", "--quiet", action="store_true")
    h.set_defaults(func=cmd_convert)

    m = models.add_parser("maskrcnn", help="torchvision Mask R-CNN instance segmentation")
    m.add_argument("--arch", required=True,
                   help="resnet50_fpn (torchvision v1), resnet50_fpn_v2, or resnet18_fpn_lite (the small model "
                        "edgeseg's reference weights use)")
    m.add_argument("--weights", type=Path, help="state_dict (.pth): torchvision's published files or your own")
    m.add_argument("--random-weights", action="store_true", help="no checkpoint: untrained weights (tests)")
    m.add_argument("--num-classes", type=_ranged("--num-classes", int, 2),
                   help="background included (COCO: 91); default: from the checkpoint")
    m.add_argument("--classes", help="class names: 'coco', a .txt (one per line) or a .json list")
    m.add_argument("--frame", type=_hw_type("--frame"), required=True, help="camera frame HEIGHTxWIDTH, e.g. 720x1280")
    m.add_argument("--score-thresh", type=float, default=0.05, help="keep detections scoring above this")
    m.add_argument("--max-detections", dest="detections", type=int, default=100,
                   help="K, the fixed number of output rows")
    m.add_argument("--max-candidates", type=int, default=3000, help="class boxes entering the final NMS")
    m.add_argument("--paste", choices=PASTE_MODES, default=PASTE_MODES[0],
                   help="mask pasting: torchvision's (integer box, > threshold), continuous (detectron2's "
                        "box coordinates, >= threshold), or zoom (matterport's unmold_mask: box edges rounded "
                        "to integers, skimage's linear zoom clipped to the mask's range, >= threshold)")
    m.add_argument("--mask-threshold", type=float, default=0.5, help="binarise pasted mask probabilities")
    m.add_argument("--trust-checkpoint", action="store_true", help="allow full pickle loading (runs code)")
    _precision_arguments(m)
    m.add_argument("-o", "--output", type=Path, required=True, help="ONNX file to write")
    m.add_argument("-q", "--quiet", action="store_true")
    m.set_defaults(func=cmd_convert)

    d2 = models.add_parser("detectron2", help="detectron2 Mask R-CNN (config.yaml + model_final.pth/.pkl), "
                                              "no detectron2 needed")
    d2.add_argument("--config", required=True, help="the config.yaml of the training run (or a model-zoo config "
                                                    "with its _BASE_ files beside it)")
    d2.add_argument("--weights", type=Path, help="model_final.pth ({'model': state_dict}) or a model-zoo .pkl")
    d2.add_argument("--random-weights", action="store_true", help="no checkpoint: untrained weights (tests)")
    d2.add_argument("--classes", help="class names: a .txt (one per line, detectron2's order) or a .json list")
    d2.add_argument("--frame", type=_hw_type("--frame"), required=True, help="camera frame HEIGHTxWIDTH")
    d2.add_argument("--score-thresh", type=float, default=None,
                    help="keep detections scoring above this (default: MODEL.ROI_HEADS.SCORE_THRESH_TEST)")
    d2.add_argument("--max-detections", dest="detections", type=int, default=None,
                    help="K, the fixed number of output rows (default: TEST.DETECTIONS_PER_IMAGE)")
    d2.add_argument("--max-candidates", type=int, default=3000, help="class boxes entering the final NMS")
    d2.add_argument("--mask-threshold", type=float, default=0.5, help="binarise pasted mask probabilities (>=)")
    d2.add_argument("--trust-checkpoint", action="store_true", help="allow full pickle loading (runs code)")
    _precision_arguments(d2)
    d2.add_argument("-o", "--output", type=Path, required=True, help="ONNX file to write")
    d2.add_argument("-q", "--quiet", action="store_true")
    d2.set_defaults(func=cmd_convert, arch="", num_classes=None)

    for family, what, weights in (
            ("maskrcnn-benchmark", "maskrcnn-benchmark Mask R-CNN (its YAML + model_final.pth)",
             "model_final.pth ({'model': state_dict}; float32 or float16)"),
            ("detectron", "Detectron (Caffe2) Mask R-CNN (its YAML + model_final.pkl)",
             "model_final.pkl (a pickled dict of Caffe2 blobs)")):
        fb = models.add_parser(family, help=f"{what}, without its code")
        fb.add_argument("--config", required=True, help="the YAML the model was trained with")
        fb.add_argument("--weights", type=Path, help=weights)
        fb.add_argument("--random-weights", action="store_true", help="no checkpoint: untrained weights (tests)")
        fb.add_argument("--classes", help="class names: a .txt (one per line, class 1 first) or a .json list")
        fb.add_argument("--frame", type=_hw_type("--frame"), required=True, help="camera frame HEIGHTxWIDTH")
        fb.add_argument("--score-thresh", type=float, default=None,
                        help="keep detections scoring above this (default: the config's)")
        fb.add_argument("--max-detections", dest="detections", type=int, default=None,
                        help="K, the fixed number of output rows (default: the config's detections per image)")
        fb.add_argument("--max-candidates", type=int, default=3000, help="class boxes entering the final NMS")
        fb.add_argument("--mask-threshold", type=float, default=None,
                        help="binarise pasted mask probabilities (>; default 0.5, Detectron: MRCNN.THRESH_BINARIZE)")
        fb.add_argument("--trust-checkpoint", action="store_true", help="allow full pickle loading (runs code)")
        _precision_arguments(fb)
        fb.add_argument("-o", "--output", type=Path, required=True, help="ONNX file to write")
        fb.add_argument("-q", "--quiet", action="store_true")
        fb.set_defaults(func=cmd_convert, arch="", num_classes=None)

    mp = models.add_parser("matterport", help="matterport Mask R-CNN (Keras .h5 + its Config), without TensorFlow")
    mp.add_argument("--config", required=True,
                    help="the Config: the training script (train.py, or train.py:ConfigClass when it has several; "
                         "read, never run) or a .json/.yaml of its attributes")
    mp.add_argument("--weights", type=Path, help="the .h5 that model.keras_model.save_weights() (or save()) wrote")
    mp.add_argument("--random-weights", action="store_true", help="no .h5: untrained weights (tests)")
    mp.add_argument("--classes", help="class names: a .txt (one per line: class 1 first, or \"BG\" first) or a .json "
                                      "list (default: class_1, class_2, ...)")
    mp.add_argument("--frame", type=_hw_type("--frame"), required=True, help="camera frame HEIGHTxWIDTH")
    mp.add_argument("--score-thresh", type=float, default=None,
                    help="DETECTION_MIN_CONFIDENCE: keep detections scoring >= this (default: the Config's; 0 keeps "
                         "all)")
    mp.add_argument("--max-detections", dest="detections", type=int, default=None,
                    help="DETECTION_MAX_INSTANCES, the fixed number of output rows (default: the Config's)")
    _precision_arguments(mp)
    mp.add_argument("-o", "--output", type=Path, required=True, help="ONNX file to write")
    mp.add_argument("-q", "--quiet", action="store_true")
    mp.set_defaults(func=cmd_convert, arch="", num_classes=None, trust_checkpoint=False)

    r = sub.add_parser("run", help="run a model on a camera, stream, video, image or folder and write the overlay")
    r.add_argument("model", type=Path, help=".onnx written by `edgeseg convert` or .engine by `edgeseg build`")
    r.add_argument("--source", required=True, action="append",
                   help=f"camera index (0) or /dev/videoN, video or image file, folder or glob of images, "
                        f"{', '.join(s + '://' for s in uris.STREAM_SOURCE_SCHEMES)} stream, csi://N (Jetson "
                        "camera), or a GStreamer pipeline; repeat for several streams on one model (then put "
                        "{stream} in -o and --json)")
    # str, not Path: a trailing "/" (a folder of PNGs) must survive
    r.add_argument("-o", "--output", action="append",
                   help=f"{_output_help()}; repeatable")
    r.add_argument("--show", action="store_true", help="show the overlay in a window")
    r.add_argument("--json", type=Path, help="per-frame results as JSON lines (masks as COCO RLE); the same as "
                                             "-o FILE.jsonl")
    r.add_argument("--width", type=_ranged("--width", int, 1), help="capture width asked of a camera")
    r.add_argument("--height", type=_ranged("--height", int, 1), help="capture height asked of a camera")
    r.add_argument("--fps", type=_ranged("--fps", float, 0, low_open=True), help="capture frame rate asked of a camera")
    r.add_argument("--hud", action="store_true", help="draw FPS, latency and dropped frames on the overlay")
    r.add_argument("--track", action="store_true",
                   help="instance models: a stable ID per object across frames (drawn as #id, 'track_ids' in --json)")
    r.add_argument("--reconnect-seconds", type=_ranged("--reconnect-seconds", float, 0), default=10.0,
                   help="how long to retry a camera or stream that stops delivering (default 10)")
    r.add_argument("--threads", type=_ranged("--threads", int, 1), default=None,
                   help="CPU threads (default: all cores)")
    r.add_argument("--alpha", type=_ranged("--alpha", float, 0, 1), default=0.5, help="overlay opacity 0..1")
    r.add_argument("--no-legend", action="store_true")
    r.add_argument("-q", "--quiet", action="store_true")
    r.set_defaults(func=cmd_run)

    i = sub.add_parser("info", help="what a model file (.onnx or .engine) holds")
    i.add_argument("model", type=Path)
    i.set_defaults(func=cmd_info)

    ev = sub.add_parser("eval", help="accuracy on a labelled data set: COCO box/mask AP or mIoU")
    ev.add_argument("model", type=Path, help=".onnx or .engine")
    ev.add_argument("--images", type=Path, required=True, help="folder of images")
    ev.add_argument("--coco", type=Path, help="instance models: COCO annotations (instances.json)")
    ev.add_argument("--category-map", help="instance models: label -> COCO category id, e.g. 1:1,2:3 or a JSON file")
    ev.add_argument("--labels", type=Path, help="semantic models: folder of label PNGs named like the images")
    ev.add_argument("--ignore-label", type=_ranged("--ignore-label", int, 0, 255), default=255,
                    help="semantic models: label value not scored (255)")
    ev.add_argument("--class-map", help="semantic models: label value -> class id, e.g. 7:0,8:1 or a JSON file")
    ev.add_argument("--max-images", type=_ranged("--max-images", int, 1), help="only the first N images")
    ev.add_argument("--threads", type=_ranged("--threads", int, 1), default=None,
                    help="CPU threads (default: all cores)")
    ev.add_argument("--json", action="store_true", help="the scores as one JSON object")
    ev.add_argument("-q", "--quiet", action="store_true")
    ev.set_defaults(func=cmd_eval)

    cp = sub.add_parser("compare", help="stage-by-stage parity of an .onnx model with the PyTorch model it came from")
    cp.add_argument("model", type=Path, help=".onnx written by `edgeseg convert`")
    cp.add_argument("--weights", type=Path, help="the checkpoint the model was converted from")
    cp.add_argument("--random-weights", action="store_true",
                    help="the seeded random weights of `edgeseg convert --random-weights`")
    cp.add_argument("--trust-checkpoint", action="store_true", help="allow a pickled checkpoint (runs its code)")
    cp.add_argument("--config", help="detectron2, maskrcnn-benchmark and Detectron models, and HRNet models "
                                     "converted with --config: the YAML they were converted from; matterport "
                                     "models: their Config (train.py[:ConfigClass], .json or .yaml)")
    cp.add_argument("--source", help="frames to compare on (an `edgeseg run` source; default: scikit-image's photos)")
    cp.add_argument("--frames", type=_ranged("--frames", int, 1), default=5,
                    help="at most this many frames (default 5)")
    cp.add_argument("--threads", type=_ranged("--threads", int, 1), default=None,
                    help="CPU threads (default: all cores)")
    cp.set_defaults(func=cmd_compare)

    be = sub.add_parser("bench", help="per-stage latency of a model (.onnx on the CPU, .engine on the GPU)")
    be.add_argument("model", type=Path)
    be.add_argument("--source", help="frames to time (any --source of `edgeseg run`; default: scikit-image's photos)")
    be.add_argument("--runs", type=_ranged("--runs", int, 1), default=30, help="timed runs (default 30)")
    be.add_argument("--warmup", type=_ranged("--warmup", int, 0), default=3, help="untimed runs first (default 3)")
    be.add_argument("--threads", type=_ranged("--threads", int, 1), default=None,
                    help="CPU threads for ONNX Runtime (default: all cores)")
    be.add_argument("--no-draw", action="store_true", help="leave the overlay stage out")
    be.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    be.set_defaults(func=cmd_bench)

    dr = sub.add_parser("doctor", help="what this machine has for edgeseg (TensorRT, GPU, plugins, video I/O...), "
                                       "each problem with its fix")
    dr.add_argument("--json", action="store_true", help="one JSON object instead of the lines")
    dr.set_defaults(func=cmd_doctor)

    lt = sub.add_parser("lint", help="check an ONNX file against what TensorRT's ONNX parser refuses (no TensorRT "
                                     "needed)")
    lt.add_argument("model", type=Path, help=".onnx file")
    lt.set_defaults(func=cmd_lint)

    b = sub.add_parser("build", help="edgeseg ONNX -> TensorRT engine for this GPU (needs TensorRT)")
    b.add_argument("model", type=Path, help=".onnx written by `edgeseg convert`")
    b.add_argument("-o", "--output", type=Path, required=True, help="engine file to write (.engine)")
    # The builder-flag precision of TensorRT 10 (gone in TensorRT 11): the precision is in the file now.
    moved = "the precision is in the ONNX file now: `edgeseg convert ... --precision fp16|int8`, then build it"
    for flag, nargs in (("--fp16", 0), ("--int8", 0), ("--calib-images", 1), ("--calib-cache", 1),
                        ("--calib-max-images", 1), ("--fp32-layers", 1)):
        b.add_argument(flag, action=_Removed, nargs=nargs, replacement=moved)
    b.add_argument("--timing-cache", type=Path, help="TensorRT timing cache: read if present, updated after the build")
    b.add_argument("--workspace", type=_ranged("--workspace", int, 1), default=2048,
                   help="builder workspace limit in MiB (default 2048)")
    b.add_argument("--embed-plugins", action="store_true",
                   help="store the plugin library in the engine (which makes it version-compatible, as TensorRT "
                        "requires), so running it needs no library file")
    b.add_argument("-v", "--verbose", action="store_true", help="show TensorRT's info messages")
    b.add_argument("-q", "--quiet", action="store_true")
    b.set_defaults(func=cmd_build)

    dm = sub.add_parser("demo", help="convert edgeseg's trained reference models and run them on a generated clip")
    dm.add_argument("-o", "--output", type=Path, default=Path("edgeseg-demo"), help="folder to write (edgeseg-demo)")
    dm.add_argument("--frames", type=_ranged("--frames", int, 1), default=90,
                    help="frames of the generated clip (default 90)")
    dm.add_argument("--stills", type=_ranged("--stills", int, 0), default=0,
                    help="also save this many output frames as PNG")
    dm.add_argument("--threads", type=_ranged("--threads", int, 1), default=None,
                    help="CPU threads (default: all cores)")
    dm.add_argument("-q", "--quiet", action="store_true")
    dm.set_defaults(func=cmd_demo)

    d = sub.add_parser("demo-clip", help="write a demo video made from scikit-image's photos")
    d.add_argument("-o", "--output", type=Path, default=Path("edgeseg-demo.mp4"))
    d.add_argument("--frame", type=_hw_type("--frame"), default=(512, 1024), help="HEIGHTxWIDTH")
    d.set_defaults(func=cmd_demo_clip)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    # torchvision triggers this deprecation of PyTorch's when it loads; it is not the user's to act on
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    default_show = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], *rest: Any, **kw: Any) -> None:
        if issubclass(category, EdgesegWarning):
            print(f"edgeseg: warning: {message}", file=sys.stderr)
        else:
            default_show(message, category, *rest, **kw)

    warnings.showwarning = show
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ArgumentError as exc:
        print(f"edgeseg: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EdgesegError as exc:
        print(f"edgeseg: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # a write or read the library did not name itself: still one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"edgeseg: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("edgeseg: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

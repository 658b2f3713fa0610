"""Turn an edgeseg .engine into a Triton Inference Server model repository entry.

    python samples/triton/export_model_repository.py MODEL.engine --repo models/ [--name NAME]
           [--instances 2] [--plugin-library libedgeseg_trt_plugins.so] [--force]

writes, and moves into place only once complete (a failed export leaves nothing behind)::

    models/NAME/config.pbtxt                 platform "tensorrt_plan", inputs/outputs from the engine
    models/NAME/1/model.plan                 the bare TensorRT plan (the .engine without its header)
    models/NAME/edgeseg.json                 the model's metadata, for clients: classes, frame size, masks
    models/NAME/libedgeseg_trt_plugins.so    Mask R-CNN engines only: the TensorRT plugin library

NAME defaults to the engine's file name without .engine. The plan only runs with the TensorRT
version and GPU it was built for: serve it from the Triton release that ships that TensorRT (the
script prints it). See samples/triton/README.md for the server command and a client. Needs only
edgeseg (no TensorRT, no GPU, no tritonclient).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import edgeseg
from edgeseg.atomic import atomic_directory
from edgeseg.custom_ops import MASK_BYTES_PER_WORD
from edgeseg.engine_file import EngineHeader, EngineTensor, plan_bytes, read_header
from edgeseg.metadata import METADATA_KEY
from edgeseg.trt.plugin_library import LIBRARY_NAME, find_library, library_tensorrt_version

AUTOREG_NAME = "libedgeseg_trt_plugins_autoreg.so"

PROG = "export_model_repository"

# numpy dtype name (as `edgeseg build` records it) -> Triton data type.
TRITON_TYPES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "bfloat16": "TYPE_BF16",
    "float32": "TYPE_FP32",
}

#: Bytes of mask per int32 element of the Mask R-CNN ``masks`` output (edgeseg.custom_ops).


def engine_tensors(header: EngineHeader, engine: Path) -> list[EngineTensor]:
    """The engine's inputs and outputs, from the list `edgeseg build` stores in the header."""
    tensors = header.build.tensors
    if not tensors:
        raise edgeseg.ModelFileError(
            f"{engine.name}: the engine header does not list its inputs and outputs (built by an older "
            "edgeseg); build it again with `edgeseg build`")
    for t in tensors:
        if t.dtype not in TRITON_TYPES:
            raise edgeseg.ModelFileError(f"{engine.name}: {t.role} {t.name} has type {t.dtype}, which Triton's "
                                         f"TensorRT backend does not take ({', '.join(TRITON_TYPES)})")
    return tensors


def pbtxt_string(text: str) -> str:
    """*text* as a protobuf text-format string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def config_pbtxt(name: str, tensors: list[EngineTensor], instances: int, metadata_json: str) -> str:
    """Triton's model configuration for the plan.

    ``max_batch_size: 0``: edgeseg engines take one frame with static shapes and no batch
    dimension, so ``dims`` are the full shapes and Triton must not batch (no dynamic_batching).
    Throughput for many streams comes from ``instance_group``: each instance is its own TensorRT
    execution context, so that many requests run at once on the GPU. The metadata rides along as
    a parameter the TensorRT backend ignores, for clients that ask the server for the config.
    """
    lines = [f"name: {pbtxt_string(name)}", 'platform: "tensorrt_plan"', "max_batch_size: 0"]
    for role in ("input", "output"):
        entries = [
            "  {\n"
            f"    name: {pbtxt_string(t.name)}\n"
            f"    data_type: {TRITON_TYPES[t.dtype]}\n"
            f"    dims: [ {', '.join(str(d) for d in t.shape)} ]\n"
            "  }"
            for t in tensors if t.role == role
        ]
        lines.append(f"{role} [\n" + ",\n".join(entries) + "\n]")
    lines.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_GPU\n  }}\n]")
    lines.append(f"parameters {{\n  key: {pbtxt_string(METADATA_KEY)}\n"
                 f"  value: {{ string_value: {pbtxt_string(metadata_json)} }}\n}}")
    return "\n".join(lines) + "\n"


def client_metadata(meta: edgeseg.ModelMetadata, metadata_json: str, name: str,
                    tensors: list[EngineTensor]) -> dict[str, Any]:
    """edgeseg.json: the model's metadata as edgeseg stores it (``edgeseg.ModelMetadata.from_json``
    reads it) plus a ``triton`` section with what a client needs to call the model and decode."""
    doc: dict[str, Any] = json.loads(metadata_json)
    triton: dict[str, Any] = {
        "model_name": name,
        # Triton's client data types are the config's without "TYPE_".
        "inputs": [{"name": t.name, "datatype": TRITON_TYPES[t.dtype][5:], "shape": list(t.shape)}
                   for t in tensors if t.role == "input"],
        "outputs": [{"name": t.name, "datatype": TRITON_TYPES[t.dtype][5:], "shape": list(t.shape)}
                    for t in tensors if t.role == "output"],
        "frame": "uint8 BGR, exactly frame_hw (height, width) x 3: resize before sending",
    }
    if meta.kind == "instance":
        width = meta.frame_hw[1]
        triton["num_detections"] = ("N, the detections found: read rows [0, N) of the other outputs only; mask rows "
                                    "from N on are not written and can hold an earlier request's masks")
        triton["masks"] = {
            "output": meta.outputs["masks"],
            "packing": f"int32 words of {MASK_BYTES_PER_WORD} consecutive uint8 mask bytes (1 = object); "
                       f"the last {-width % MASK_BYTES_PER_WORD} byte(s) of each row are padding",
            "decode": f"masks.view(np.uint8)[..., :{width}]",
            "width": width,
        }
        triton["boxes"] = "x0, y0, x1, y1 in frame pixels"
        triton["labels"] = "index into classes (0 = background)"
    else:
        triton["label_map"] = "HxW uint8, one index into classes per pixel"
    doc["triton"] = triton
    return doc


def tensorrt_major(version: str) -> int:
    match = re.match(r"\d+", version)
    return int(match.group()) if match else -1


def plugin_library_for(header: EngineHeader, engine: Path, given: Path | None) -> Path | None:
    """The plugin library to ship with the plan, checked against the engine's TensorRT version;
    None when the engine uses no plugin (HRNet)."""
    if not header.build.plugins:
        return None
    path = given if given is not None else find_library()
    if not path.is_file():
        raise edgeseg.ModelFileError(f"--plugin-library {path}: no such file")
    built = library_tensorrt_version(path)
    engine_major = tensorrt_major(header.build.tensorrt_version)
    if built // 10000 != engine_major:
        raise edgeseg.ModelFileError(
            f"{path} was built against TensorRT {built // 10000}.{built // 100 % 100} headers but {engine.name} "
            f"was built with TensorRT {header.build.tensorrt_version}; use the library built on the machine that "
            "built the engine")
    return path


def export(engine: str | os.PathLike[str], repo: str | os.PathLike[str], name: str | None = None,
           instances: int = 2, plugin_library: str | os.PathLike[str] | None = None, force: bool = False) -> Path:
    """Write ``repo/name`` (see the module docstring) and return it.

    Everything is written into a hidden temporary folder inside *repo* and renamed to
    ``repo/name`` at the end, so Triton never sees a half-written model and a failure leaves
    *repo* as it was. An existing ``repo/name`` is refused unless *force*.
    """
    engine, repo = Path(engine), Path(repo)
    name = name or engine.stem
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise edgeseg.ArgumentError(f"model name {name!r}: use letters, digits, '_', '-' and '.' "
                                    "(not starting with '.'), e.g. --name maskrcnn")
    if instances < 1:
        raise edgeseg.ArgumentError(f"--instances must be at least 1, got {instances}")
    if not repo.is_dir():
        raise edgeseg.OutputError(f"{repo}: no such folder; create the model repository first (mkdir -p {repo})")
    target = repo / name
    if target.exists() and not force:
        raise edgeseg.OutputError(f"{target} already exists; pass --force to replace it, or choose --name")

    # Read and check everything before writing anything.
    header = read_header(engine)  # ModelFileError for anything but an edgeseg engine
    if METADATA_KEY not in header.metadata:
        raise edgeseg.ModelFileError(f"{engine.name}: the engine carries no edgeseg metadata; "
                                     "build it with `edgeseg build`")
    metadata_json = header.metadata[METADATA_KEY]
    meta = edgeseg.ModelMetadata.from_json(metadata_json, source=engine.name)
    tensors = engine_tensors(header, engine)
    library = plugin_library_for(header, engine, Path(plugin_library) if plugin_library else None)
    plan = plan_bytes(engine)

    with atomic_directory(target) as tmp:  # appears whole or not at all, replacing an old one
        (tmp / "1").mkdir()
        (tmp / "1" / "model.plan").write_bytes(plan)
        (tmp / "config.pbtxt").write_text(config_pbtxt(name, tensors, instances, metadata_json), encoding="utf-8")
        doc = client_metadata(meta, metadata_json, name, tensors)
        (tmp / "edgeseg.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        if library is not None:
            shutil.copy2(library, tmp / LIBRARY_NAME)
            # Triton only dlopens plugin libraries: the auto-registering companion (built beside
            # the library when CMake finds libnvinfer) registers the creators on load.
            autoreg = library.with_name(AUTOREG_NAME)
            if autoreg.is_file():
                shutil.copy2(autoreg, tmp / AUTOREG_NAME)
    return target


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description="edgeseg .engine -> Triton model repository entry.")
    p.add_argument("engine", help=".engine written by `edgeseg build`")
    p.add_argument("--repo", required=True, help="the model repository folder (must exist)")
    p.add_argument("--name", help="model name (default: the engine's file name without .engine)")
    p.add_argument("--instances", type=int, default=2,
                   help="execution contexts on the GPU, i.e. requests served at once (default 2)")
    p.add_argument("--plugin-library", help=f"{LIBRARY_NAME} to ship with a Mask R-CNN engine (default: the one "
                                            "edgeseg loads: $EDGESEG_PLUGIN_LIBRARY or edgeseg/lib/)")
    p.add_argument("--force", action="store_true", help="replace an existing model of that name")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        target = export(args.engine, args.repo, args.name, args.instances, args.plugin_library, args.force)
    except edgeseg.EdgesegError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    build = read_header(args.engine).build
    print(f"wrote {target}: {build.precision} plan for TensorRT {build.tensorrt_version} on {build.gpu_name} "
          f"(compute capability {build.compute_capability}); serve it with the Triton container that ships "
          f"TensorRT {build.tensorrt_version}, on that GPU")
    if build.plugins:
        print(f"it needs TensorRT plugins ({', '.join(build.plugins)}): start tritonserver with "
              f"--backend-config=tensorrt,plugins=/models/{target.name}/{AUTOREG_NAME} (see README.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

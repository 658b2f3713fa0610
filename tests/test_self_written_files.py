"""Files edgeseg writes and reads back (issue 20.4): calibration statistics, the TensorRT timing
cache, the ``.engine`` header and the ONNX metadata. Each has one validation step; a damaged,
truncated, foreign or newer one is one line naming the file, what is wrong and the fix, or, for
a cache, is rebuilt with one warning line; never a traceback."""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

import edgeseg.cli as cli
from edgeseg.engine_file import MAGIC, BuildInfo, read_header, write_engine
from edgeseg.errors import CacheError, ConversionError, EdgesegWarning, ModelFileError, OutputError
from edgeseg.metadata import ModelMetadata
from edgeseg.precision import calibration
from edgeseg.trt.timing_cache import read_timing_cache, use_timing_cache

# ---------------------------------------------------------------- calibration statistics


def _statistics(path: Path, **ranges: tuple[float, float]) -> Path:
    """A calibration cache as edgeseg writes it (ONNX Runtime's save_tensors_data)."""
    from onnxruntime.quantization import CalibrationMethod, TensorsData, save_tensors_data
    from onnxruntime.quantization.calibrate import TensorData

    data = {name: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for name, (lo, hi) in ranges.items()}
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), path)
    return path


def _damaged(tmp_path: Path, how: str) -> Path:
    good = _statistics(tmp_path / "good.json", x=(-1.0, 2.0), y=(0.0, 6.0))
    raw = json.loads(good.read_text())
    path = tmp_path / "stats.json"
    if how == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif how == "binary":
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    elif how == "foreign":
        path.write_text(json.dumps({"x": [-1, 2]}))
    elif how == "list":
        path.write_text("[1, 2]")
    elif how == "method":
        path.write_text(json.dumps({**raw, "calibration_method": "Fastest"}))
    elif how == "empty":
        path.write_text(json.dumps({**raw, "data": {}}))
    elif how == "wrong type":
        path.write_text(json.dumps({**raw, "data": {"x": {"lowest": "low", "highest": 2.0, "CLS": "TensorData"}}}))
    elif how == "no range":
        path.write_text(json.dumps({**raw, "data": {"x": {"avg": 0.5, "CLS": "TensorData"}}}))
    elif how == "inverted":
        path.write_text(json.dumps({**raw, "data": {"x": {"lowest": 3.0, "highest": 2.0, "CLS": "TensorData"}}}))
    elif how == "nan":
        path.write_text(json.dumps({**raw}).replace("6.0", "NaN"))
    return path


STATISTICS = [
    ("truncated", "is not JSON (truncated or damaged)"),
    ("binary", "is not JSON (truncated or damaged)"),
    ("foreign", "is not a calibration cache (not ONNX Runtime's TensorsData JSON)"),
    ("list", "is not a calibration cache (not ONNX Runtime's TensorsData JSON)"),
    ("method", "is damaged (unknown calibration method 'Fastest')"),
    ("empty", "holds no statistics"),
    ("wrong type", "is damaged (ValueError: Unexpected type <class 'str'> for k='lowest')"),
    ("no range", "is damaged (tensor 'x' has no range)"),
    ("inverted", "is damaged (tensor 'x' has the range [3, 2])"),
    ("nan", "is damaged (tensor 'y' has the range [0, nan])"),
]


def test_statistics_edgeseg_wrote_are_usable(tmp_path: Path) -> None:
    assert calibration.statistics_problem(_statistics(tmp_path / "s.json", x=(-1.0, 2.0))) is None


@pytest.mark.parametrize(("how", "problem"), STATISTICS)
def test_damaged_statistics_are_named(tmp_path: Path, how: str, problem: str) -> None:
    path = _damaged(tmp_path, how)
    assert calibration.statistics_problem(path) == problem
    with pytest.raises(CacheError) as err:
        calibration.check_statistics(path, can_recalibrate=False)
    assert str(err.value) == (f"calibration cache {path} {problem}; delete it, or give --calib-images FOLDER to "
                              "calibrate again and rewrite it")
    with pytest.warns(EdgesegWarning) as caught:
        assert calibration.check_statistics(path, can_recalibrate=True) is False
    assert [str(w.message) for w in caught] == [f"calibration cache {path} {problem}; calibrating again, it will "
                                                "be rewritten"]


def _convert(out: Path, *extra: str) -> list[str]:
    return ["convert", "hrnet", "--arch", "w18_small_v1", "--random-weights", "--num-classes", "3",
            "--frame", "64x96", "-o", str(out), "-q", "--precision", "int8", *extra]


@pytest.mark.parametrize("how", ["truncated", "foreign", "inverted"])
def test_convert_with_damaged_statistics_and_no_images_is_one_line(
        tmp_path: Path, how: str, capsys: pytest.CaptureFixture[str]) -> None:
    # before: the export ran, then ONNX Runtime's loader raised (a JSONDecodeError or KeyError traceback)
    cache = _damaged(tmp_path, how)
    assert cli.main(_convert(tmp_path / "x.onnx", "--calib-cache", str(cache))) == 2
    problem = dict(STATISTICS)[how]
    assert capsys.readouterr().err == (f"edgeseg: error: calibration cache {cache} {problem}; delete it, or give "
                                       "--calib-images FOLDER to calibrate again and rewrite it\n")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize(("make", "code", "message"), [
    (lambda p: (p / "stats").mkdir(), 2, "--calib-cache {p}/stats: it is a folder; give a file name such as "
                                         "{p}/stats/stats.json"),
    (lambda p: None, 1, "cannot write {p}/missing/stats: folder {p}/missing does not exist; create it or choose "
                        "another path"),
])
def test_a_statistics_path_that_cannot_be_written_is_said_before_calibrating(
        tmp_path: Path, make: Any, code: int, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    make(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((8, 8, 3), np.uint8))
    cache = tmp_path / "stats" if code == 2 else tmp_path / "missing" / "stats"
    assert cli.main(_convert(tmp_path / "x.onnx", "--calib-cache", str(cache), "--calib-images", str(images))) == code
    assert capsys.readouterr().err == f"edgeseg: error: {message.format(p=tmp_path)}\n"
    assert not (tmp_path / "x.onnx").exists()


def test_damaged_statistics_are_recomputed_when_the_images_are_given(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(images / f"{i}.png"), rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    cache = _damaged(tmp_path, "truncated")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EdgesegWarning)  # the few-images warning
        warnings.filterwarnings("default", message="calibration cache", category=EdgesegWarning)
        assert cli.main(_convert(tmp_path / "x.onnx", "--calib-cache", str(cache), "--calib-images", str(images))) == 0
    assert (f"edgeseg: warning: calibration cache {cache} is not JSON (truncated or damaged); calibrating again, it "
            "will be rewritten\n") in capsys.readouterr().err
    assert calibration.statistics_problem(cache) is None  # rewritten whole
    assert (tmp_path / "x.onnx").is_file()

# ---------------------------------------------------------------- TensorRT timing cache


class FakeConfig:
    """The two builder-config calls the timing cache needs; *accepts* says which bytes TensorRT
    would take (b"" is a new, empty cache)."""

    def __init__(self, accepts: tuple[bytes, ...] = (b"",), raises: bool = False) -> None:
        self.accepts, self.raises = accepts, raises
        self.cache: bytes | None = None

    def create_timing_cache(self, data: bytes) -> bytes | None:
        if self.raises and data:
            raise TypeError("not a timing cache")
        return data if data in self.accepts else None

    def set_timing_cache(self, cache: bytes, ignore_mismatch: bool) -> bool:
        assert ignore_mismatch is False
        self.cache = cache
        return True


def test_a_timing_cache_is_read_and_used(tmp_path: Path) -> None:
    path = tmp_path / "t.cache"
    assert read_timing_cache(None) == b"" and read_timing_cache(path) == b""  # none yet: the build writes it
    path.write_bytes(b"TRT-CACHE")
    assert read_timing_cache(path) == b"TRT-CACHE"
    config = FakeConfig(accepts=(b"", b"TRT-CACHE"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        use_timing_cache(config, b"TRT-CACHE", path, lambda: "")
    assert config.cache == b"TRT-CACHE"


@pytest.mark.parametrize(("config", "reason"), [
    (FakeConfig(), "IBuilderConfig::createTimingCache: invalid cache"),  # damaged or foreign
    (FakeConfig(raises=True), ""),  # a TensorRT whose binding raises instead
])
def test_a_timing_cache_tensorrt_refuses_is_rebuilt_with_a_warning(tmp_path: Path, config: FakeConfig,
                                                                   reason: str) -> None:
    # before: the build stopped with an error (delete the file and run again)
    path = tmp_path / "t.cache"
    with pytest.warns(EdgesegWarning) as caught:
        use_timing_cache(config, b"garbage", path, lambda: reason)
    assert [str(w.message) for w in caught] == [
        f"--timing-cache {path}: TensorRT cannot use it "
        f"({reason or 'damaged, or written by another TensorRT version or GPU'}); building without it, it will be "
        "rewritten"]
    assert config.cache == b""  # an empty cache, filled by this build and written over the file


def test_no_timing_cache_at_all_is_an_error() -> None:
    with pytest.raises(ConversionError, match=r"^TensorRT could not set up a timing cache: out of memory$"):
        use_timing_cache(FakeConfig(accepts=()), b"", None, lambda: "out of memory")


def test_a_timing_cache_path_that_cannot_be_written_is_said_before_the_build(tmp_path: Path) -> None:
    # before: a folder was taken for "no cache yet", and both failed only when the cache was written, after the build
    (tmp_path / "caches").mkdir()
    with pytest.raises(CacheError) as err:
        read_timing_cache(tmp_path / "caches")
    assert str(err.value) == (f"--timing-cache {tmp_path}/caches: it is a folder; give a file name such as "
                              f"{tmp_path}/caches/timing.cache")
    with pytest.raises(OutputError) as err2:
        read_timing_cache(tmp_path / "missing" / "t.cache")
    assert str(err2.value) == (f"cannot write {tmp_path}/missing/t.cache: folder {tmp_path}/missing does not exist; "
                               "create it or choose another path")

# ---------------------------------------------------------------- .engine header

BUILD = BuildInfo("10.3.0", "Orin", "8.7", "fp32").to_dict()
PROPS = {"edgeseg": "{}"}


def _engine(path: Path, header: Any = None, raw: bytes | None = None) -> Path:
    data = raw if raw is not None else json.dumps(header).encode()
    path.write_bytes(MAGIC + struct.pack("<I", len(data)) + data + b"PLAN")
    return path


DAMAGED = "damaged engine header ({}); build it again with `edgeseg build`"


@pytest.mark.parametrize(("header", "message"), [
    ({"format_version": 2, "metadata": PROPS, "build": BUILD},
     "engine header format 2 is newer than this edgeseg reads; upgrade edgeseg, or build the engine again with this "
     "one (`edgeseg build`)"),
    ({"format_version": "1", "metadata": PROPS, "build": BUILD}, DAMAGED.format("format_version '1'")),
    ([PROPS, BUILD], DAMAGED.format("a JSON list, not an object")),
    ({"metadata": PROPS}, DAMAGED.format("'build'")),
    ({"metadata": PROPS, "build": {**BUILD, "plugins": "MultiLevelRoIAlign"}},
     DAMAGED.format("plugins: expected a list of names, got 'MultiLevelRoIAlign'")),
    # before: these two were read, and `edgeseg info` or the backend failed later with a ValueError traceback
    ({"metadata": PROPS, "build": {**BUILD, "extra": {"tensors": [["input", "frame", ["h", 4], "uint8"]]}}},
     DAMAGED.format("invalid literal for int() with base 10: 'h'")),
    ({"metadata": PROPS, "build": {**BUILD, "extra": {"data_dependent_shapes": "NonMaxSuppression"}}},
     DAMAGED.format("data_dependent_shapes: expected a list, got 'NonMaxSuppression'")),
])
def test_a_damaged_engine_header_is_one_line(tmp_path: Path, header: Any, message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = _engine(tmp_path / "m.engine", header)
    with pytest.raises(ModelFileError) as err:
        read_header(path)
    assert str(err.value) == f"m.engine: {message}"
    assert cli.main(["info", str(path)]) == 1
    assert capsys.readouterr().err == f"edgeseg: error: m.engine: {message}\n"


def test_engine_headers_carry_their_format_and_old_ones_still_read(tmp_path: Path) -> None:
    path = write_engine(tmp_path / "new.engine", b"PLAN", PROPS, BuildInfo.from_dict(BUILD))
    assert b'"format_version": 1' in path.read_bytes()
    assert read_header(path).build == BuildInfo.from_dict(BUILD)
    old = _engine(tmp_path / "old.engine", {"metadata": PROPS, "build": BUILD})  # before the header had a version
    assert read_header(old).build == BuildInfo.from_dict(BUILD)

# ---------------------------------------------------------------- ONNX metadata


@pytest.fixture(scope="module")
def metadata() -> dict[str, Any]:
    meta = ModelMetadata(kind="semantic", arch="hrnetv2_w18_small_v1", classes=("road", "car"),
                         palette=((128, 64, 128), (0, 0, 142)), frame_hw=(64, 96), input_hw=(64, 96),
                         outputs={"label_map": "label_map"}, extra={"align_corners": False})
    raw: dict[str, Any] = json.loads(meta.to_json())
    return raw


MALFORMED = "edgeseg metadata is malformed ({}); re-convert it"


@pytest.mark.parametrize(("change", "message"), [
    # before: each of these was accepted (a string's letters as class names, a negative frame, a colour
    # of 300, ...) or an AttributeError traceback (outputs as a list)
    ({"outputs": ["label_map"]}, MALFORMED.format("outputs: expected an object, got list")),
    ({"classes": "rc", "palette": [[0, 0, 0], [1, 1, 1]]}, MALFORMED.format("classes: expected a list, got str")),
    ({"frame_hw": [-64, 96]}, MALFORMED.format("frame_hw: expected [height, width] in pixels, both positive, got "
                                               "[-64, 96]")),
    ({"input_hw": [64]}, MALFORMED.format("input_hw: expected [height, width] in pixels, both positive, got [64]")),
    ({"palette": [[300, 0, 0], [0, 0, 142]]}, MALFORMED.format("palette: expected [r, g, b] in 0..255, got "
                                                                "[300, 0, 0]")),
    ({"input_name": 0}, MALFORMED.format("input_name: expected text, got int")),
    ({"extra": None}, MALFORMED.format("extra: expected an object, got NoneType")),
    ({"format_version": "1"}, "metadata format '1' is not one edgeseg writes (a whole number from 1); re-convert it"),
    ({"format_version": 0}, "metadata format 0 is not one edgeseg writes (a whole number from 1); re-convert it"),
])
def test_malformed_onnx_metadata_is_one_line(metadata: dict[str, Any], change: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelFileError) as err:
        ModelMetadata.from_json(json.dumps({**metadata, **change}), source="m.onnx")
    assert str(err.value) == f"m.onnx: {message}"


def test_mean_and_std_need_three_finite_values(metadata: dict[str, Any]) -> None:
    for bad in ([0.5], [0.5, 0.5, "x"]):
        prep = {**metadata["preprocessing"], "std": bad}
        with pytest.raises(ModelFileError, match=r"^m\.onnx: edgeseg metadata is malformed \(std: expected"):
            ModelMetadata.from_json(json.dumps({**metadata, "preprocessing": prep}), source="m.onnx")
    assert ModelMetadata.from_json(json.dumps(metadata), source="m.onnx").frame_hw == (64, 96)

# ---------------------------------------------------------------- COCO instances (scenes write them, eval reads)


@pytest.mark.parametrize(("text", "reason"), [
    ('{"images": [{"id": 1, "file_na', "not JSON (truncated or damaged)"),  # before: a JSONDecodeError traceback
    ('{"images": "x"}', "not COCO instances JSON"),  # before: a TypeError traceback from pycocotools
    ("[1]", "not COCO instances JSON"),  # before: pycocotools' AssertionError
])
def test_damaged_coco_instances_are_one_line(tmp_path: Path, text: str, reason: str) -> None:
    from edgeseg.errors import SourceError
    from edgeseg.evaluation import coco_instance_ap

    def never(frame: np.ndarray) -> Any:
        raise AssertionError("no image is read from damaged annotations")

    path = tmp_path / "instances.json"
    path.write_text(text)
    with pytest.raises(SourceError) as err:
        coco_instance_ap(never, path, tmp_path, quiet=True)
    assert str(err.value) == f"COCO annotations {path}: {reason}; pass the instances .json of the data set"

"""Every numeric option is range-checked, in the library and on the command line (exit 2 with the
allowed range), by the one function edgeseg.ranges.check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgeseg.cli as cli
from edgeseg import ranges
from edgeseg.errors import ArgumentError

M = "m.onnx"


@pytest.mark.parametrize(("argv", "message"), [
    (["run", M, "--source", "0", "--alpha", "1.5"], "argument --alpha: --alpha 1.5: must be a number in [0, 1]"),
    (["run", M, "--source", "0", "--fps", "0"], "argument --fps: --fps 0.0: must be a number > 0"),
    (["run", M, "--source", "0", "--width", "-4"], "argument --width: --width -4: must be an integer >= 1"),
    (["run", M, "--source", "0", "--height", "x"], "argument --height: --height 'x': must be an integer >= 1"),
    (["run", M, "--source", "0", "--reconnect-seconds", "-1"],
     "argument --reconnect-seconds: --reconnect-seconds -1.0: must be a number >= 0"),
    (["run", M, "--source", "0", "--threads", "0"], "argument --threads: --threads 0: must be an integer >= 1"),
    (["eval", M, "--images", ".", "--ignore-label", "300"],
     "argument --ignore-label: --ignore-label 300: must be an integer in [0, 255]"),
    (["eval", M, "--images", ".", "--max-images", "0"],
     "argument --max-images: --max-images 0: must be an integer >= 1"),
    (["bench", M, "--warmup", "-1"], "argument --warmup: --warmup -1: must be an integer >= 0"),
    (["compare", M, "--frames", "0"], "argument --frames: --frames 0: must be an integer >= 1"),
    (["build", M, "-o", "m.engine", "--workspace", "0"],
     "argument --workspace: --workspace 0: must be an integer >= 1"),
    (["convert", "hrnet", "--arch", "w18", "--frame", "64x64", "-o", M, "--calib-count", "0"],
     "argument --calib-count: --calib-count 0: must be an integer >= 1"),
    (["demo", "--stills", "-2"], "argument --stills: --stills -2: must be an integer >= 0"),
    (["convert", "hrnet", "--arch", "w18", "--frame", "64x64", "-o", M, "--num-classes", "0"],
     "argument --num-classes: --num-classes 0: must be an integer >= 1"),
    (["convert", "maskrcnn", "--arch", "resnet50_fpn", "--frame", "64x64", "-o", M, "--num-classes", "1"],
     "argument --num-classes: --num-classes 1: must be an integer >= 2"),
])
def test_cli_refuses_out_of_range_numbers_with_the_range(argv: list[str], message: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith(f"edgeseg: error: {message} (see `edgeseg ")


@pytest.mark.parametrize(("name", "value", "low", "high", "integer", "message"), [
    ("alpha", 2.0, 0, 1, False, "alpha 2.0: must be a number in [0, 1]"),
    ("alpha", float("nan"), 0, 1, False, "alpha nan: must be a number in [0, 1]"),
    ("runs", 1.5, 1, None, True, "runs 1.5: must be an integer >= 1"),
    ("runs", True, 1, None, True, "runs True: must be an integer >= 1"),
])
def test_check(name: str, value: float, low: float, high: float | None, integer: bool, message: str) -> None:
    with pytest.raises(ArgumentError) as err:
        ranges.check(name, value, low, high, integer=integer)
    assert str(err.value) == message
    assert ranges.check("alpha", 0.5, 0, 1) == 0.5


def test_library_calls_refuse_the_same_ranges(tmp_path: Path) -> None:
    from edgeseg.draw import draw_result
    from edgeseg.result import SemanticResult
    from edgeseg.sources import open_source

    frame = np.zeros((4, 4, 3), np.uint8)
    result = SemanticResult(np.zeros((4, 4), np.uint8), ("a",), ((1, 2, 3),))
    with pytest.raises(ArgumentError, match=r"^alpha 1\.2: must be a number in \[0, 1\]$"):
        draw_result(frame, result, alpha=1.2)
    with pytest.raises(ArgumentError, match=r"^fps -5: must be a number > 0$"):
        open_source(tmp_path, fps=-5)
    with pytest.raises(ArgumentError, match=r"^width 0: must be an integer >= 1$"):
        open_source(tmp_path, width=0)

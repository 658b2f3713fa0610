"""The `edgeseg` command end to end: convert, info, run on an image and a video, and its errors
(one line on stderr, a non-zero exit code, no partial output)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import edgeseg.cli as cli
from edgeseg.converters.hrnet.archs import ARCHS
from edgeseg.converters.hrnet.model import HRNetV2
from edgeseg.democlip import make_demo_clip
from tests.conftest import ExportedMaskRCNN, frame_count

FRAME = "96x128"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    torch.save(HRNetV2(ARCHS["w18_small_v1"], 19).state_dict(), d / "weights.pth")
    make_demo_clip(d / "clip.mp4", size_hw=(96, 128), seconds_per_photo=0.4, fps=10)
    return d


@pytest.fixture(scope="module")
def onnx_model(workdir: Path) -> Path:
    out = workdir / "hrnet.onnx"
    code = cli.main(["convert", "hrnet", "--arch", "w18_small_v1", "--classes", "cityscapes",
                     "--weights", str(workdir / "weights.pth"), "--frame", FRAME, "-o", str(out), "-q"])
    assert code == 0
    return out




def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_convert_writes_model_with_metadata(onnx_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["info", str(onnx_model)]) == 0
    out = capsys.readouterr().out
    assert "arch:         hrnetv2_w18_small_v1" in out
    assert "frame:        96x128 uint8 BGR; network input 96x128" in out
    assert "classes (19): road, sidewalk, building" in out
    assert "output:       label_map [96, 128] uint8" in out
    assert not [p for p in onnx_model.parent.iterdir() if ".partial" in p.name]


def test_run_on_an_image(onnx_model: Path, workdir: Path) -> None:
    photo = np.random.default_rng(1).integers(0, 255, (150, 200, 3), dtype=np.uint8)
    cv2.imwrite(str(workdir / "photo.png"), photo)
    out = workdir / "overlay.png"
    assert cli.main(["run", str(onnx_model), "--source", str(workdir / "photo.png"), "-o", str(out), "-q"]) == 0
    written = cv2.imread(str(out))
    assert written is not None
    assert written.shape == (150, 200, 3)
    assert not np.array_equal(written, photo)  # the overlay is drawn


def test_run_on_a_video_keeps_every_frame(onnx_model: Path, workdir: Path) -> None:
    out = workdir / "overlay.mp4"
    assert cli.main(["run", str(onnx_model), "--source", str(workdir / "clip.mp4"), "-o", str(out), "-q"]) == 0
    assert frame_count(out) == frame_count(workdir / "clip.mp4") == 20


def test_interrupted_run_keeps_a_playable_video(onnx_model: Path, workdir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeseg.draw

    real = edgeseg.draw.draw_result
    calls = {"n": 0}

    def draw_then_interrupt(*args: object, **kwargs: object) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(edgeseg.draw, "draw_result", draw_then_interrupt)
    out = workdir / "interrupted.mp4"
    assert cli.main(["run", str(onnx_model), "--source", str(workdir / "clip.mp4"), "-o", str(out), "-q"]) == 130
    assert frame_count(out) == 5
    assert not [p for p in workdir.iterdir() if ".partial" in p.name]


def test_run_writes_video_frames_and_json_lines_together(onnx_model: Path, workdir: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    video, folder, lines = workdir / "all.mp4", workdir / "frames", workdir / "results.jsonl"
    argv = ["run", str(onnx_model), "--source", str(workdir / "clip.mp4"), "-o", str(video), "-o", f"{folder}/",
            "--json", str(lines), "--hud", "-q"]
    assert cli.main(argv) == 0
    assert frame_count(video) == 20
    assert len(list(folder.glob("*.png"))) == 20
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(20))
    assert capsys.readouterr().out.strip().startswith("done: 20 frame(s), ")


def test_run_without_any_output_is_a_usage_error(onnx_model: Path, workdir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", str(onnx_model), "--source", str(workdir / "clip.mp4")]) == 2
    assert error_line(capsys) == ("edgeseg: error: nothing to write: give -o FILE (image, video or folder/), "
                                  "--show and/or --json FILE.jsonl")


def test_malformed_frame_size(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["convert", "hrnet", "--arch", "w18_small_v1", "--random-weights", "--num-classes", "3",
                  "--frame", "512by1024", "-o", str(tmp_path / "x.onnx")])
    assert info.value.code == 2
    assert error_line(capsys) == (
        "edgeseg: error: argument --frame: --frame '512by1024' is malformed: write HEIGHTxWIDTH in pixels, "
        "e.g. 720x1280 (see `edgeseg convert hrnet --help`)"
    )
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "dir" / "x.onnx"
    code = cli.main(["convert", "hrnet", "--arch", "w18_small_v1", "--random-weights", "--num-classes", "3",
                     "--frame", "64x64", "-o", str(out)])
    assert code == 1
    assert error_line(capsys) == (
        f"edgeseg: error: cannot write {out}: folder {out.parent} does not exist; create it or choose another path"
    )
    assert list(tmp_path.iterdir()) == []


def test_failed_export_leaves_no_file(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_export(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated exporter crash")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    code = cli.main(["convert", "hrnet", "--arch", "w18_small_v1", "--random-weights", "--num-classes", "3",
                     "--frame", "64x64", "-o", str(tmp_path / "x.onnx"), "-q"])
    assert code == 1
    assert error_line(capsys) == "edgeseg: error: ONNX export failed: RuntimeError: simulated exporter crash"
    assert list(tmp_path.iterdir()) == []


def test_weights_are_required_unless_random_is_asked_for(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = cli.main(["convert", "hrnet", "--arch", "w18_small_v1", "--num-classes", "3", "--frame", "64x64",
                     "-o", str(tmp_path / "x.onnx")])
    assert code == 2
    assert error_line(capsys) == (
        "edgeseg: error: give --weights PATH, or --random-weights to export an untrained model (for testing)"
    )


def test_run_with_a_foreign_onnx_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, workdir: Path) -> None:
    from tests.test_runtime_errors import plain_onnx

    plain_onnx(tmp_path / "plain.onnx")
    code = cli.main(["run", str(tmp_path / "plain.onnx"), "--source", str(workdir / "clip.mp4"),
                     "-o", str(tmp_path / "out.mp4")])
    assert code == 1
    assert error_line(capsys).startswith("edgeseg: error: plain.onnx: no edgeseg metadata;")
    assert not (tmp_path / "out.mp4").exists()


def test_console_script_reports_one_line_and_exit_code(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("edgeseg")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "edgeseg.cli"]
    proc = subprocess.run(
        [*cmd, "convert", "hrnet", "--arch", "w99", "--random-weights", "--num-classes", "3", "--frame", "64x64",
         "-o", str(tmp_path / "x.onnx")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "edgeseg: error: unknown HRNet arch 'w99'; choose one of: w18_small_v1, w18_small_v2, w18, w32, w48"
    )
    assert list(tmp_path.iterdir()) == []


def test_run_instance_model_on_an_image(maskrcnn_cli: ExportedMaskRCNN, tmp_path: Path,
                                        photos: list[np.ndarray]) -> None:
    cv2.imwrite(str(tmp_path / "coffee.png"), photos[1])
    out = tmp_path / "overlay.png"
    assert cli.main(["run", str(maskrcnn_cli.path), "--source", str(tmp_path / "coffee.png"), "-o", str(out),
                     "-q", "--threads", "2"]) == 0
    written = cv2.imread(str(out))
    assert written is not None and written.shape == photos[1].shape
    assert np.abs(written.astype(int) - photos[1]).sum() > 0  # masks and boxes drawn


def test_info_lists_the_plugins_an_instance_model_needs(maskrcnn_cli: ExportedMaskRCNN,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["info", str(maskrcnn_cli.path)]) == 0
    out = capsys.readouterr().out
    assert "kind:         instance" in out
    assert "plugins:      MultiLevelRoIAlign, PasteMasks (namespace edgeseg, version 1)" in out
    assert "output:       num_detections [1] int32" in out


def test_demo_command_writes_the_annotated_clip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`edgeseg demo` (README quick start): the shipped models converted and run on a generated clip."""
    out = tmp_path / "demo"
    assert cli.main(["demo", "-o", str(out), "--frames", "3", "-q"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out / 'demo.mp4'}"
    assert frame_count(out / "demo.mp4") == 3
    assert {p.name for p in out.glob("*.onnx")} == {"scenes_maskrcnn_lite.onnx", "scenes_hrnet_w18s1.onnx"}


def test_run_on_several_sources_writes_each_streams_outputs(onnx_model: Path, workdir: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import json

    clip = str(workdir / "clip.mp4")
    argv = ["run", str(onnx_model), "--source", clip, "--source", clip, "-o", str(tmp_path / "cam{stream}.mp4"),
            "--json", str(tmp_path / "cam{stream}.jsonl"), "-q"]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [f"stream 0 ({clip})", f"stream 1 ({clip})"]
    assert all(": done: 20 frame(s), " in line for line in lines)
    for i in (0, 1):
        assert frame_count(tmp_path / f"cam{i}.mp4") == 20
        records = [json.loads(line) for line in (tmp_path / f"cam{i}.jsonl").read_text().splitlines()]
        assert [r["frame"] for r in records] == list(range(20)) and {r["stream"] for r in records} == {i}


@pytest.mark.parametrize(("extra", "message"), [
    (["-o", "out.mp4"], "edgeseg: error: several sources write several outputs: put {stream} in out.mp4 "
                        "(e.g. -o cam{stream}.mp4, --json cam{stream}.jsonl)"),
    (["--show"], "edgeseg: error: --show with several sources: one window per stream is not supported; use "
                 "-o http://0.0.0.0:809{stream} for a live view of each"),
])
def test_several_sources_refuse_what_cannot_be_split(onnx_model: Path, workdir: Path, extra: list[str], message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    clip = str(workdir / "clip.mp4")
    assert cli.main(["run", str(onnx_model), "--source", clip, "--source", clip, *extra, "-q"]) == 2
    assert error_line(capsys) == message


def test_a_dead_source_among_several_is_named_before_anything_runs(onnx_model: Path, workdir: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    clip, missing = str(workdir / "clip.mp4"), str(tmp_path / "gone.mp4")
    code = cli.main(["run", str(onnx_model), "--source", clip, "--source", missing,
                     "-o", str(tmp_path / "cam{stream}.mp4"), "-q"])
    assert code == 1
    assert error_line(capsys) == (f"edgeseg: error: stream 1: {missing}: no such file; no stream was started: "
                                  "mend or drop that --source")
    assert list(tmp_path.iterdir()) == []  # nothing written, no partial files

"""`edgeseg bench`: the stages it reports and their consistency, on small models (no timing limits)."""

from __future__ import annotations

import json

import pytest

import edgeseg.cli as cli
from tests.conftest import ExportedHRNet, ExportedMaskRCNN


def test_bench_reports_every_stage_as_json(hrnet_small: ExportedHRNet, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", str(hrnet_small.path), "--runs", "4", "--warmup", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in report["stages"]] == ["preprocess", "inference", "postprocess", "draw"]
    assert (report["backend"], report["kind"], report["frame_hw"], report["runs"]) == (
        "onnxruntime", "semantic", [320, 480], 4)
    total = report["total"]
    assert 0 < total["p50_ms"] <= total["p99_ms"]
    # the stages make up the total (each run's total is the sum of its stages)
    assert sum(s["mean_ms"] for s in report["stages"]) == pytest.approx(total["mean_ms"], rel=1e-6)
    assert report["fps"] == pytest.approx(1000 / total["mean_ms"])
    assert report["peak_memory_mb"] > 50


def test_bench_table_breaks_the_cpu_inference_down(maskrcnn_cli: ExportedMaskRCNN,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", str(maskrcnn_cli.path), "--runs", "1", "--warmup", "0", "--no-draw"]) == 0
    out = capsys.readouterr().out
    assert "instance maskrcnn_resnet50_fpn on onnxruntime, frame 400x600, 1 runs after 0 warm-up" in out
    assert "inference breakdown:" in out
    assert "MultiLevelRoIAlign (edgeseg cpu" in out and "PasteMasks (edgeseg cpu kerne" in out
    assert "\ndraw " not in out


def test_bench_rejects_zero_runs(hrnet_small: ExportedHRNet, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", str(hrnet_small.path), "--runs", "0"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "edgeseg: error: argument --runs: --runs 0: must be an integer >= 1 (see `edgeseg bench --help`)")

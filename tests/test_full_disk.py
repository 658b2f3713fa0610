"""A write that fails (a full disk) is one clear line naming the path and the cause, exit 1, and
leaves nothing behind: no partial file under the final name, no stray temporary file."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest

import edgeseg.cli as cli
from edgeseg.atomic import atomic_directory, atomic_output
from edgeseg.errors import OutputError
from edgeseg.result import SemanticResult
from edgeseg.sinks import FrameRecord, JsonlSink

FULL = OSError(errno.ENOSPC, "No space left on device")


def expected(path: Path) -> str:
    return f"cannot write {path}: No space left on device; nothing was left behind: free space or choose another folder"


def test_convert_onto_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    import onnx

    def full_disk(model: object, path: str) -> None:
        Path(path).write_bytes(b"half an onnx file")
        raise FULL

    monkeypatch.setattr(onnx, "save", full_disk)
    out = tmp_path / "h.onnx"
    code = cli.main(["convert", "hrnet", "--arch", "w18_small_v1", "--random-weights", "--num-classes", "3",
                     "--frame", "64x64", "-o", str(out), "-q"])
    assert code == 1
    assert capsys.readouterr().err.splitlines()[-1] == f"edgeseg: error: {expected(out)}"
    assert list(tmp_path.iterdir()) == []


def test_json_lines_onto_a_full_disk(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "r.jsonl")
    frame = np.zeros((4, 4, 3), np.uint8)
    record = FrameRecord(0, 0.0, frame, SemanticResult(np.zeros((4, 4), np.uint8), ("a",), ((1, 2, 3),)), frame)
    sink.emit(record)
    assert sink._file is not None

    class FullFile:
        def write(self, text: str) -> int:
            raise FULL

        def close(self) -> None:
            raise FULL

    sink._file = FullFile()  # type: ignore[assignment]
    with pytest.raises(OutputError) as err:
        sink.emit(record)
    assert str(err.value) == expected(tmp_path / "r.jsonl")
    sink.close()
    assert list(tmp_path.iterdir()) == []


def test_atomic_writers_turn_os_errors_into_one_line(tmp_path: Path) -> None:
    with pytest.raises(OutputError) as err, atomic_output(tmp_path / "a.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise FULL
    assert str(err.value) == expected(tmp_path / "a.bin")
    with pytest.raises(OutputError) as err, atomic_directory(tmp_path / "d") as folder:
        (folder / "x").write_text("partial")
        raise FULL
    assert str(err.value) == expected(tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


def test_an_os_error_the_library_did_not_name_is_still_one_line(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    def broken(args: object) -> int:
        raise OSError(errno.EIO, "Input/output error", "/dev/sdz")

    monkeypatch.setattr(cli, "cmd_doctor", broken)
    assert cli.main(["doctor"]) == 1
    assert capsys.readouterr().err == "edgeseg: error: /dev/sdz: Input/output error\n"

import json

import pytest

from instructgen.records import Task
from instructgen.rundir import RunDir, RunDirError, incomplete_batch_tail


def test_fresh_resume_done_and_refusals(tmp_path):
    rd = RunDir(tmp_path / "r", "instructions")
    assert rd.open({"a": 1}) == "fresh"
    assert json.loads((tmp_path / "r" / "versions.json").read_text())["transformers"]
    assert RunDir(tmp_path / "r", "instructions").open({"a": 1}) == "resume"
    rd.mark_completed({"kept": 1})
    assert RunDir(tmp_path / "r", "instructions").open({"a": 1}) == "done"
    with pytest.raises(RunDirError, match=r"a: 1 -> 2"):
        RunDir(tmp_path / "r", "instructions").open({"a": 2})
    with pytest.raises(RunDirError, match="holds a 'instructions' run"):
        RunDir(tmp_path / "r", "curate").open({"a": 1})
    assert RunDir(tmp_path / "r", "instructions").open({"a": 2}, overwrite=True) == "fresh"
    assert not (tmp_path / "r" / "completed").exists()


def test_foreign_folder_is_never_touched(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(RunDirError, match="not an instructgen run folder"):
        RunDir(tmp_path, "instructions").open({}, overwrite=True)
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_incomplete_batch_tail():
    def rec(i, b, n):
        return Task(id=str(i), instruction="x", meta={"batch": b, "batch_size": n})
    whole = [rec(0, 0, 2), rec(1, 0, 2), rec(2, 1, 3), rec(3, 1, 3), rec(4, 1, 3)]
    assert incomplete_batch_tail(whole) == 5
    assert incomplete_batch_tail(whole[:4]) == 2
    assert incomplete_batch_tail([]) == 0


def test_overwrite_of_another_stage_removes_what_that_stage_wrote_and_only_that(tmp_path):
    from instructgen.rundir import release
    rd = RunDir(tmp_path / "r", "instructions")
    rd.open({"a": 1})
    (tmp_path / "r" / "instructions.jsonl").write_text("{}\n")
    release(tmp_path / "r")
    assert RunDir(tmp_path / "r", "curate").open({"b": 1}, overwrite=True) == "fresh"
    names = {p.name for p in (tmp_path / "r").iterdir()}
    assert "instructions.jsonl" not in names and json.loads((tmp_path / "r" / "config.json").read_text())["stage"] == "curate"

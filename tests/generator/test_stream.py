"""gen instructions on a streaming teacher: batches overlap on one decoder (the next batch's prompts take the
rows the last long rows of the current one leave), and the run writes exactly what the one-batch-at-a-time
loop writes with the same pool_lag. The fake decoder finishes rows out of order; the real decode loop's side
(rows added while others run decode as they would alone) is tested in test_hf_teacher.py; kill -9 while
streaming in test_bootstrap.py."""

import json
import sys
from pathlib import Path

import pytest

from instructgen.config import generation_config
from instructgen.generator.bootstrap import generate_instructions
from instructgen.generator.teachers import BudgetReached
from instructgen.records import read_tasks

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from fake_teacher import FakeStreamTeacher, FakeTeacher  # noqa: E402


def cfg(num, **kw):
    return generation_config(dict({"num": num, "batch_size": 4, "teacher": "fake"}, **kw))


def log_of(path: Path, name: str = "log.jsonl") -> list[dict]:
    rows = [json.loads(line) for line in (path / name).read_text().splitlines()]
    for r in rows:
        r["provenance"].pop("created_at")
    return rows


@pytest.mark.parametrize("rows", [1, 3, 8])
def test_streamed_run_writes_what_the_batch_loop_writes(tmp_path, rows):
    teacher = FakeStreamTeacher(rows=rows)
    s = generate_instructions(cfg(60, batch_size=3), tmp_path / "stream", teacher=teacher, quiet=True)
    generate_instructions(cfg(60, batch_size=3), tmp_path / "loop", teacher=FakeTeacher(), quiet=True)
    assert log_of(tmp_path / "stream") == log_of(tmp_path / "loop")
    assert log_of(tmp_path / "stream", "instructions.jsonl") == log_of(tmp_path / "loop", "instructions.jsonl")
    assert s["kept"] == 60 and s["teacher_calls"] > 4
    if rows > 1:
        assert teacher.overlapped > 0  # rows of two batches were decoded in the same steps


def test_pool_lag_decides_which_batches_a_prompt_may_show(tmp_path):
    for lag in (0, 1, 2):
        out = tmp_path / f"lag{lag}"
        generate_instructions(cfg(40, pool_lag=lag), out, teacher=FakeStreamTeacher(rows=4), quiet=True)
        log = log_of(out)
        batch_of = {r["id"]: r["meta"]["batch"] for r in log}
        shown = [(r["meta"]["batch"], batch_of[i]) for r in log for i in r["provenance"]["shown"] if i in batch_of]
        assert shown, "no prompt showed a machine instruction"
        assert all(b_shown <= b - 1 - lag for b, b_shown in shown)
        if lag == 0:
            assert any(b_shown == b - 1 for b, b_shown in shown)  # the original loop: the previous batch's
    a, b = log_of(tmp_path / "lag0"), log_of(tmp_path / "lag1")
    assert [r["instruction"] for r in a] != [r["instruction"] for r in b]  # the lag is part of what is made


def test_rows_left_at_num_are_cancelled_and_their_tokens_counted(tmp_path):
    teacher = FakeStreamTeacher(rows=4)
    s = generate_instructions(cfg(13, batch_size=8), tmp_path / "r", teacher=teacher, quiet=True)
    assert s["kept"] == 13 and teacher.cancelled > 0
    logged = {(r["meta"]["batch"], r["provenance"]["completion_index"]): r["provenance"]["completion_tokens"]
              for r in log_of(tmp_path / "r")}
    assert s["completion_tokens"] > sum(logged.values())  # unused and cancelled rows count too


@pytest.mark.parametrize("lag", [1, 2])
def test_budget_stop_writes_the_batches_the_batch_loop_writes_then_resumes_to_the_same_run(tmp_path, lag):
    with pytest.raises(BudgetReached):
        generate_instructions(cfg(80, max_tokens=1500, pool_lag=lag), tmp_path / "loop", teacher=FakeTeacher(),
                              quiet=True)
    with pytest.raises(BudgetReached):
        generate_instructions(cfg(80, max_tokens=1500, pool_lag=lag), tmp_path / "r",
                              teacher=FakeStreamTeacher(rows=3), quiet=True)
    part = log_of(tmp_path / "r")
    assert part == log_of(tmp_path / "loop")  # not a batch more: queued batches do not overlap under a budget
    batches = sorted({r["meta"]["batch"] for r in part})
    assert part and batches == list(range(len(batches)))  # whole batches, in order
    assert not (tmp_path / "r" / "completed").exists()
    generate_instructions(cfg(80, pool_lag=lag), tmp_path / "r", teacher=FakeStreamTeacher(rows=3), quiet=True)
    generate_instructions(cfg(80, pool_lag=lag), tmp_path / "ref", teacher=FakeStreamTeacher(rows=3), quiet=True)
    assert log_of(tmp_path / "r") == log_of(tmp_path / "ref")

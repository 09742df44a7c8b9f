"""Integration: the embedded student (SmolLM2-135M-Instruct) trains a handful of steps on real seed tasks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from instructgen.trainer import TrainConfig, train

SEEDS = Path(__file__).resolve().parents[2] / "instructgen" / "data" / "seed_tasks.jsonl"


@pytest.mark.slow
def test_embedded_student_trains_and_evaluates(tmp_path):
    lines = [json.loads(x) for x in SEEDS.read_text().splitlines()[:8]]
    data = tmp_path / "seeds.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in lines))
    cfg = TrainConfig(batch_size=2, grad_accum=1, max_steps=2, max_seq_length=128, min_heldout=2,
                      eval_generations=1, eval_max_new_tokens=6, eval_batch_size=2, benchmark="ifbench:2",
                      benchmark_max_new_tokens=24)
    metrics = train(cfg, data, tmp_path / "out", quiet=True)
    tr = metrics["train"]
    assert tr["steps"] == 2 and tr["quantization"] == "none" and tr["device"] == "cpu" and tr["examples"] == 6
    assert all(math.isfinite(metrics[k]["loss"]) for k in ("before", "after"))
    # real weights: far below the loss of a uniform guess over the 49,152-token vocabulary (10.8 nats)
    assert metrics["before"]["loss"] < 8.0
    info = json.loads((tmp_path / "out" / "adapter" / "training_info.json").read_text())
    assert info["eos_token"] == "<|im_end|>" and info["chat_template"] == "student"
    evals = [json.loads(x) for x in (tmp_path / "out" / "eval.jsonl").read_text().splitlines()]
    assert len(evals) == 1 and evals[0]["before"]  # the instruct model answers before tuning
    # the benchmark ran for real on both sides: IFBench's checkers scored the base and the tuned student
    bench = metrics["benchmark"]
    assert bench["suite"] == "ifbench:2" and bench["name"] == "IFBench" and bench["prompts"] == 2
    for side in ("before", "after", "floor"):
        assert all(0.0 <= bench[side][k] <= 1.0 for k in ("prompt_strict", "prompt_loose", "instruction_strict",
                                                         "instruction_loose")), (side, bench)
    for side in ("before", "after"):
        answers = [json.loads(x) for x in (tmp_path / "out" / f"benchmark_{side}" / "answers.jsonl").read_text()
                   .splitlines()]
        assert len(answers) == 2
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["benchmark"] == bench

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
    lines = [json.loads(x) for x in SEEDS.read_text().splitlines()[:12]]
    data = tmp_path / "seeds.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in lines))
    cfg = TrainConfig(batch_size=2, grad_accum=1, max_steps=3, max_seq_length=160, min_heldout=2,
                      eval_generations=2, eval_max_new_tokens=8, eval_batch_size=2)
    metrics = train(cfg, data, tmp_path / "out", quiet=True)
    tr = metrics["train"]
    assert tr["steps"] == 3 and tr["quantization"] == "none" and tr["device"] == "cpu"
    assert all(math.isfinite(metrics[k]["loss"]) for k in ("before", "after"))
    assert 1 < metrics["before"]["perplexity"] < 1000  # a real instruction model on real tasks, not noise
    info = json.loads((tmp_path / "out" / "adapter" / "training_info.json").read_text())
    assert info["eos_token"] == "<|im_end|>" and info["chat_template"] == "student"
    evals = [json.loads(x) for x in (tmp_path / "out" / "eval.jsonl").read_text().splitlines()]
    assert len(evals) == 2 and all(r["before"] for r in evals)  # the instruct model answers before tuning

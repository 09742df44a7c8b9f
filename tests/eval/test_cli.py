"""`gen eval` as a user runs it: real processes, one-line errors, kill -9 and resume, the embedded student."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eval_fixtures import IFEVAL_ROWS, write_ifeval

HERE = Path(__file__).resolve().parent
ENV = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", INSTRUCTGEN_TORCH_THREADS="1")


def gen(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "instructgen", "eval", *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=timeout)


def one_line_error(r, *needles):
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gen eval: error: "), r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_bad_suite(tiny_model, tmp_path):
    r = gen(tiny_model, "--suite", "ifbenchh", "--out", tmp_path / "out")
    one_line_error(r, "--suite 'ifbenchh': unknown suite", "ifbench:N")
    assert not (tmp_path / "out").exists()


def test_missing_suite_file(tiny_model, tmp_path):
    r = gen(tiny_model, "--suite", f"ifeval:{tmp_path / 'nope.jsonl'}", "--out", tmp_path / "out")
    one_line_error(r, "nope.jsonl: no such file")
    assert not (tmp_path / "out").exists()


def test_bad_ifeval_line(tiny_model, tmp_path):
    bad = [IFEVAL_ROWS[0], {**IFEVAL_ROWS[1], "instruction_id_list": ["change_case:no_such_case"]}]
    p = write_ifeval(tmp_path / "ife.jsonl", bad)
    r = gen(tiny_model, "--suite", f"ifeval:{p}", "--out", tmp_path / "out")
    one_line_error(r, f"{p}:2:", "unknown instruction 'change_case:no_such_case'")
    assert not (tmp_path / "out").exists()


def test_judge_flags_need_the_judge_suite(tiny_model, ifeval_file, tmp_path):
    r = gen(tiny_model, "--suite", f"ifeval:{ifeval_file}", "--against", tiny_model, "--out", tmp_path / "out")
    one_line_error(r, "--against is only for --suite judge:FILE")
    r = gen(tiny_model, "--suite", f"judge:{ifeval_file}", "--out", tmp_path / "out")
    one_line_error(r, "needs --judge")
    assert not (tmp_path / "out").exists()


def test_unknown_model(ifeval_file, tmp_path):
    r = gen(tmp_path / "no-model", "--suite", f"ifeval:{ifeval_file}", "--out", tmp_path / "out")
    one_line_error(r, "unknown model spec")


def test_kill_9_then_resume(tiny_model, tmp_path):
    rows = [dict(IFEVAL_ROWS[i % 4], key=i + 1, prompt=f"{IFEVAL_ROWS[i % 4]['prompt']} ({i})") for i in range(12)]
    suite = write_ifeval(tmp_path / "ife.jsonl", rows)
    out, answers = tmp_path / "out", tmp_path / "out" / "answers.jsonl"
    args = [tiny_model, "--suite", f"ifeval:{suite}", "--out", out, "--batch-size", "2", "--max-new-tokens", "4",
            "--cache-dir", tmp_path / "cache", "--quiet"]
    p = subprocess.Popen([sys.executable, str(HERE / "slow_eval.py"), "0.4", "eval", *map(str, args)], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None:
            if answers.exists() and len(answers.read_text().splitlines()) >= 4:
                break
            time.sleep(0.05)
        assert p.poll() is None, p.stderr.read().decode()
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    had = len(answers.read_text().splitlines())
    assert 4 <= had < 12 and not (out / "completed").exists()
    r = gen(*args)
    assert r.returncode == 0, r.stderr
    scores = json.loads((out / "scores.json").read_text())
    g = scores["generation"]
    assert g["resumed"] >= had and g["generated"] <= 12 - had
    assert g["resumed"] + g["from_cache"] + g["generated"] == 12
    ids = [json.loads(x)["id"] for x in answers.read_text().splitlines()]
    assert ids == [str(i) for i in range(1, 13)]
    assert (out / "completed").exists()
    r = gen(*args)  # finished: a no-op
    assert r.returncode == 0 and json.loads((out / "scores.json").read_text()) == scores


@pytest.mark.slow
def test_embedded_student_on_ifbench(tmp_path):
    out = tmp_path / "out"
    r = gen("smollm2-135m", "--suite", "ifbench:3", "--max-new-tokens", "32", "--out", out,
            "--cache-dir", tmp_path / "cache", timeout=900)
    assert r.returncode == 0, r.stderr
    scores = json.loads((out / "scores.json").read_text())
    assert scores["n_prompts"] == 3 and scores["n_scored"] == 3
    assert [p["key"] for p in scores["prompts"]] == ["231", "37", "28"]
    for k in ("prompt_level_strict", "inst_level_strict", "prompt_level_loose", "inst_level_loose"):
        assert 0.0 <= scores["metrics"][k] <= 1.0 and 0.0 <= scores["floor"][k] <= 1.0
    answers = [json.loads(x) for x in (out / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 3 and all(a["answer"].strip() for a in answers)  # the real model says something
    assert all(0 < a["new_tokens"] <= 32 for a in answers)
    assert "prompt-level strict" in r.stdout and "floor" in r.stdout


def test_a_refused_kwarg_value_is_a_bad_line_not_a_model_failure(tiny_model, tmp_path):
    bad = [IFEVAL_ROWS[0], {**IFEVAL_ROWS[2], "kwargs": [{"relation": "fewer", "num_words": 5}]}]
    p = write_ifeval(tmp_path / "ife.jsonl", bad)
    one_line_error(gen(tiny_model, "--suite", f"ifeval:{p}", "--out", tmp_path / "out"), f"{p}:2:", "kwargs[0]")
    assert not (tmp_path / "out").exists()


def test_an_adapter_or_model_that_cannot_load_is_one_line_before_any_work(tiny_model, ifeval_file, tmp_path):
    fake = tmp_path / "fakead"
    fake.mkdir()
    (fake / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    one_line_error(gen(tiny_model, "--adapter", fake, "--suite", f"ifeval:{ifeval_file}", "--out", tmp_path / "o1"),
                   "no adapter_model.safetensors")
    (fake / "adapter_config.json").write_text('{"peft_type": "PROMPT_TUNING"}')
    one_line_error(gen(tiny_model, "--adapter", fake, "--suite", f"ifeval:{ifeval_file}", "--out", tmp_path / "o2"),
                   "not a LoRA adapter")
    bare = tmp_path / "badmodel"
    bare.mkdir()
    (bare / "config.json").write_text("{}")
    one_line_error(gen(bare, "--suite", f"ifeval:{ifeval_file}", "--out", tmp_path / "o3"), "holds no tokenizer")
    one_line_error(gen(tiny_model, "--chat-template", tmp_path / "none.jinja", "--suite", f"ifeval:{ifeval_file}",
                       "--out", tmp_path / "o4"), "--chat-template")
    assert not any((tmp_path / o).exists() for o in ("o1", "o2", "o3", "o4"))

"""`gen train` end to end on the tiny student: layout, metrics, loss going down, nf4, resume after a kill."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from instructgen.rundir import RunDirError
from instructgen.trainer import train
from instructgen.trainer.data import DEFAULT_CHAT_TEMPLATE
from instructgen.trainer.preflight import PreflightError

sys.path.insert(0, str(Path(__file__).parent))
from tiny import records, tiny_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_output_layout_metrics_and_logs(trained_run):
    out, metrics = trained_run
    for name in ("config.json", "versions.json", "preflight.txt", "train_log.jsonl", "eval_before.json",
                 "eval.jsonl", "metrics.json", "summary.json", "completed", "adapter/adapter_config.json",
                 "adapter/adapter_model.safetensors", "adapter/tokenizer.json", "adapter/chat_template.jinja",
                 "adapter/training_info.json"):
        assert (out / name).is_file(), name
    assert (out / "completed").stat().st_mtime >= (out / "metrics.json").stat().st_mtime
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == ["checkpoint-15", "checkpoint-16"]
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert set(metrics) == {"before", "after", "train", "benchmark"} and metrics["benchmark"] is None
    assert set(metrics["before"]) == set(metrics["after"]) == {"loss", "perplexity"}
    tr = metrics["train"]
    for key in ("steps", "train_loss", "tokens_per_s", "seconds", "examples", "quantization"):
        assert key in tr, key
    assert tr["steps"] == 16 and tr["quantization"] == "none" and tr["examples"] == 20 and tr["tokens_per_s"] > 0
    assert math.isclose(metrics["before"]["perplexity"], math.exp(metrics["before"]["loss"]), rel_tol=1e-3)
    config = json.loads((out / "config.json").read_text())
    assert config["stage"] == "train" and config["config"]["lora_r"] == 8 and config["config"]["data_fingerprint"]

    log = rows(out / "train_log.jsonl")
    steps = [r for r in log if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 17))
    assert all(set(r) == {"step", "loss", "learning_rate", "tokens_per_s"} for r in steps)
    assert all(math.isfinite(r["loss"]) and r["tokens_per_s"] > 0 and r["learning_rate"] > 0 for r in steps)
    assert [r for r in log if "eval_loss" in r] == [{"step": 0, "eval_loss": metrics["before"]["loss"]},
                                                    {"step": 16, "eval_loss": metrics["after"]["loss"]}]

    evals = rows(out / "eval.jsonl")
    assert len(evals) == 3 and all(set(r) == {"id", "instruction", "input", "reference", "before", "after"}
                                   for r in evals)
    assert all(r["reference"] == " ".join([r["instruction"].split()[3]] * 3) for r in evals)
    info = json.loads((out / "adapter" / "training_info.json").read_text())
    assert info["eos_token"] == "<|im_end|>" and info["chat_template"] == "student"


def test_loss_decreases_on_a_small_repeated_set(trained_run):
    _, metrics = trained_run
    log = [r["loss"] for r in rows(trained_run[0] / "train_log.jsonl") if "loss" in r]
    assert sum(log[-4:]) / 4 < sum(log[:4]) / 4
    assert metrics["after"]["loss"] < metrics["before"]["loss"]


def test_rerun_is_a_noop_and_another_config_is_refused(trained_run, tiny_model, tmp_path):
    out, metrics = trained_run
    data = Path(json.loads((out / "config.json").read_text())["config"]["data"])
    stamp = (out / "completed").stat().st_mtime_ns
    again = train(tiny_config(tiny_model, quantization="none", max_steps=16), data, out, quiet=True)
    assert again == metrics and (out / "completed").stat().st_mtime_ns == stamp
    with pytest.raises(RunDirError, match="lora_r: 8 -> 4"):
        train(tiny_config(tiny_model, quantization="none", max_steps=16, lora_r=4), data, out, quiet=True)
    other = tmp_path / "other.json"
    other.write_text(json.dumps(records()[:-1]))
    with pytest.raises(RunDirError, match="data"):
        train(tiny_config(tiny_model, quantization="none", max_steps=16), other, out, quiet=True)


def test_nf4_trains_a_few_steps(tiny_model, tiny_data, tmp_path):
    metrics = train(tiny_config(tiny_model, quantization="nf4", max_steps=6, eval_generations=1), tiny_data,
                    tmp_path / "out", quiet=True)
    tr = metrics["train"]
    assert tr["quantization"] == "nf4" and tr["steps"] == 6
    losses = [r["loss"] for r in rows(tmp_path / "out" / "train_log.jsonl") if "loss" in r]
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert math.isfinite(metrics["after"]["loss"]) and metrics["after"]["loss"] < metrics["before"]["loss"]
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()


def test_nf4_cpu_gradients_survive_evaluation(tiny_model):
    """bitsandbytes repacks NF4 weights for a backward-less CPU kernel on an eval-mode forward; load_model turns
    that off, so the gradients after an evaluation are those of a model never evaluated."""
    import torch
    from peft import LoraConfig, get_peft_model

    from instructgen.trainer.config import plan
    from instructgen.trainer.loop import load_model

    cfg = tiny_config(tiny_model, quantization="nf4")
    x = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(0))

    def grads(evaluate_first: bool) -> torch.Tensor:
        model = load_model(str(tiny_model), plan(cfg, cuda=False), cfg)
        torch.manual_seed(0)
        pm = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                              init_lora_weights=False))
        if evaluate_first:
            pm.eval()
            with torch.no_grad():
                pm(input_ids=x)
            pm.train()
        pm(input_ids=x, labels=x).loss.backward()
        return next(p.grad for n, p in pm.named_parameters() if "layers.0.self_attn.q_proj.lora_A" in n)

    assert torch.allclose(grads(False), grads(True), rtol=1e-3, atol=1e-6)


def test_model_without_chat_template_trains_with_the_default_one(tiny_base_model, tiny_data, tmp_path):
    train(tiny_config(tiny_base_model, quantization="none", max_steps=2, eval_generations=1), tiny_data,
          tmp_path / "out", quiet=True)
    adapter = tmp_path / "out" / "adapter"
    assert (adapter / "chat_template.jinja").read_text() == DEFAULT_CHAT_TEMPLATE
    assert json.loads((adapter / "training_info.json").read_text())["chat_template"].startswith("default")
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(adapter)
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True) == "### Instruction:\nhi\n\n### Response:\n"


def test_bad_input_fails_before_the_output_folder_is_written(tiny_model, tiny_data, tmp_path):
    from instructgen.config import ConfigError
    from instructgen.models import ModelSpecError
    with pytest.raises(PreflightError, match="no token would be trained"):
        train(tiny_config(tiny_model, max_seq_length=8), tiny_data, tmp_path / "out", quiet=True)
    with pytest.raises(PreflightError, match="longer than max_seq_length=20"):
        train(tiny_config(tiny_model, max_seq_length=20), tiny_data, tmp_path / "out", quiet=True)
    with pytest.raises(ModelSpecError, match="no-such-model"):
        train(tiny_config(tmp_path / "no-such-model"), tiny_data, tmp_path / "out", quiet=True)
    with pytest.raises(ConfigError, match="chat_template"):
        train(tiny_config(tiny_model, chat_template=str(tmp_path / "none.jinja")), tiny_data, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # so the corrected command starts clean, with no --overwrite


def test_push_without_token_fails_before_any_work(tiny_model, tiny_data, tmp_path, monkeypatch):
    from instructgen.trainer.hub import HubError
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-token"))  # no saved login
    with pytest.raises(HubError, match="HF_TOKEN"):
        train(tiny_config(tiny_model), tiny_data, tmp_path / "out", push_to_hub="me/adapter")
    with pytest.raises(HubError, match="OWNER/NAME"):
        train(tiny_config(tiny_model), tiny_data, tmp_path / "out", push_to_hub="not a repo")
    assert not (tmp_path / "out").exists()


def test_killed_run_resumes_from_its_last_checkpoint(tiny_model, tiny_data, tmp_path):
    """Start `gen train` in a subprocess, kill -9 it once a checkpoint is on disk, run the same command again."""
    cfg = tmp_path / "train.yaml"
    cfg.write_text("\n".join(f"{k}: {v}" for k, v in dict(
        student=str(tiny_model), quantization="none", lora_r=8, lora_dropout=0.0, learning_rate=0.01,
        batch_size=4, grad_accum=1, max_steps=120, cpu_max_steps=0, save_steps=5, max_seq_length=64,
        eval_generations=1, eval_max_new_tokens=4, warmup_ratio=0.0).items()) + "\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "instructgen", "train", str(tiny_data), "--out", str(out), "--config", str(cfg),
           "--quiet"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 180
        while not list(out.glob("checkpoints/checkpoint-*/trainer_state.json")):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no checkpoint within 180 s"
            time.sleep(0.02)
        proc.kill()
    finally:
        proc.wait()
        proc.stderr.close()
    assert not (out / "completed").exists(), "the run finished before the kill; raise max_steps"
    before = (out / "eval_before.json").read_text()
    killed_at = max(int(p.parent.name.split("-")[1]) for p in out.glob("checkpoints/checkpoint-*/trainer_state.json"))

    from instructgen.cli import main
    assert main(cmd[3:]) == 0  # the same command again, in this process (no second interpreter start-up)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["resumed_from"] == f"checkpoint-{killed_at}" and metrics["train"]["steps"] == 120
    assert (out / "eval_before.json").read_text() == before  # the baseline is not recomputed
    log = rows(out / "train_log.jsonl")
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 121))  # no step logged twice or missing
    assert [r["step"] for r in log if "eval_loss" in r] == [0, 120]
    assert (out / "completed").exists()

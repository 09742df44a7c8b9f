"""`run_eval` on the tiny student (a real model built from a config): the run folder, the answer cache,
resume, refusal on a changed input, adapters and `gen train` folders, the reference and judge suites."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from instructgen.config import ConfigError
from instructgen.eval import METRICS, EvalConfig, headline, run_eval
from instructgen.eval import answers as A
from instructgen.models import ModelSpecError
from instructgen.rundir import COMMON, RunDirError
from instructgen.stage import STAGES


@pytest.fixture
def count_generate(monkeypatch):
    """Counts the prompts the model is asked to answer (wrapping the real generate_batch)."""
    calls = {"batches": 0, "prompts": 0}
    real = A.Student.generate_batch

    def counting(self, prompts, max_new_tokens):
        calls["batches"] += 1
        calls["prompts"] += len(prompts)
        return real(self, prompts, max_new_tokens)

    monkeypatch.setattr(A.Student, "generate_batch", counting)
    return calls


def cfg_for(model, suite, tmp_path, **kw) -> EvalConfig:
    return EvalConfig(model=str(model), suite=suite, max_new_tokens=6, batch_size=2,
                      cache_dir=str(tmp_path / "cache"), **kw)


def test_run_folder_scores_and_no_op(tiny_model, ifeval_file, tmp_path, count_generate):
    out = tmp_path / "out"
    scores = run_eval(cfg_for(tiny_model, f"ifeval:{ifeval_file}", tmp_path), out, quiet=True)
    assert count_generate["prompts"] == 4
    assert set(p.name for p in out.iterdir()) <= set(COMMON + STAGES["eval"].owned)
    assert {"answers.jsonl", "scores.json", "scores.txt", "completed", "config.json"} <= {p.name for p in out.iterdir()}
    on_disk = json.loads((out / "scores.json").read_text())
    assert on_disk == scores
    assert set(scores["metrics"]) == set(METRICS) and set(scores["floor"]) == set(METRICS) | {"answer"}
    assert scores["suite"]["n_prompts"] == 4 and scores["suite"]["version"].startswith("lm-eval==")
    assert scores["model"]["model_hash"] and scores["model"]["adapter_hash"] is None
    gen = scores["generation"]
    assert gen["max_new_tokens"] == 6 and gen["generated"] == 4 and gen["seconds_per_answer"] > 0
    rows = [json.loads(x) for x in (out / "answers.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1", "2", "3", "4"]  # suite order
    assert "prompt-level strict" in (out / "scores.txt").read_text()
    h = headline(scores)
    assert h["suite"] == f"ifeval:{ifeval_file}" and h["n_prompts"] == 4
    assert set(METRICS) <= set(h) and set(h["floor"]) == set(METRICS)
    # a finished folder: nothing generated, the same scores back
    again = run_eval(cfg_for(tiny_model, f"ifeval:{ifeval_file}", tmp_path), out, quiet=True)
    assert again == scores and count_generate["prompts"] == 4


def test_cache_second_run_generates_nothing(tiny_model, ifeval_file, tmp_path, count_generate):
    first = run_eval(cfg_for(tiny_model, f"ifeval:{ifeval_file}", tmp_path), tmp_path / "a", quiet=True)
    assert count_generate["prompts"] == 4
    second = run_eval(cfg_for(tiny_model, f"ifeval:{ifeval_file}", tmp_path), tmp_path / "b", quiet=True)
    assert count_generate["prompts"] == 4  # every answer came from the cache
    assert second["generation"]["from_cache"] == 4 and second["generation"]["generated"] == 0
    assert second["metrics"] == first["metrics"]
    # another setting is another cache entry
    run_eval(cfg_for(tiny_model, f"ifeval:{ifeval_file}", tmp_path, limit=2) , tmp_path / "c", quiet=True)
    assert count_generate["prompts"] == 4  # a limit keeps prompts: still cached
    cfg = cfg_for(tiny_model, f"ifeval:{ifeval_file}", tmp_path)
    cfg.max_new_tokens = 5
    run_eval(cfg, tmp_path / "d", quiet=True)
    assert count_generate["prompts"] == 8


def test_resume_after_an_interrupted_run(tiny_model, ifeval_file, tmp_path, monkeypatch):
    real, seen = A.Student.generate_batch, []

    def dies_after_one_batch(self, prompts, max_new_tokens):
        if seen:
            raise KeyboardInterrupt
        seen.append(len(prompts))
        return real(self, prompts, max_new_tokens)

    monkeypatch.setattr(A.Student, "generate_batch", dies_after_one_batch)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_eval(cfg_for(tiny_model, f"ifeval:{ifeval_file}", tmp_path), out, quiet=True)
    assert len((out / "answers.jsonl").read_text().splitlines()) == 2 and not (out / "completed").exists()
    with open(out / "answers.jsonl", "a") as f:
        f.write('{"id": "3", "ans')  # a line torn by a kill
    monkeypatch.setattr(A.Student, "generate_batch", real)
    cfg = cfg_for(tiny_model, f"ifeval:{ifeval_file}", tmp_path)
    cfg.cache_dir = str(tmp_path / "other-cache")  # so the 2 answers must come from the run folder
    scores = run_eval(cfg, out, quiet=True)
    assert (scores["generation"]["resumed"], scores["generation"]["generated"]) == (2, 2)
    ids = [json.loads(x)["id"] for x in (out / "answers.jsonl").read_text().splitlines()]
    assert ids == ["1", "2", "3", "4"]


def test_changed_suite_file_is_refused(tiny_model, ifeval_file, tmp_path):
    out = tmp_path / "out"
    run_eval(cfg_for(tiny_model, f"ifeval:{ifeval_file}", tmp_path), out, quiet=True)
    before = (out / "scores.json").read_text()
    rows = [json.loads(x) for x in ifeval_file.read_text().splitlines()]
    rows[0]["prompt"] = "Something else entirely, without commas."
    ifeval_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(RunDirError, match="suite_fingerprint: the suite changed"):
        run_eval(cfg_for(tiny_model, f"ifeval:{ifeval_file}", tmp_path), out, quiet=True)
    assert (out / "scores.json").read_text() == before
    with pytest.raises(RunDirError, match="max_new_tokens"):
        cfg = cfg_for(tiny_model, f"ifeval:{ifeval_file}", tmp_path)
        cfg.max_new_tokens = 9
        run_eval(cfg, out, quiet=True)
    run_eval(cfg_for(tiny_model, f"ifeval:{ifeval_file}", tmp_path), out, overwrite=True, quiet=True)
    assert json.loads((out / "answers.jsonl").read_text().splitlines()[0])["prompt"].startswith("Something else")


def test_out_inside_the_model_folder_is_refused(tiny_model, ifeval_file, tmp_path):
    with pytest.raises(RunDirError, match="inside the input"):
        run_eval(cfg_for(tiny_model, f"ifeval:{ifeval_file}", tmp_path), tiny_model / "eval", quiet=True)
    assert not (tiny_model / "eval").exists()


@pytest.mark.parametrize("kw,msg", [
    ({"judge": "smollm2-135m"}, "--judge is only for --suite judge:FILE"),
    ({"against": "smollm2-135m"}, "--against is only for"),
    ({"max_new_tokens": 0}, "--max-new-tokens must be at least 1"),
    ({"batch_size": 0}, "--batch-size"),
])
def test_bad_options(tiny_model, ifeval_file, tmp_path, kw, msg):
    cfg = cfg_for(tiny_model, f"ifeval:{ifeval_file}", tmp_path)
    for k, v in kw.items():
        setattr(cfg, k, v)
    with pytest.raises(ConfigError, match=msg):
        run_eval(cfg, tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()


def _adapter(model: Path, folder: Path) -> Path:
    """A real (random-initialised) LoRA adapter for the tiny student, with the tokenizer saved beside it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.manual_seed(1)
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(model),
                          LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.save_pretrained(folder)
    AutoTokenizer.from_pretrained(model).save_pretrained(folder)
    return folder


def test_adapter_and_train_folder(tiny_model, ifeval_file, tmp_path):
    adapter = _adapter(tiny_model, tmp_path / "adapter")
    with_adapter = run_eval(cfg_for(tiny_model, f"ifeval:{ifeval_file}", tmp_path, adapter=str(adapter)),
                            tmp_path / "o1", quiet=True)
    assert with_adapter["model"]["adapter_hash"]
    # a gen train output folder: its base student plus its adapter/
    train = tmp_path / "train"
    train.mkdir()
    (train / "config.json").write_text(json.dumps({"stage": "train", "config": {"student": str(tiny_model)}}))
    (train / "completed").write_text("x\n")
    _adapter(tiny_model, train / "adapter")
    via_train = run_eval(cfg_for(train, f"ifeval:{ifeval_file}", tmp_path), tmp_path / "o2", quiet=True)
    assert via_train["model"]["adapter_hash"] == with_adapter["model"]["adapter_hash"]
    assert via_train["model"]["model_hash"] == with_adapter["model"]["model_hash"]
    assert via_train["generation"]["from_cache"] == 4  # same model, same adapter: the same answers
    with pytest.raises(ModelSpecError, match="brings its own adapter"):
        run_eval(cfg_for(train, f"ifeval:{ifeval_file}", tmp_path, adapter=str(adapter)), tmp_path / "o3", quiet=True)
    with pytest.raises(ModelSpecError, match="no adapter_config.json"):
        run_eval(cfg_for(tiny_model, f"ifeval:{ifeval_file}", tmp_path, adapter=str(tmp_path)), tmp_path / "o4",
                 quiet=True)


def test_reference_suite(tiny_model, tmp_path):
    data = tmp_path / "ref.json"
    data.write_text(json.dumps([{"instruction": "Repeat the word apple three times.", "input": "",
                                 "output": "apple apple apple"},
                                {"instruction": "Repeat the word river three times.", "input": "",
                                 "output": "river river river"}]))
    s = run_eval(cfg_for(tiny_model, f"reference:{data}", tmp_path), tmp_path / "out", quiet=True)
    assert 0.0 <= s["metrics"]["rouge_l"] <= 1.0 and s["floor"]["rouge_l"] == 0.0
    assert headline(s)["rouge_l"] == s["metrics"]["rouge_l"] and headline(s)["prompt_level_strict"] is None


class ScriptedJudge:
    """A judge teacher that always prefers the output shown first (pure position bias)."""

    name = "scripted:first"

    def __init__(self):
        self.prompts = []

    def generate(self, prompts, sampling):
        from instructgen.generator.teachers import Completion
        self.prompts += prompts
        return [Completion("Output (1)", "stop", 1, 1) for _ in prompts]


def test_judge_suite_wiring(tiny_model, tmp_path, monkeypatch):
    import instructgen.generator.teachers as T
    judge = ScriptedJudge()
    monkeypatch.setattr(T, "make_teacher", lambda spec, **kw: judge)
    data = tmp_path / "instr.json"
    data.write_text(json.dumps([{"instruction": f"Repeat the word {w} three times.", "input": "", "output": ""}
                                for w in ("apple", "river", "stone")]))
    adapter = _adapter(tiny_model, tmp_path / "adapter")
    cfg = cfg_for(tiny_model, f"judge:{data}", tmp_path, judge="openai:http://127.0.0.1:9/v1@judge",
                  against=str(tiny_model), against_adapter=str(adapter))
    out = tmp_path / "out"
    s = run_eval(cfg, out, quiet=True)
    j = s["judge"]
    assert j["n_pairs"] == 3 and j["win_rate"] == 0.5 and j["ties"] == 3  # both orders cancel the bias
    lines = (out / "judgements.jsonl").read_text().splitlines()
    assert len(lines) == 6 and {json.loads(x)["order"] for x in lines} == {"ab", "ba"}
    assert len((out / "against_answers.jsonl").read_text().splitlines()) == 3
    assert s["against"]["adapter_hash"] and headline(s)["win_rate"] == 0.5
    asked = len(judge.prompts)  # the probe of check_judge plus 6 verdicts
    assert asked == 7
    # resuming the judging: judgements already on disk are not asked again
    (out / "completed").unlink()
    run_eval(cfg, out, quiet=True)
    assert len(judge.prompts) == asked + 1  # only the probe


def test_every_config_field_is_documented():
    from dataclasses import fields
    assert all(f.metadata.get("doc") for f in fields(EvalConfig))
    assert EvalConfig(model="m").suite == "ifbench:16"  # the default the training wiring relies on


def test_a_chat_template_file_is_used_and_is_part_of_the_identity(tiny_model, ifeval_file, tmp_path,
                                                                  count_generate):
    t = tmp_path / "plain.jinja"
    t.write_text("{% for m in messages %}<<{{ m['content'] }}>>{% endfor %}{% if add_generation_prompt %}=>"
                 "{% endif %}")
    out = tmp_path / "out"
    run_eval(cfg_for(tiny_model, f"ifeval:{ifeval_file}", tmp_path), tmp_path / "own", quiet=True)
    assert count_generate["prompts"] == 4
    run_eval(cfg_for(tiny_model, f"ifeval:{ifeval_file}", tmp_path, chat_template=str(t)), out, quiet=True)
    assert count_generate["prompts"] == 8  # another rendered prompt: nothing comes from the cache
    assert json.loads((out / "config.json").read_text())["config"]["chat_template_fingerprint"]
    t.write_text(t.read_text() + " ")
    (out / "completed").unlink()
    with pytest.raises(RunDirError, match="chat_template_fingerprint"):
        run_eval(cfg_for(tiny_model, f"ifeval:{ifeval_file}", tmp_path, chat_template=str(t)), out, quiet=True)

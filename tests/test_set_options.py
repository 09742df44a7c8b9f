"""Issue 12, "Config the same way": one typed config per stage, every field a generated flag, `--set KEY=VALUE`
for any option (a curate filter entry's by its name, a `gen run` stage's by the stage), the precedence
defaults < preset < --config < flags < --set, and `gen run` keeping a per-stage teacher and seed.

Generation runs here use a stand-in backend registered as `stub:` (orchestration only: which teacher each stage
built and what its config.json says); curation runs the real chain on a small literal file."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from instructgen.cli import build_parser, main
from instructgen.config import CurateOptions, GenerationConfig
from instructgen.eval import EvalConfig
from instructgen.generator.instances import InstancesConfig
from instructgen.generator.teachers import TEACHERS
from instructgen.pipeline import RunConfig
from instructgen.trainer.config import TrainConfig, train_config

sys.path.insert(0, str(Path(__file__).parent / "generator"))

CHAIN = "filters:\n  - filter: length\n    min_words: 3\n    max_words: 1000\n    fields: [instruction]\n" \
        "  - filter: exact_dedup\n    fields: [instruction, input]\n"
# command -> (its typed config, the module declaring FLAG_EXCLUSIONS)
STAGES = {"instructions": GenerationConfig, "instances": InstancesConfig, "train": TrainConfig, "eval": EvalConfig,
          "curate": CurateOptions, "run": RunConfig}


def subparser(name: str):
    return build_parser()._subparsers._group_actions[0].choices[name]


def read_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())["config"]


@pytest.fixture
def records(tmp_path) -> Path:
    rows = [{"instruction": f"Explain idea number {i} in plain words.", "input": "", "output": f"Idea {i}."}
            for i in range(4)]
    rows.append({"instruction": "Name three colours.", "input": "", "output": "Red, green, blue."})  # 3 words
    rows.append(dict(rows[0]))  # an exact duplicate
    (tmp_path / "data.json").write_text(json.dumps(rows))
    (tmp_path / "chain.yaml").write_text(CHAIN)
    return tmp_path


# ------------------------------------------------------------------------------------------ generated flags

@pytest.mark.parametrize("command", sorted(STAGES))
def test_every_config_field_has_a_flag_but_the_documented_exclusions(command):
    import importlib
    cls = STAGES[command]
    excluded = importlib.import_module(f"instructgen.commands.{command}").FLAG_EXCLUSIONS
    names = [f.name for f in dataclasses.fields(cls)]
    assert set(excluded) <= set(names) and all(len(why) > 10 for why in excluded.values())
    flags = {a.dest: a for a in subparser(command)._actions if a.option_strings and a.dest in names}
    assert len(flags) == len(names) - len(excluded), sorted(set(names) - set(flags) - set(excluded))
    for name, action in flags.items():
        assert "--" + name.replace("_", "-") in action.option_strings
        assert len(action.help) > 10  # the field's doc


def test_the_counts_the_issue_named_are_all_flags_now():
    """The issue counted 33 training and 23 generation options with only 17 and 11 flags; the configs have
    grown since, and every field is a flag."""
    for command, at_least in (("train", 33), ("instructions", 23)):
        fields = [f.name for f in dataclasses.fields(STAGES[command])]
        dests = {a.dest for a in subparser(command)._actions if a.option_strings}
        assert len(fields) >= at_least and set(fields) <= dests


def test_flags_are_typed_from_the_annotation_and_old_forms_still_work():
    from instructgen.cli import flag_values
    a = subparser("train").parse_args(["d", "--out", "o", "--lr", "1e-4", "--no-double-quant", "--lora-r", "8",
                                       "--lora-target-modules", "q_proj,v_proj", "--gradient-checkpointing"])
    assert flag_values(a, TrainConfig) == {"learning_rate": 1e-4, "double_quant": False, "lora_r": 8,
                                           "lora_target_modules": ["q_proj", "v_proj"],
                                           "gradient_checkpointing": True}
    a = subparser("instructions").parse_args(["--out", "o", "--stop", "a,b", "--stop", "c", "--blacklist", "",
                                              "--teacher-options", "{device: cpu}", "--no-mean-similarity"])
    assert flag_values(a, GenerationConfig) == {"stop": ["a", "b", "c"], "blacklist": [],
                                                "teacher_options": {"device": "cpu"}, "mean_similarity": False}
    a = subparser("run").parse_args(["--out", "o", "--no-train"])
    assert a.train is False and subparser("run").parse_args(["--out", "o"]).train is None
    with pytest.raises(SystemExit):
        subparser("train").parse_args(["d", "--out", "o", "--quantization", "int8"])  # choices kept


def test_help_states_the_precedence_and_imports_no_torch():
    import subprocess
    code = ("import sys, contextlib, io\nfrom instructgen.cli import main\nbuf = io.StringIO()\n"
            "for cmd in ('instructions', 'instances', 'curate', 'train', 'eval', 'run'):\n"
            "    with contextlib.redirect_stdout(buf):\n"
            "        try:\n            main([cmd, '--help'])\n        except SystemExit:\n            pass\n"
            "print('torch' in sys.modules, buf.getvalue().count('--config < flags < --set'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    torch, n = r.stdout.split()
    assert torch == "False" and int(n) >= 6, r.stderr


def test_completion_offers_the_generated_flags():
    from instructgen.commands.completion import script
    text = script(build_parser(), "bash")
    for flag in ("--lora-target-modules", "--no-double-quant", "--adam-beta2", "--top-k-similar", "--set",
                 "--workers", "--ray-address", "--shard-size", "--teacher-options"):
        assert flag in text, flag


# ---------------------------------------------------------------------------------------- precedence

def test_precedence_default_config_file_flags_set(tmp_path):
    y = tmp_path / "t.yaml"
    y.write_text("lora_r: 8\nlora_alpha: 32\nlearning_rate: 1e-4\n")
    assert TrainConfig().lora_r == 64
    assert train_config({}, str(y)).lora_r == 8
    assert train_config({"lora_r": 12}, str(y)).lora_r == 12
    c = train_config({"lora_r": 12}, str(y), [("lora_r", 16), ("warmup_ratio", "1e-2")])
    assert (c.lora_r, c.lora_alpha, c.learning_rate, c.warmup_ratio) == (16, 32, 1e-4, 0.01)
    from instructgen.config import generation_config
    g = generation_config({"temperature": 0.8}, None, [("temperature", 0.9), ("preset", "alpaca")])
    assert (g.temperature, g.num_prompt_instructions) == (0.9, 3)  # --set beats the flag; its preset applies


def test_curate_set_on_top_of_config_and_flags(records, monkeypatch, capsys):
    import instructgen.filters.stage as stage
    seen = {}
    monkeypatch.setattr(stage, "curate", lambda *a, **kw: seen.update(kw) or {})
    assert main(["curate", str(records / "data.json"), "--out", str(records / "o"), "--config",
                 str(records / "chain.yaml"), "--set", "length.min_words=5", "--executor", "ray", "--workers", "3",
                 "--set", "workers=2", "--ray-address", "auto", "--shard-size", "500"]) == 0
    assert (seen["executor"], seen["workers"], seen["ray_address"], seen["shard_size"]) == ("ray", 2, "auto", 500)
    length, dedup = seen["config"].filters
    assert (length.params.min_words, length.params.max_words, dedup.enabled) == (5, 1000, True)
    assert main(["curate", str(records / "data.json"), "--out", str(records / "o")]) == 0
    assert seen["executor"] == "local" and seen["workers"] == 1 and seen["shard_size"] == 10_000  # the defaults


# ------------------------------------------------------------------------------------- --set lands in config.json

def test_curate_set_changes_a_filters_option_and_enabled(records, capsys):
    out = records / "cur"
    assert main(["curate", str(records / "data.json"), "--out", str(out), "--config", str(records / "chain.yaml"),
                 "--set", "length.min_words=4", "--set", "exact_dedup.enabled=false", "--quiet"]) == 0
    cfg = read_config(out)
    assert cfg["filters"]["length"]["min_words"] == 4 and cfg["filters"]["exact_dedup"]["enabled"] is False
    kept = [json.loads(x)["instruction"] for x in (out / "kept.jsonl").read_text().splitlines()]
    assert "Name three colours." not in kept and len(kept) == 5  # 3 words < 4; the duplicate is kept
    # the same on the packaged default chain, by entry name, seen by --print-config
    assert main(["curate", "--print-config", "--set", "minhash.threshold=0.8", "--set", "embedding.enabled=false"]) == 0
    chain = {e["name"]: e for e in __import__("yaml").safe_load(capsys.readouterr().out)["filters"]}
    assert chain["minhash"]["threshold"] == 0.8 and chain["embedding"]["enabled"] is False
    assert chain["rouge_l"]["threshold"] == 0.7  # the rest as packaged


from stub_backend import Stub  # noqa: E402


@pytest.fixture
def stub(monkeypatch):
    Stub.built = []
    monkeypatch.setitem(TEACHERS, "stub", (Stub, "a test backend"))
    return Stub


def test_generation_stage_sets_land_in_config_json(tmp_path, stub):
    out = tmp_path / "ins"
    assert main(["instructions", "--out", str(out), "--teacher", "stub:m", "--num", "3", "--batch-size", "2",
                 "--set", "temperature=0.9", "--set", "top_k_similar=3", "--quiet"]) == 0
    c = read_config(out)
    assert (c["temperature"], c["top_k_similar"], c["batch_size"]) == (0.9, 3, 2)
    inst = tmp_path / "inst"
    assert main(["instances", str(out), "--out", str(inst), "--teacher", "stub:m", "--set", "max_instances=2",
                 "--set", "presence_penalty=0.5", "--quiet"]) == 0
    c = read_config(inst)
    assert (c["max_instances"], c["presence_penalty"]) == (2, 0.5)


def test_train_and_eval_sets_reach_their_config(tmp_path, monkeypatch, capsys):
    assert main(["train", "d.json", "--out", str(tmp_path / "o"), "--set", "lora_target_modules=[q_proj, v_proj]",
                 "--set", "lora_r=16", "--print-config"]) == 0
    c = json.loads(capsys.readouterr().out)  # what train() records in config.json (to_dict of this config)
    assert c["lora_target_modules"] == ["q_proj", "v_proj"] and c["lora_r"] == 16
    import instructgen.eval as ev
    seen = []
    monkeypatch.setattr(ev, "run_eval", lambda cfg, out, **kw: seen.append(cfg))
    assert main(["eval", "smollm2-135m", "--limit", "3", "--set", "max_new_tokens=64", "--set", "limit=2"]) == 0
    assert (seen[0].model, seen[0].max_new_tokens, seen[0].limit) == ("smollm2-135m", 64, 2)


# ------------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("argv, message", [
    (["train", "d.json", "--set", "lora_rank=4"],
     "--set lora_rank: unknown option 'lora_rank' (did you mean 'lora_r'"),
    (["train", "d.json", "--set", "lora_r=big"], "--set lora_r: option 'lora_r' must be int, got 'big'"),
    (["train", "d.json", "--set", "lora_dropout=2"], "--set lora_dropout: lora_dropout must be in [0, 1)"),
    (["train", "d.json", "--set", "lora_r"], "--set lora_r: expected KEY=VALUE"),
    (["instructions", "--set", "top_p=0"], "--set top_p: top_p must be in (0, 1]"),
    (["instances", "d.json", "--set", "max_instance=3"], "(did you mean 'max_instances'"),
    (["eval", "m", "--set", "sute=ifbench"], "--set sute: unknown option 'sute' (did you mean 'suite'?)"),
    (["curate", "d.json", "--set", "minhsh.threshold=0.8"],
     "--set minhsh.threshold: unknown filter entry 'minhsh' (did you mean 'minhash'?)"),
    (["curate", "d.json", "--set", "minhash.treshold=0.8"],
     "--set minhash.treshold: unknown option 'treshold' of filter minhash (did you mean 'threshold'?)"),
    (["curate", "d.json", "--set", "minhash.threshold=high"], "--set minhash.threshold: option 'threshold' must be"),
    (["curate", "d.json", "--set", "minhash.threshold=5"], "--set minhash.threshold: minhash: threshold must be in"),
    (["curate", "d.json", "--set", "embedding.enabled=maybe"], "--set embedding.enabled: 'enabled' must be true"),
    (["curate", "d.json", "--set", "workers=0"], "--set workers: --workers must be at least 1"),
    (["curate", "d.json", "--ray-address", "auto"], "--ray-address applies to --executor ray only"),
    (["run", "--set", "train.lora_rank=4"], "--set train.lora_rank: unknown option 'lora_rank' (did you mean"),
    (["run", "--set", "trian.lora_r=4"], "--set trian.lora_r: unknown stage 'trian' (did you mean 'train'?)"),
    (["run", "--set", "curate.minhash.threshold=high"], "--set curate.minhash.threshold: option 'threshold' must"),
    (["run", "--set", "curate.minhash.treshold=0.8"], "--set curate.minhash.treshold: unknown option 'treshold'"),
    (["run", "--set", "instructions.top_p=0"], "--set instructions.top_p: top_p must be in (0, 1]"),
    (["run", "--set", "curate.workers=0"], "--set curate.workers: --workers must be at least 1"),
])
def test_bad_set_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.json").write_text(json.dumps([{"instruction": "Say hello to the team today.", "output": "Hi"}]))
    out = tmp_path / "out"
    assert main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gen {argv[0]}: error: ") and len(err.strip().splitlines()) == 1, err
    assert message in err, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["d.json"]


# ------------------------------------------------------------------------------- gen run: per-stage values win

RUN_YAML = """teacher: stub:shared
seed: 42
instructions:
  teacher: stub:ins
  seed: 5
  batch_size: 2
instances:
  teacher: stub:inst
  batch_size: 2
training:
  seed: 9
curate:
  filters:
    - filter: length
      min_words: 3
      max_words: 1000
      fields: [instruction]
    - filter: exact_dedup
      fields: [instruction, input]
"""


def test_gen_run_keeps_a_per_stage_teacher_and_seed(tmp_path, stub, monkeypatch):
    """run.yaml names a teacher and a seed for the run and others for single stages: each stage's config.json
    shows its own (before issue 12 the run-level ones silently replaced them)."""
    import instructgen.report
    import instructgen.trainer
    trained = []
    monkeypatch.setattr(instructgen.trainer, "train", lambda cfg, data, out, **kw: trained.append(cfg) or {})
    monkeypatch.setattr(instructgen.report, "write_report", lambda run, out: out)  # not under test here
    (tmp_path / "run.yaml").write_text(RUN_YAML)
    out = tmp_path / "run"
    assert main(["run", "--config", str(tmp_path / "run.yaml"), "--num", "3", "--out", str(out), "--quiet",
                 "--set", "train.lora_r=16", "--set", "curate.length.min_words=4", "--set", "curate.workers=2"]) == 0
    ins, inst = read_config(out / "instructions"), read_config(out / "instances")
    assert (ins["teacher"], ins["seed"], ins["num"]) == ("stub:ins", 5, 3)
    assert inst["teacher"] == "stub:inst"
    assert [t.name for t in stub.built] == ["stub:ins", "stub:inst"] and all(t.closed == 1 for t in stub.built)
    assert all(t.prompts > 0 for t in stub.built)  # each stage called its own teacher
    [train] = trained
    assert (train.seed, train.lora_r) == (9, 16)  # the training section's seed, then the --set
    assert read_config(out / "curated")["filters"]["length"]["min_words"] == 4
    run = read_config(out)
    assert run["training"] == {"seed": 9, "lora_r": 16} and run["curate"]["workers"] == 2  # resume compares these


def test_gen_run_without_per_stage_values_uses_the_run_level_ones(tmp_path, stub, monkeypatch):
    import instructgen.report
    monkeypatch.setattr(instructgen.report, "write_report", lambda run, out: out)
    (tmp_path / "run.yaml").write_text("curate:\n  " + CHAIN.replace("\n", "\n  "))
    out = tmp_path / "run"
    assert main(["run", "--config", str(tmp_path / "run.yaml"), "--teacher", "stub:one", "--seed", "7", "--num",
                 "3", "--no-train", "--out", str(out), "--quiet", "--set", "instructions.batch_size=2"]) == 0
    assert (read_config(out / "instructions")["teacher"], read_config(out / "instructions")["seed"]) == ("stub:one", 7)
    assert read_config(out / "instances")["teacher"] == "stub:one"
    assert [t.name for t in stub.built] == ["stub:one"]  # one teacher shared by both stages, as before

import json
import sys
from pathlib import Path

import pytest

from instructgen.records import RecordError
from instructgen.report.collect import find_stages, load_run, reproduce_commands, stage_kind
from instructgen.report.figures import funnel_steps, samples

sys.path.insert(0, str(Path(__file__).parent))
from fake_run import make_run  # noqa: E402


def test_stage_detection(tmp_path):
    run = make_run(tmp_path / "run")
    assert {k: stage_kind(run / k) for k in ("instructions", "instances", "curated", "train")} == {
        "instructions": "instructions", "instances": "instances", "curated": "curated", "train": "train"}
    stages, single = find_stages(run)
    assert not single and set(stages) == {"instructions", "instances", "curated", "train"}
    stages, single = find_stages(run / "curated")
    assert single and stages == {"curated": run / "curated"}
    # a stage folder under another name is found by its config.json
    (run / "curated").rename(run / "my-dedup")
    assert find_stages(run)[0]["curated"] == run / "my-dedup"
    with pytest.raises(RecordError, match="not a run folder"):
        find_stages(tmp_path)
    with pytest.raises(FileNotFoundError):
        find_stages(tmp_path / "nope")


def test_funnel_steps_chain_in_filter_order(tmp_path):
    run = load_run(make_run(tmp_path / "run"))
    steps = funnel_steps(run)
    assert [(s.stage, s.name) for s in steps] == [
        ("instructions", "parse"), ("instructions", "length"), ("instructions", "blacklist"),
        ("instructions", "prefix"), ("instructions", "rouge_l"), ("instances", "instance_rules"),
        ("curated", "minhash"), ("curated", "readability")]
    for a, b in zip(steps[:4], steps[1:5]):
        assert b.records_in == a.kept  # within a stage each filter sees what the previous one kept
    assert steps[4].kept == len(run.stages["instructions"].kept)
    assert steps[1].params == {"min_words": 4, "max_words": 150}


def test_missing_and_incomplete(tmp_path):
    run = load_run(make_run(tmp_path / "run", stages=("instructions", "curated"), incomplete=("curated",)))
    assert [m.split("/")[0] for m in run.missing] == ["instances", "train"]
    assert [s.kind for s in run.incomplete] == ["curated"]
    assert run.final().kind == "curated"


def test_samples_show_each_reason_first(tmp_path):
    run = load_run(make_run(tmp_path / "run"))
    kept, dropped = samples(run, n_kept=5, n_dropped=7)
    assert len(kept) == 5 and all(t.kept for t in kept)
    assert len({(k, t.verdict.reason) for k, t in dropped}) == 7  # 7 reasons exist: one example each


def test_reproduce_commands_chain_the_stages(tmp_path):
    assert reproduce_commands(load_run(make_run(tmp_path / "run"))) == [
        "gen instructions --config instructgen/instructions/config.yaml --out run/instructions",
        "gen instances run/instructions --config instructgen/instances/config.yaml --out run/instances",
        "gen curate run/instances --config instructgen/curated/curate.yaml --out run/curated",
        "gen train run/curated --config instructgen/train/config.yaml --out run/train"]


def test_reproduce_prefers_a_recorded_command(tmp_path):
    run_dir = make_run(tmp_path / "run", stages=("instructions",))
    assert reproduce_commands(load_run(run_dir)) == [
        "gen instructions --config instructgen/instructions/config.yaml --out run/instructions"]
    cfg = json.loads((run_dir / "instructions" / "config.json").read_text())
    cfg["argv"] = ["gen", "instructions", "--num", "5", "--out", "my run"]
    (run_dir / "instructions" / "config.json").write_text(json.dumps(cfg))
    assert reproduce_commands(load_run(run_dir)) == ["gen instructions --num 5 --out 'my run'"]


def test_bad_record_names_file_and_line(tmp_path):
    run_dir = make_run(tmp_path / "run", stages=("instructions",))
    with open(run_dir / "instructions" / "rejected.jsonl", "a") as f:
        f.write("{not json\n")
    with pytest.raises(RecordError, match=r"rejected.jsonl:31"):
        load_run(run_dir)

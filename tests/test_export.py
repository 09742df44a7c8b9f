"""gen export: every format loads with `datasets.load_dataset`, one example per instance, the user turn comes from
a template file, nothing is overwritten silently, and the Self-Instruct seed file round-trips to Alpaca JSON."""

from __future__ import annotations

import json

import pytest

from instructgen.cli import main as cli_main
from instructgen.export import FORMATS, export, export_tasks
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
    builder = "parquet" if fmt == "parquet" else "json"
    return datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=str(tmp_path / "hf"))


@pytest.mark.parametrize("fmt", list(FORMATS))
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
    else:  # jsonl and parquet carry the same columns
        assert set(ds.column_names) == {"id", "instruction", "input", "output", "messages"}
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
    assert all(callable(writer) and len(what) > 10 for writer, what in FORMATS.values())

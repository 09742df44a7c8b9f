"""Issue 14, adversarially: what a careless user does with the exports, the cards and the command line once
they exist. Each test here failed before its fix: a `gen run` folder given to `gen export`, a system prompt
lost on the way to the Hub, `--json` with no command, an export onto a pipe, a publish of a folder that kept
nothing. Small literal records and a two-filter chain, so each runs in seconds."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from instructgen.cli import main
from instructgen.records import Instance, Task
from instructgen.rundir import RunDir

CHAIN = "filters:\n  - filter: length\n    min_words: 3\n    max_words: 1000\n    fields: [instruction]\n" \
        "  - filter: exact_dedup\n    fields: [instruction, input]\n"
SYSTEM = "Tu es un assistant. Réponds en français."
ROWS = [{"instruction": "Traduis en français : «good morning» 🌞", "input": "", "output": "Bonjour ! ✨"},
        {"instruction": "Traduisez en chinois : « la lune brille »", "input": "",
         "output": "月亮弯弯，照九州。"},
        {"instruction": "Explain what a haiku is, briefly.", "input": "", "output": "A short poem in three lines."}]


def _stage(path: Path, stage: str, name: str | None, tasks: list[Task]) -> None:
    rd = RunDir(path, stage)
    rd.open({"x": 1})
    if name:
        rd.write_output(name, tasks)
    rd.mark_completed({})


def test_gen_export_of_a_gen_run_folder_reads_its_curated_stage(tmp_path, capsys):
    """`gen run` writes RUN/{instructions,instances,curated} and no records of its own: `gen export RUN` used to
    answer "run folder holds none of kept.jsonl, ..."; it now reads RUN/curated and says so."""
    run = tmp_path / "run"
    top = RunDir(run, "run")
    top.open({"x": 1})
    answered = [Task(id="a", instruction="Say hello politely.", instances=[Instance("", "Hello there.")]),
                Task(id="b", instruction="Name a colour of the sky.", instances=[Instance("", "Blue.")])]
    _stage(run / "instructions", "instructions", "instructions.jsonl", [Task(id="a", instruction="Say hello.")])
    _stage(run / "instances", "instances", "tasks.jsonl", answered)
    _stage(run / "curated", "curate", "kept.jsonl", answered[:1])
    top.mark_completed({})
    out = tmp_path / "train.json"
    assert main(["export", str(run), "--format", "alpaca", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == [{"instruction": "Say hello politely.", "input": "",
                                            "output": "Hello there."}]
    err = capsys.readouterr().err
    assert f"reading its finished stage {run / 'curated'}" in err and "wrote 1 example to" in err


def test_gen_export_of_a_run_folder_with_no_finished_stage_names_what_is_missing(tmp_path, capsys):
    run = tmp_path / "run"
    top = RunDir(run, "run")
    top.open({"x": 1})
    _stage(run / "instructions", "instructions", "instructions.jsonl", [Task(id="a", instruction="Say hello.")])
    top.mark_completed({})
    assert main(["export", str(run), "--format", "alpaca", "--out", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gen export: error: ") and "no finished `gen instances` or `gen curate` folder" in err
    assert not (tmp_path / "t.json").exists()


def curate_only(tmp_path: Path, name: str, text: str) -> Path:
    """A `gen curate` folder made from an imported file `name` (no generating stage before it)."""
    (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "chain.yaml").write_text(CHAIN)
    out = tmp_path / "curated"
    assert main(["curate", str(tmp_path / name), "--out", str(out), "--config", str(tmp_path / "chain.yaml")]) == 0
    return out


@pytest.mark.parametrize("fmt", ["alpaca", "messages"])
def test_card_of_a_curate_only_folder_of_imported_records_keeps_their_system_prompt(tmp_path, fmt):
    """A curate-only folder built from Alpaca JSON (with LLaMA-Factory's `system` column) or a messages file
    (with a system turn): the card says the data is imported from that file and no model wrote it, and the
    published rows carry the system prompt as `gen export` does (the published `messages` used to drop it)."""
    import pyarrow.parquet as pq
    if fmt == "alpaca":
        name, text = "data.json", json.dumps([dict(r, system=SYSTEM) for r in ROWS], ensure_ascii=False)
    else:
        name = "chats.jsonl"
        text = "".join(json.dumps({"messages": [{"role": "system", "content": SYSTEM},
                                                {"role": "user", "content": r["instruction"]},
                                                {"role": "assistant", "content": r["output"]}]},
                                  ensure_ascii=False) + "\n" for r in ROWS)
    folder = curate_only(tmp_path, name, text)
    build = tmp_path / "build"
    assert main(["publish", str(folder), "--repo", "alice/imported", "--local-dir", str(build)]) == 0
    card = (build / "README.md").read_text(encoding="utf-8")
    assert f"from 3 tasks imported from `{name}`" in card
    assert "None of this text was written by a model" in card and "- synthetic" not in card
    assert "annotations_creators:\n- other\n" in card and "machine-generated" not in card
    rows = pq.read_table(build / "data" / "train-00000-of-00001.parquet").to_pylist()
    assert [r["system"] for r in rows] == [SYSTEM] * 3
    assert rows[0]["messages"] == [{"role": "system", "content": SYSTEM},
                                   {"role": "user", "content": ROWS[0]["instruction"]},
                                   {"role": "assistant", "content": ROWS[0]["output"]}]
    assert [r["output"] for r in rows] == [r["output"] for r in ROWS]  # unicode through curate and publish as is
    assert "| `system` | string |" in card


def test_publish_of_a_folder_that_kept_nothing_says_so(tmp_path, capsys):
    """Every record dropped: the error said "its 0 kept records have no instance outputs; run gen instances"."""
    folder = curate_only(tmp_path, "short.json", json.dumps([{"instruction": "Hi.", "input": "", "output": "Yo."}]))
    assert main(["publish", str(folder), "--repo", "a/b", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"gen publish: error: {folder}: nothing to publish: all 1 of its records were dropped " \
                  f"(`gen report {folder}` shows why)"
    assert not (folder / "publish").exists()


def test_json_without_a_command_is_still_one_object_on_stdout(capsys):
    assert main(["--json"]) == 2
    out, err = capsys.readouterr()
    obj = json.loads(out)
    assert obj["command"] is None and obj["exit_status"] == 2 and "no command" in obj["error"]
    assert err.startswith("usage: gen")  # the help went to stderr, out of the script's way


def test_json_of_an_export_counts_its_examples(tmp_path, capsys):
    (tmp_path / "data.json").write_text(json.dumps(ROWS, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "pc.jsonl"
    assert main(["--json", "export", str(tmp_path / "data.json"), "--format", "prompt-completion",
                 "--out", str(out)]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["counts"] == {"examples": 3} and obj["output"] == str(out) and obj["error"] is None


def test_export_onto_a_pipe_is_refused_and_the_pipe_left_alone(tmp_path, capsys):
    """`--out /dev/stdout --overwrite` (a careless `| head`): the export is written beside OUT and renamed onto
    it, which replaced the device or pipe with a regular file; refused now. A FIFO stands in for /dev/stdout."""
    (tmp_path / "data.json").write_text(json.dumps(ROWS, ensure_ascii=False), encoding="utf-8")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert main(["export", str(tmp_path / "data.json"), "--format", "messages", "--out", str(fifo),
                 "--overwrite"]) == 2
    assert "is not a regular file" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json", "pipe"]


def test_card_of_a_json_publish_ends_with_the_command_that_ran(tmp_path, capsys):
    """`gen --json publish ...` used to end the card with a made-up `gen publish run --repo a/b`, dropping the
    flags that were given (`--license mit`): `--json` hid the command word. `--json` itself is left out."""
    folder = curate_only(tmp_path, "data.json", json.dumps(ROWS, ensure_ascii=False))
    build = tmp_path / "build"
    assert main(["--json", "publish", str(folder), "--repo", "a/b", "--license", "mit", "--local-dir",
                 str(build)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["counts"]["splits"] == {"train": 3}
    block = (build / "README.md").read_text(encoding="utf-8").split("```bash\n", 1)[1].split("```", 1)[0]
    assert block.splitlines()[-1] == "gen publish run --repo a/b --license mit"
    assert "license: mit" in (build / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name, key", [(".train.json", "train"), ("my.data.v2.json", "my.data.v2")])
def test_llamafactory_entry_is_named_after_the_whole_file_stem(tmp_path, name, key):
    """The `dataset_info.json` entry was named by the file name's text before its first dot: "" for a hidden
    file, `my` for `my.data.v2.json` (two exports of one folder then claim the same LLaMA-Factory name)."""
    from instructgen.export import export_tasks
    tasks = [Task(id="a", instruction="Say hello politely.", instances=[Instance("", "Hello there.")])]
    export_tasks(tasks, "alpaca", tmp_path / name)
    entry = json.loads((tmp_path / f"{name}.dataset_info.json").read_text())
    assert list(entry) == [key] and entry[key]["file_name"] == name


def test_an_export_named_against_its_format_gets_a_note(tmp_path, capsys):
    """`--format alpaca --out train.alpaca`: written, but LLaMA-Factory refuses the extension and our own reader
    (gen train, gen export) reads it as JSON Lines and fails; the export now says so when it writes it."""
    from instructgen.export import export_tasks
    from instructgen.records import RecordError, read_records
    tasks = [Task(id="a", instruction="Say hello politely.", instances=[Instance("", "Hello there.")]),
             Task(id="b", instruction="Name a colour of the sky.", instances=[Instance("", "Blue.")])]
    export_tasks(tasks, "alpaca", tmp_path / "train.alpaca")
    assert "read this format from a file named *.json" in capsys.readouterr().err
    with pytest.raises(RecordError):
        read_records(tmp_path / "train.alpaca")
    export_tasks(tasks, "alpaca", tmp_path / "train.json")
    export_tasks(tasks, "messages", tmp_path / "train.jsonl")
    assert "note:" not in capsys.readouterr().err
    assert [t.instruction for t in read_records(tmp_path / "train.json")] == [t.instruction for t in tasks]


def test_a_filter_name_with_a_pipe_keeps_the_cards_funnel_table_whole(tmp_path):
    """curate.yaml `name: "len|short"`: the name went into the card's funnel table unescaped, splitting its row
    into one cell too many."""
    (tmp_path / "data.json").write_text(json.dumps(ROWS + [{"instruction": "Hi.", "input": "", "output": "Yo."}],
                                                   ensure_ascii=False), encoding="utf-8")
    (tmp_path / "chain.yaml").write_text('filters:\n  - filter: length\n    name: "len|short"\n    min_words: 3\n'
                                         '    max_words: 1000\n    fields: [instruction]\n')
    folder = tmp_path / "curated"
    assert main(["curate", str(tmp_path / "data.json"), "--out", str(folder), "--config",
                 str(tmp_path / "chain.yaml")]) == 0
    assert main(["publish", str(folder), "--repo", "a/b", "--local-dir", str(tmp_path / "build")]) == 0
    card = (tmp_path / "build" / "README.md").read_text(encoding="utf-8")
    table = card.split("## Filter funnel", 1)[1].split("\n\n## ", 1)[0]
    rows = [r for r in table.splitlines() if r.startswith("| ")]
    assert len(rows) == 3 and "len\\|short" in rows[2]  # header, rule, the one step
    assert {len(re.findall(r"(?<!\\)\|", r)) for r in rows} == {8}  # 7 columns: 8 unescaped bars per row


def test_report_onto_a_pipe_is_refused_without_waiting_on_it(tmp_path):
    """`gen report RUN --out /dev/stdout`: the check for an earlier report read the first line of --out, which
    on a pipe or a terminal waits forever. A FIFO nobody writes stands in; a real process, so a hang is a
    timeout and not a stuck test run."""
    import subprocess
    import sys
    folder = curate_only(tmp_path, "data.json", json.dumps(ROWS, ensure_ascii=False))
    fifo = tmp_path / "page.html"
    os.mkfifo(fifo)
    r = subprocess.run([sys.executable, "-m", "instructgen", "report", str(folder), "--out", str(fifo)],
                       capture_output=True, text=True, timeout=60, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert r.returncode == 2 and "is not a regular file" in r.stderr, r.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)

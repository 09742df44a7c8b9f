"""Issue 9, class 5 for the readers (bad input gives one clear line, exit 2, nothing written) and class 9's
`gen export` duplicate ids and duplicate YAML keys.

Files are written byte by byte into tmp_path, as a careless or hostile user would leave them, and fed to the
real `gen` process (`python -m instructgen`). Most reader cases go through `gen export`, the cheapest command
that reads records; the same reader serves curate, instances, instructions --seeds and train, each of which
also gets a case. The reader itself is also called in-process where the exact line and field are the point.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from instructgen.config import ConfigError, generation_config, load_yaml
from instructgen.filters.chain import load_config
from instructgen.records import RecordError, read_tasks
from instructgen.templates import TemplateError, load_template

ENV = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONIOENCODING="utf-8")
GOOD = {"instruction": "Name a fruit that is yellow.", "input": "", "output": "Banana"}
GOOD_LINE = json.dumps(GOOD).encode() + b"\n"


def gen(*args, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "instructgen", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def one_line_error(r: subprocess.CompletedProcess, command: str, *fragments: str) -> str:
    """Exit 2, no traceback, exactly one stderr line `gen COMMAND: error: ...` holding every fragment."""
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"gen {command}: error: "), r.stderr[-2000:]
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def export_fails(tmp_path: Path, src: Path, *fragments: str) -> str:
    out = tmp_path / "out.json"
    msg = one_line_error(gen("export", src, "--format", "alpaca", "--out", out), "export", *fragments)
    assert not out.exists() and not list(tmp_path.glob(".out.json*")), "nothing may be written on an error"
    return msg


# ------------------------------------------------------------------------------------------ not UTF-8

@pytest.mark.parametrize("name, data, where", [
    ("bad.jsonl", GOOD_LINE + b'{"instruction": "caf\xff au lait"}\n', "bad.jsonl:2: not valid UTF-8 (byte 0xff "
                                                                      "at column 21)"),
    ("bad.jsonl", GOOD_LINE * 3 + b'{"instruction": "caf\xc3\xa9 \xc3"}\n', "bad.jsonl:4: not valid UTF-8 "
                                                                          "(byte 0xc3 at column 23)"),
    ("bad.json", b'[\n  {"instruction": "Name a fruit.", "output": "x"},\n  {"instruction": "caf\xfe"}\n]\n',
     "bad.json:3: not valid UTF-8 (byte 0xfe at column 23)"),
    ("bad.txt", b"List three fruits.\n\nName a \xff river.\n", "bad.txt:3: not valid UTF-8 (byte 0xff at column 8)"),
    ("bad.jsonl", b'{"instruction": "an encoded surrogate \xed\xa0\x80"}\n', "bad.jsonl:1: not valid UTF-8 "
                                                                            "(byte 0xed at column 39)"),
])
def test_a_byte_that_is_not_utf8_names_file_line_and_column(tmp_path, name, data, where):
    src = tmp_path / name
    src.write_bytes(data)
    export_fails(tmp_path, src, where)


def test_not_utf8_far_into_a_big_jsonl_gets_its_real_line(tmp_path):
    """The fast reader decodes in chunks; the line it names must still be the line of the byte."""
    src = tmp_path / "big.jsonl"
    rows = [json.dumps(dict(GOOD, id=f"r{i}", instruction=f"Name fruit number {i} café."),
                       ensure_ascii=False).encode() + b"\n"
            for i in range(3000)]
    rows[2345] = rows[2345].replace(b"caf\xc3\xa9", b"caf\xe9")
    src.write_bytes(b"".join(rows))
    with pytest.raises(RecordError, match=r"big.jsonl:2346: not valid UTF-8 \(byte 0xe9 at column \d+\)"):
        read_tasks(src)


def test_curate_instances_and_seeds_name_the_byte_and_write_no_run_folder(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_bytes(b'{"instruction":"caf\xff"}\n')  # the issue's reproduction
    where = "bad.jsonl:1: not valid UTF-8 (byte 0xff at column 20)"
    one_line_error(gen("curate", src, "--out", tmp_path / "cur"), "curate", where)
    one_line_error(gen("instances", src, "--out", tmp_path / "inst"), "instances", where)
    one_line_error(gen("instructions", "--seeds", src, "--out", tmp_path / "ins", "--num", 1), "instructions", where)
    assert not any((tmp_path / d).exists() for d in ("cur", "inst", "ins"))


def test_train_fails_on_bad_data_before_any_model_or_folder(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_bytes(GOOD_LINE + b'{"instruction": "x", "output": 5}\n')
    one_line_error(gen("train", src, "--out", tmp_path / "adapter", timeout=120), "train",
                   "bad.jsonl:2: field 'output' must be a string, got a number")
    assert not (tmp_path / "adapter").exists()


# ------------------------------------------------------------------------------- corrupt containers

def _gz(tmp_path: Path) -> bytes:
    return gzip.compress(b"".join(json.dumps(dict(GOOD, id=f"r{i}")).encode() + b"\n" for i in range(200)))


@pytest.mark.parametrize("damage", ["half", "tail", "flipped", "plain"])
def test_a_corrupt_or_truncated_gz_names_the_file(tmp_path, damage):
    data = _gz(tmp_path)
    data = {"half": data[: len(data) // 2], "tail": data[:-6],
            "flipped": data[:40] + bytes(b ^ 0x5A for b in data[40:60]) + data[60:],
            "plain": GOOD_LINE}[damage]
    src = tmp_path / "data.jsonl.gz"
    src.write_bytes(data)
    export_fails(tmp_path, src, "data.jsonl.gz: corrupt or truncated gzip file")


def test_an_intact_gz_reads(tmp_path):
    src = tmp_path / "data.jsonl.gz"
    src.write_bytes(_gz(tmp_path))
    assert len(read_tasks(src)) == 200


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "text", "empty"])
def test_a_corrupt_or_truncated_parquet_names_the_file(tmp_path, damage):
    import pyarrow as pa
    import pyarrow.parquet as pq
    good = tmp_path / "good.parquet"
    pq.write_table(pa.Table.from_pylist([dict(GOOD, instruction=f"Name fruit {i}.") for i in range(300)]), good)
    data = good.read_bytes()
    assert len(read_tasks(good)) == 300
    data = {"truncated": data[: len(data) // 2], "zeroed": data[:4] + b"\0" * (len(data) - 12) + data[-8:],
            "text": b"instruction,output\n", "empty": b""}[damage]
    src = tmp_path / "data.parquet"
    src.write_bytes(data)
    export_fails(tmp_path, src, "data.parquet: not a readable Parquet file")


def test_a_broken_saved_dataset_folder_names_the_folder(tmp_path):
    import datasets
    ds = datasets.Dataset.from_list([dict(GOOD, instruction=f"Name fruit {i}.") for i in range(50)])
    saved = tmp_path / "saved"
    ds.save_to_disk(str(saved))
    assert len(read_tasks(saved)) == 50
    arrow = next(saved.glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:300])
    export_fails(tmp_path, saved, "saved: not a readable saved dataset")
    fake = tmp_path / "fake"  # the marker files of a saved dataset, nothing in them
    fake.mkdir()
    (fake / "state.json").write_text("{not json")
    (fake / "dataset_info.json").write_text("{}")
    export_fails(tmp_path, fake, "fake: not a readable saved dataset")


# ---------------------------------------------------------------------------- nesting and surrogates

@pytest.mark.parametrize("name", ["deep.jsonl", "deep.json"])
def test_100000_deep_nesting_is_a_record_error_with_its_line(tmp_path, name):
    deep = '{"instruction": "x", "meta": ' + "[" * 100_000 + "]" * 100_000 + "}"
    src = tmp_path / name
    src.write_text(json.dumps(GOOD) + "\n" + deep + "\n" if name.endswith("l") else
                   "[\n" + json.dumps(GOOD) + ",\n" + deep + "\n]\n")
    line = 2 if name.endswith("l") else 3  # the line where the deep record starts
    export_fails(tmp_path, src, f"{name}:{line}: JSON nested too deeply")


@pytest.mark.parametrize("name, text, where", [
    ("s.jsonl", '{"instruction": "Say hello \\ud800 there.", "output": "hi"}\n', "s.jsonl:1: field 'instruction'"),
    ("s.jsonl", json.dumps(GOOD) + '\n{"instruction": "ok fine", "instances": [{"input": "", "output": '
                '"x\\udfff"}]}\n', "s.jsonl:2: field 'instances[0].output'"),
    ("s.json", '[\n' + json.dumps(GOOD) + ',\n\n  {"instruction": "ok", "output": "\\uDC00"}\n]',
     "s.json:4: field 'output'"),
])
def test_a_lone_surrogate_is_refused_with_line_and_field(tmp_path, name, text, where):
    """JSON allows the escape, UTF-8 cannot encode it: refused on reading, never a crash when writing later."""
    src = tmp_path / name
    src.write_text(text)
    export_fails(tmp_path, src, where, "lone surrogate")


def test_a_surrogate_pair_escape_is_a_valid_character(tmp_path):
    src = tmp_path / "emoji.jsonl"
    src.write_text('{"instruction": "Describe \\ud83d\\ude00 in words.", "output": "a grin"}\n')
    assert read_tasks(src)[0].instruction == "Describe \U0001F600 in words."


# --------------------------------------------------------------------------------- wrong field types

TASK = {"id": "t1", "instruction": "Name a fruit that is yellow.", "instances": [{"input": "", "output": "Banana"}]}


@pytest.mark.parametrize("extra, field", [
    ({"meta": "a string"}, "field 'meta' must be an object, got a string"),
    ({"scores": [0.5]}, "field 'scores' must be an object, got a list"),
    ({"scores": {"rouge_l_max": "high"}}, "field 'scores.rouge_l_max' must be a number, got a string"),
    ({"scores": {"rouge_l_max": True}}, "field 'scores.rouge_l_max' must be a number"),
    ({"verdict": "kept"}, "field 'verdict' must be an object"),
    ({"verdict": {"kept": "false"}}, "field 'verdict.kept' must be true or false, got a string"),
    ({"verdict": {"kept": False, "reason": 3}}, "field 'verdict.reason' must be a string or null"),
    ({"provenance": ["teacher"]}, "field 'provenance' must be an object, got a list"),
    ({"id": ["t1"]}, "field 'id' must be a string or an integer, got a list"),
    ({"id": {"n": 1}}, "field 'id' must be a string or an integer, got an object"),
    ({"instances": ["Banana"]}, "field 'instances[0]' must be an object"),
    ({"instances": [{"input": "", "output": 42}]}, "field 'instances[0].output' must be a string, got a number"),
    ({"source": 1}, "field 'source' must be a string"),
])
def test_a_task_field_of_the_wrong_type_names_line_and_field(tmp_path, extra, field):
    src = tmp_path / "tasks.jsonl"
    src.write_text(json.dumps(TASK) + "\n" + json.dumps(dict(TASK, id="t2") | extra) + "\n")
    export_fails(tmp_path, src, "tasks.jsonl:2: " + field)


@pytest.mark.parametrize("row, field", [
    ({"messages": [{"role": "user", "content": 5}]}, "field 'messages[0].content' must be a string, got a number"),
    ({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hi there."},
                   {"role": "assistant", "content": ["Hello"]}]}, "field 'messages[2].content' must be a string"),
    ({"messages": ["Hi there.", "Hello"]}, "field 'messages[0]' must be an object"),
    ({"messages": "Hi there."}, "field 'messages' must be a list of turns, got a string"),
    ({"conversations": [{"from": "human", "value": 7}]}, "field 'conversations[0].value' must be a string"),
    ({"prompt": ["Q"], "completion": "A"}, "field 'prompt' must be a string, got a list"),
    ({"instruction": "Name it.", "output": {"text": "x"}}, "field 'output' must be a string, got an object"),
])
def test_a_chat_or_alpaca_field_of_the_wrong_type_names_line_and_field(tmp_path, row, field):
    src = tmp_path / "chat.jsonl"
    src.write_text(json.dumps(GOOD) + "\n\n" + json.dumps(row) + "\n")
    export_fails(tmp_path, src, "chat.jsonl:3: " + field)


def test_a_null_input_is_an_empty_string_not_a_crash_later(tmp_path):
    src = tmp_path / "t.jsonl"
    src.write_text(json.dumps(dict(TASK, instances=[{"input": None, "output": "Banana"}])) + "\n")
    out = tmp_path / "a.json"
    r = gen("export", src, "--format", "alpaca", "--out", out)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text()) == [{"instruction": TASK["instruction"], "input": "", "output": "Banana"}]


# ----------------------------------------------------------------------------- JSON arrays: real lines

def test_alpaca_array_errors_name_the_line_where_the_record_starts(tmp_path):
    rows = [GOOD, dict(GOOD, instruction="Name a red fruit."), {"instruction": "Bad one.", "output": 3}]
    src = tmp_path / "alpaca.json"
    src.write_text(json.dumps(rows, indent=2))  # each record spans 5 lines; the third starts on line 12
    assert src.read_text().splitlines()[11].strip() == "{"
    msg = export_fails(tmp_path, src, "alpaca.json:12: field 'output' must be a string")
    assert "alpaca.json:3:" not in msg  # the record number, as it used to be


def test_array_duplicate_ids_and_syntax_errors_name_real_lines(tmp_path):
    src = tmp_path / "a.json"
    src.write_text('[\n  {"id": "x", "instruction": "One task.", "output": "1"},\n\n\n'
                   '  {"id": "x", "instruction": "Two task.", "output": "2"}\n]\n')
    with pytest.raises(RecordError, match=r"a\.json:5: duplicate id 'x'"):
        read_tasks(src)
    src.write_text('[\n  {"instruction": "One task.", "output": "1"}\n  {"instruction": "Two"}\n]')
    with pytest.raises(RecordError, match=r"a\.json:3: not valid JSON \(Expecting ',' delimiter"):
        read_tasks(src)
    src.write_text('[{"instruction": "One task.", "output": "1"},]')
    with pytest.raises(RecordError, match=r"a\.json:1: not valid JSON"):
        read_tasks(src)
    src.write_text('[{"instruction": "One task.", "output": "1"}] [')
    with pytest.raises(RecordError, match=r"a\.json:1: not valid JSON \(Extra data"):
        read_tasks(src)
    src.write_text('[\n  {"instruction": "One task.", "output": "1"},\n  "just text"\n]')
    with pytest.raises(RecordError, match=r"a\.json:3: expected a JSON object, got a string"):
        read_tasks(src)


def test_pretty_and_compact_arrays_read_the_same(tmp_path):
    rows = [dict(GOOD, instruction=f"Name fruit {i}, please.", input=f"in {i}") for i in range(20)]
    (tmp_path / "a.json").write_text(json.dumps(rows, indent=4))
    (tmp_path / "b.json").write_text(json.dumps(rows))
    (tmp_path / "c.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(rows[0]).encode())  # BOM, one object
    a, b = read_tasks(tmp_path / "a.json"), read_tasks(tmp_path / "b.json")
    assert [t.to_dict() for t in a] == [dict(t.to_dict(), id=t.id.replace("b_", "a_")) for t in b]
    assert read_tasks(tmp_path / "c.json")[0].instruction == rows[0]["instruction"]


@pytest.mark.parametrize("name, text", [("e.jsonl", ""), ("e.jsonl", "\n\n"), ("e.json", ""), ("e.json", " []\n"),
                                        ("e.txt", "\n  \n")])
def test_a_file_with_no_records_reads_as_none_and_export_says_so(tmp_path, name, text):
    src = tmp_path / name
    src.write_text(text)
    assert read_tasks(src) == []
    export_fails(tmp_path, src, "no examples to export")


# ------------------------------------------------------------------------------------------------ YAML

@pytest.mark.parametrize("text, fragments", [
    (b"num: 5\nstop: [\"caf\xff\"]\n", ["c.yaml:2: not valid UTF-8 (byte 0xff at column 12)"]),
    (b"stop: [1, 2]\n", ["--config", "c.yaml", "option 'stop' must be a list of strings, got [1, 2]"]),
    (b"blacklist: [image, 3]\n", ["option 'blacklist' must be a list of strings"]),
    (b"template: 7\n", ["option 'template' must be str or null, got 7"]),
    (b"num: 5\ntemperature: 0.5\nnum: 6\n", ["c.yaml:3: duplicate key 'num' (first at line 1)"]),
    (b"- num\n- 5\n", ["c.yaml: expected a mapping of option: value"]),
    (b"num: 5\n1: x\n", ["option names must be strings"]),
    (b"num: 5\ntemplate: \"a\x00b\"\n", ["c.yaml:2: invalid YAML"]),
])
def test_a_bad_generation_config_names_file_line_and_option(tmp_path, text, fragments):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(text)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_bytes(GOOD_LINE)
    out = tmp_path / "run"
    one_line_error(gen("instructions", "--seeds", seeds, "--config", cfg, "--out", out), "instructions", *fragments)
    assert not out.exists()


@pytest.mark.parametrize("text, fragment", [
    ("filters:\n  - filter: length\n    fields: [3]\n", "c.yaml:2: filters[0] (length): option 'fields' must be a "
                                                         "list of strings, got [3]"),
    ("filters:\n  - filter: blacklist\n    words: [image, 12]\n", "option 'words' must be a list of strings"),
    ("filters:\n  - filter: length\n    min_words: 3\n    min_words: 4\n", "c.yaml:4: duplicate key 'min_words' "
                                                                           "(first at line 3)"),
    ("filters:\n  - filter: length\nfilters:\n  - filter: minhash\n", "c.yaml:3: duplicate key 'filters'"),
    ("filters:\n  - filter: [length]\n", "c.yaml:2: filters[0]: unknown filter"),
    ("- filter: length\n", "c.yaml: expected a mapping with a 'filters' list"),
])
def test_a_bad_curate_chain_names_file_line_and_option(tmp_path, text, fragment):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert fragment in str(e.value)
    src = tmp_path / "in.jsonl"
    src.write_bytes(GOOD_LINE)
    one_line_error(gen("curate", src, "--config", cfg, "--out", tmp_path / "cur"), "curate", fragment)
    assert not (tmp_path / "cur").exists()


def test_curate_chain_that_is_not_utf8(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b"filters:\n  - filter: blacklist\n    words: [caf\xe9]\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:3: not valid UTF-8 \(byte 0xe9 at column 16\)"):
        load_config(cfg)


def test_valid_yaml_still_loads_merge_keys_included(tmp_path):
    y = tmp_path / "ok.yaml"
    y.write_text("base: &b {temperature: 0.9}\n")
    assert load_yaml(y) == {"base": {"temperature": 0.9}}
    y.write_text("temperature: 0.9\nstop: [\"\\n\\n\", \"16.\"]\n")
    c = generation_config({}, str(y))
    assert c.temperature == 0.9 and c.stop == ["\n\n", "16."]
    chain = tmp_path / "chain.yaml"
    chain.write_text("filters:\n  - &len {filter: length, min_words: 2}\n  - <<: *len\n    name: length2\n"
                     "    min_words: 5\n")
    cfg = load_config(chain)
    assert [(s.name, s.params.min_words) for s in cfg.filters] == [("length", 2), ("length2", 5)]


# ------------------------------------------------------------------------------------- binary template

@pytest.mark.parametrize("data, fragment", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "bin.jinja2:3: not a text template (a NUL byte"),
    (b"Come up with tasks:\n{{ instructions }}\n\xff\xfe\n", "bin.jinja2:3: not valid UTF-8 (byte 0xff at column 1)"),
])
def test_a_binary_template_is_a_template_error_naming_the_file(tmp_path, data, fragment):
    tmpl = tmp_path / "bin.jinja2"
    tmpl.write_bytes(data)
    with pytest.raises(TemplateError, match="bin.jinja2"):
        load_template(tmpl)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_bytes(GOOD_LINE)
    one_line_error(gen("instructions", "--seeds", seeds, "--template", tmpl, "--out", tmp_path / "run"),
                   "instructions", fragment)
    one_line_error(gen("export", seeds, "--format", "alpaca", "--out", tmp_path / "a.json", "--user-template", tmpl),
                   "export", fragment)
    assert not (tmp_path / "run").exists() and not (tmp_path / "a.json").exists()
    one_line_error(gen("export", seeds, "--format", "alpaca", "--out", tmp_path / "a.json", "--user-template",
                       tmp_path), "export", "is a folder")


# ------------------------------------------------------------------------------------------ gen export

def _colliding(tmp_path: Path) -> Path:
    """Task `a` with two instances exports `a-0` and `a-1`; task `a-1` is literally named so."""
    src = tmp_path / "tasks.jsonl"
    rows = [dict(TASK, id="a", instances=[{"input": "1", "output": "one"}, {"input": "2", "output": "two"}]),
            dict(TASK, id="a-1", instruction="Name a red fruit.", instances=[{"input": "", "output": "Cherry"}])]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return src


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_never_writes_ids_its_own_reader_rejects(tmp_path, fmt):
    src = _colliding(tmp_path)
    outs = []
    for i in range(2):
        out = tmp_path / f"x{i}.{fmt}"
        r = gen("export", src, "--format", fmt, "--out", out)
        assert r.returncode == 0, r.stderr
        outs.append(out)
    back = read_tasks(outs[0])  # raised "duplicate id 'a-1'" before
    assert [t.id for t in back] == ["a-0", "a-1", "a-1-dup2"]
    assert [t.instances[0].output for t in back] == ["one", "two", "Cherry"]
    assert outs[0].read_bytes() == outs[1].read_bytes() or fmt == "parquet"  # deterministic
    assert [t.id for t in read_tasks(outs[1])] == [t.id for t in back]


def test_training_examples_get_the_same_unique_ids(tmp_path):
    from instructgen.trainer.data import load_examples
    ids = [e["id"] for e in load_examples(_colliding(tmp_path))]
    assert ids == ["a-0", "a-1", "a-1-dup2"]


@pytest.mark.parametrize("stale", ["file", "folder"])
def test_a_stale_out_tmp_is_neither_used_nor_removed(tmp_path, stale):
    src = tmp_path / "in.jsonl"
    src.write_bytes(GOOD_LINE)
    out = tmp_path / "train.json"
    tmp = tmp_path / "train.json.tmp"
    if stale == "file":
        tmp.write_text("left by a crash, or the user's own file")
    else:
        tmp.mkdir()
    r = gen("export", src, "--format", "alpaca", "--out", out)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text()) == [GOOD]
    assert tmp.read_text() == "left by a crash, or the user's own file" if stale == "file" else tmp.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "train.json", "train.json.axolotl.yaml",
                                                           "train.json.dataset_info.json", "train.json.tmp"]


def test_out_that_is_a_folder_or_cannot_be_written_is_one_line(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(GOOD_LINE)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        one_line_error(gen("export", src, "--format", "jsonl", "--out", folder, *extra), "export", "is a folder")
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_line_error(gen("export", src, "--format", "jsonl", "--out", afile / "x.jsonl"), "export",
                   f"--out {afile / 'x.jsonl'}: cannot write")
    one_line_error(gen("export", src, "--format", "jsonl", "--out", src, "--overwrite"), "export",
                   "is the input itself")
    assert src.read_bytes() == GOOD_LINE


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder this process may not create files in: a chmod 555 one, or (root ignores modes) /sys."""
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    try:
        open("/sys/.instructgen-probe", "x").close()
    except PermissionError:
        return Path("/sys")
    os.remove("/sys/.instructgen-probe")
    pytest.skip("running as root with no read-only folder to write into")


def test_out_under_a_read_only_folder_is_one_line(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(GOOD_LINE)
    ro = _read_only_folder(tmp_path)
    before = sorted(os.listdir(ro))
    try:
        for fmt in ("alpaca", "parquet"):
            one_line_error(gen("export", src, "--format", fmt, "--out", ro / "x.out"), "export",
                           f"--out {ro / 'x.out'}: cannot write")
        assert sorted(os.listdir(ro)) == before
    finally:
        if ro != Path("/sys"):
            ro.chmod(0o755)


def test_export_into_its_own_input_folder_is_refused(tmp_path):
    from instructgen.records import Task, Instance
    from instructgen.rundir import RunDir
    rd = RunDir(tmp_path / "inst", "instances")
    rd.open({"x": 1})
    rd.write_output("tasks.jsonl", [Task(id="a", instruction="Name a fruit.", instances=[Instance("", "Banana")])])
    rd.mark_completed({})
    before = sorted(p.name for p in (tmp_path / "inst").iterdir())
    one_line_error(gen("export", tmp_path / "inst", "--format", "jsonl", "--out", tmp_path / "inst" / "x.jsonl"),
                   "export", "is inside the input folder")
    assert sorted(p.name for p in (tmp_path / "inst").iterdir()) == before

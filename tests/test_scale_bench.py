"""The grower of benchmarks/scale.py on a 200-record T0 slice: deterministic, unique ids, the documented
perturbation rates (light copies stay MinHash near-duplicates, heavy ones do not), and streaming."""

from __future__ import annotations

import gzip
import importlib.util
import inspect
import itertools
import json
from pathlib import Path

import pytest

from instructgen.filters.minhash import words

ROOT = Path(__file__).resolve().parent.parent


def _load():
    spec = importlib.util.spec_from_file_location("scale_bench", ROOT / "benchmarks" / "scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


scale = _load()


@pytest.fixture(scope="module")
def t0_slice(shared_data):
    rows = list(scale.read_t0(shared_data / "t0_templates.jsonl.gz", limit=200))
    assert len(rows) == 200
    return rows, scale.build_vocab(rows)


def shingles(text: str) -> set[str]:
    w = words(text)  # the MinHash filter's own tokenizer, word 5-grams as in the default chain
    return {" ".join(w[i:i + 5]) for i in range(max(1, len(w) - 4))}


def jaccard(a: str, b: str) -> float:
    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y)


def test_grower_is_deterministic_and_seeded(t0_slice):
    rows, vocab = t0_slice
    a = list(scale.grow_records(lambda: rows, 3, vocab, seed=0))
    b = list(scale.grow_records(lambda: rows, 3, vocab, seed=0))
    c = list(scale.grow_records(lambda: rows, 3, vocab, seed=1))
    assert a == b
    assert a[200:] != c[200:]
    assert a[:200] == rows == c[:200]  # copy 0 is the original, whatever the seed


def test_ids_unique_and_named_after_the_original(t0_slice):
    rows, vocab = t0_slice
    out = list(scale.grow_records(lambda: rows, 4, vocab))
    assert len(out) == 800
    assert len({r["id"] for r in out}) == 800
    for k in (1, 2, 3):
        part = out[200 * k:200 * (k + 1)]  # pass K holds copy K of every record, in input order
        assert [r["id"] for r in part] == [f"{r['id']}-copy{k}" for r in rows]
        assert [r["grown"]["of"] for r in part] == [r["id"] for r in rows]
        assert all(r["template"] == o["template"] for r, o in zip(part, rows))


def test_perturbation_rates_as_documented(t0_slice):
    rows, vocab = t0_slice
    orig = {r["id"]: r for r in rows}
    copies = list(scale.grow_records(lambda: rows, 4, vocab))[200:]
    levels = [c["grown"]["level"] for c in copies]
    assert 0.4 <= levels.count("heavy") / len(levels) <= 0.6  # HEAVY_SHARE = 0.5
    answer_words = answer_edits = 0
    near = {"light": [], "heavy": []}
    for c in copies:
        o = orig[c["grown"]["of"]]
        rate = scale.LEVELS[c["grown"]["level"]]
        n_prompt, n_answer = c["grown"]["edits"]
        assert n_prompt == max(1, round(rate * len(o["prompt"].split())))
        answer_words += len(o["completion"].split())
        answer_edits += n_answer
        if len(o["prompt"].split()) >= 40:
            near[c["grown"]["level"]].append(jaccard(o["prompt"], c["prompt"]) >= 0.7)
    assert sum(c["prompt"] != orig[c["grown"]["of"]]["prompt"] for c in copies) >= 0.95 * len(copies)
    assert 0.3 * 0.085 <= answer_edits / answer_words <= 3 * 0.085  # each answer word at the copy's rate
    # the point of two levels: at MinHash's 0.7 on word 5-grams, light copies stay near-duplicates, heavy do not
    assert len(near["light"]) > 50 and len(near["heavy"]) > 50
    assert sum(near["light"]) >= 0.9 * len(near["light"])
    assert sum(near["heavy"]) <= 0.1 * len(near["heavy"])


def test_perturb_edits_words_and_keeps_layout():
    import random
    text = "Read the passage.\n\nQuestion: what is the answer?\n"
    vocab = ["answer", "answers", "passage", "passages", "question", "read", "reader", "the", "what"]
    same = scale.perturb(text, 0, random.Random(0), vocab)
    assert same == text
    out = scale.perturb(text, 2, random.Random(0), vocab)
    assert out != text
    assert "\n\n" in out and out.endswith("\n")
    assert abs(len(out.split()) - len(text.split())) <= 2
    assert scale.neighbour("Passage.", random.Random(0), vocab)[0].isupper()
    assert scale.neighbour("Passage.", random.Random(0), vocab).endswith(".")


def test_grower_streams(t0_slice):
    rows, vocab = t0_slice
    pulled = 0

    def source():
        nonlocal pulled
        for r in rows:
            pulled += 1
            yield r

    gen = scale.grow_records(source, 16, vocab)
    assert inspect.isgenerator(gen)
    assert pulled == 0  # nothing read before the first record is asked for
    first = list(itertools.islice(gen, 10))
    assert len(first) == 10 and pulled == 10  # one record in per record out: no list of the input is built
    list(itertools.islice(gen, 200))  # into the second pass: the source is read again, not replayed from memory
    assert pulled == 210


def test_grow_file_writes_and_reuses(t0_slice, tmp_path, monkeypatch):
    rows, _ = t0_slice
    src = tmp_path / "t0.jsonl.gz"
    with gzip.open(src, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    monkeypatch.setattr(scale, "SCRATCH", tmp_path / "scale")
    monkeypatch.setitem(scale.SIZES, "tiny", 3)
    info = scale.grow_file("tiny", data=src)
    path = tmp_path / "scale" / "t0-tiny.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    vocab = scale.build_vocab(rows)
    assert [json.loads(x) for x in lines] == list(scale.grow_records(lambda: rows, 3, vocab))
    assert info["records"] == 600 and not path.with_suffix(".jsonl.part").exists()
    mtime = path.stat().st_mtime_ns
    assert scale.grow_file("tiny", data=src)["sha256"] == info["sha256"]
    assert path.stat().st_mtime_ns == mtime  # reused, not rewritten


def test_read_t0_names_the_bad_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": "a", "prompt": "p", "completion": "c"}\n{"id": "b", "prompt": 3, "completion": "c"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: field 'prompt'"):
        list(scale.read_t0(p))


def test_verdict_digest_ignores_order_but_not_decisions(tmp_path):
    recs = [{"id": "a", "verdict": {"kept": True}}, {"id": "b", "verdict": {"kept": False, "reason": "too_short"}}]
    one, two, three = tmp_path / "1.jsonl", tmp_path / "2.jsonl", tmp_path / "3.jsonl"
    one.write_text("".join(json.dumps(r) + "\n" for r in recs))
    two.write_text("".join(json.dumps(r) + "\n" for r in reversed(recs)))
    recs[1]["verdict"]["reason"] = "blacklist:image"
    three.write_text("".join(json.dumps(r) + "\n" for r in recs))
    d1, d2, d3 = (scale.jsonl_digests(p) for p in (one, two, three))
    assert d1["verdicts"] == d2["verdicts"] and d1["lines"] == d2["lines"] and d1["sha256"] != d2["sha256"]
    assert d3["verdicts"] != d1["verdicts"]

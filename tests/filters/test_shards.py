"""Sharded curation (filters/shards.py): the same kept and rejected records as the in-memory chain, whatever the
shard size and the worker count; the plan; a kill -9 redoes only the unfinished shards."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from instructgen.filters.base import run_chain
from instructgen.filters.chain import build_filter, load_config
from instructgen.filters.shards import plan
from instructgen.filters.stage import curate
from instructgen.records import read_records

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "t0_templates.jsonl.gz"
ENV = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")

CHAIN = {"filters": [
    {"filter": "length", "min_words": 4, "max_words": 80},
    {"filter": "blacklist"},
    {"filter": "first_char"},
    {"filter": "exact_dedup"},
    {"filter": "readability", "min_words": 5, "keep_top": 0.9},
    {"filter": "grammar", "enabled": False},
    {"filter": "minhash", "threshold": 0.6, "ngram": 2},
    {"filter": "rouge_l", "threshold": 0.7, "keep_top": 0.8},
]}

VOCAB = [a + b for a in ("ri", "ca", "mo", "te", "lu", "vo", "pe", "sa", "ki", "no", "da", "fe")
         for b in ("ver", "ndle", "rning", "ssel", "mber", "ttle", "ght", "rden", "sket", "dow")]


def records(n: int = 120, seed: int = 7) -> list[dict]:
    """Instructions with exact copies, near copies (a word changed), blacklisted and too-short ones."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = rng.random()
        if out and kind < 0.15:
            base = rng.choice(out)["instruction"]
            text = base.upper() if rng.random() < 0.5 else base + "!"  # an exact duplicate after normalising
        elif out and kind < 0.35:
            words = rng.choice(out)["instruction"].split()
            words[rng.randrange(len(words))] = rng.choice(VOCAB)  # a near duplicate
            text = " ".join(words)
        elif kind < 0.4:
            text = "Draw a picture of the " + rng.choice(VOCAB)
        elif kind < 0.45:
            text = "Hi " + rng.choice(VOCAB)
        else:
            text = "Explain " + " ".join(rng.sample(VOCAB, rng.randint(6, 14))) + "."
        out.append({"id": f"r{i}", "instruction": text, "input": "", "output": f"answer {i}"})
    return out


@pytest.fixture
def data(tmp_path):
    p = tmp_path / "data.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in records()))
    return p


def in_memory(path, config) -> tuple[str, str]:
    """kept.jsonl and rejected.jsonl as the in-memory chain (Filter.apply on every record at once) writes them."""
    cfg = load_config(config)
    filters = [build_filter(s) for s in cfg.filters if s.enabled]
    for f in filters:
        f.prepare({"cache_dir": None, "read_only_cache": True, "quiet": True})
    tasks, _ = run_chain(filters, [t for t in read_records(path) if t.kept])

    def text(ts):
        return "".join(json.dumps(t.to_dict(), ensure_ascii=False) + "\n" for t in ts)
    return text([t for t in tasks if t.kept]), text([t for t in tasks if not t.kept])


def outputs(out: Path) -> tuple[str, str]:
    return (out / "kept.jsonl").read_text(), (out / "rejected.jsonl").read_text()


def test_the_plan_cuts_the_default_chain_into_passes():
    cfg = load_config(None)
    pairs = [(s, build_filter(s) if s.enabled else None) for s in cfg.filters]
    names = [[[pairs[k][0].name for k in getattr(p, part)] for part in ("filters", "features", "central")]
             for p in plan(pairs)]
    assert names == [
        [["length", "blacklist", "first_char"], ["exact_dedup"], ["exact_dedup"]],
        [["readability", "grammar"], ["minhash", "rouge_l"], ["readability", "grammar", "minhash", "rouge_l"]],
        [[], ["embedding"], ["embedding"]],  # the encoder only sees what reaches it: a pass of its own
        [[], [], []],  # the write pass
    ]


@pytest.mark.parametrize("shard_size,workers", [(1, 1), (7, 1), (1000, 1), (13, 2)])
def test_same_records_as_the_in_memory_chain_whatever_the_shards_and_workers(data, tmp_path, shard_size, workers):
    want = in_memory(data, CHAIN)
    kept = want[0].count("\n")
    assert 10 < kept < 100  # the fixture exercises every filter: some kept, many dropped
    for reason in ("exact_duplicate", "minhash_jaccard", "rouge_l>", "below_top_", "blacklist:", "too_short"):
        assert reason in want[1], reason
    out = tmp_path / "out"
    stats = curate(data, out, config=CHAIN, quiet=True, shard_size=shard_size, workers=workers)
    assert outputs(out) == want
    assert stats["executor"]["shards"] == -(-120 // shard_size)
    assert stats["kept"] == kept and stats["rejected"] == 120 - kept


@pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/data (T0)")
def test_t0_slice_on_the_default_chain_matches_the_in_memory_chain(tmp_path):
    src = tmp_path / "t0.jsonl"
    with gzip.open(SHARED, "rt", encoding="utf-8") as f, open(src, "w", encoding="utf-8") as g:
        for _, line in zip(range(1500), f):
            g.write(line)
    cfg = load_config(None).to_dict()
    for e in cfg["filters"]:
        if e["filter"] == "embedding":
            e["enabled"] = False  # no encoder in this test: the embedding step is covered in test_features.py
    want = in_memory(src, cfg)
    curate(src, tmp_path / "a", config=cfg, quiet=True, shard_size=400, workers=2)
    assert outputs(tmp_path / "a") == want


def test_kill_9_redoes_only_the_unfinished_shards(data, tmp_path):
    cfg = tmp_path / "chain.json"
    cfg.write_text(json.dumps(CHAIN))
    full = tmp_path / "full"
    curate(data, full, config=str(cfg), quiet=True, shard_size=3)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "instructgen", "curate", str(data), "--out", str(out), "--config", str(cfg),
            "--quiet", "--shard-size", "3"]
    events = out / ".work" / "events.jsonl"
    p = subprocess.Popen(argv, env=ENV, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:  # let some shards of the first pass finish, then kill -9
        if events.exists() and events.read_text().count("\n") >= 5:
            break
        time.sleep(0.002)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert not (out / "completed").exists(), "the run finished before the kill: nothing was tested"
    markers = {(int(d.name[1:]), int(m.name[:5])) for d in (out / ".work").glob("p*") for m in d.glob("*.done.json")}
    assert markers, "killed before any shard finished"
    before = events.read_text().count("\n")
    r = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert outputs(out) == outputs(full)
    stats = json.loads((out / "stats.json").read_text())
    shards_n, passes_n = stats["executor"]["shards"], len(stats["passes"])
    everything = {(q, s) for q in range(passes_n) for s in range(shards_n)}
    assert [p["shards_run"] for p in stats["passes"]] == [
        shards_n - len({s for q, s in markers if q == i}) for i in range(passes_n)]
    assert sum(p["shards_run"] for p in stats["passes"]) == len(everything - markers)
    assert before >= 5 - 1  # the events log is only a trace; the markers decide


def test_rouge_top_k_and_mean_through_the_shards_match_the_in_memory_chain(data, tmp_path):
    """The per-record path of rouge_l (most_similar meta, mean) reads its texts lazily from the shards."""
    cfg = json.loads(json.dumps(CHAIN))
    cfg["filters"][-1].update(top_k=3, mean_similarity=True)
    want = in_memory(data, cfg)
    assert '"most_similar"' in want[0] and '"rouge_l_mean"' in want[0]
    curate(data, tmp_path / "out", config=cfg, quiet=True, shard_size=11)
    assert outputs(tmp_path / "out") == want


def test_lazy_column_reads_rows_by_position_and_in_order(tmp_path):
    from instructgen.filters.shards import LazyColumn
    col = LazyColumn()
    values = [[f"s{s}-{i} é" for i in range(5)] for s in range(3)]
    for s, vals in enumerate(values):
        p = tmp_path / f"{s}.jsonl"
        p.write_text("".join(json.dumps(v, ensure_ascii=False) + "\n" for v in vals), encoding="utf-8")
        col.add(p, np.array([0, 2, 3] if s != 1 else [], dtype=np.int64))
    want = [values[s][i] for s in (0, 2) for i in (0, 2, 3)]
    assert len(col) == 6 and list(col) == want and [col[i] for i in range(6)] == want
    assert col[-1] == want[-1] and col[1:3] == want[1:3]
    with pytest.raises(IndexError):
        col[6]

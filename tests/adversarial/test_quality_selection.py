"""Issue 11, used as a user would: `gen curate` processes with ifd (a tiny Llama built from a config), llm_judge (a
local fake judge server that counts requests) and diversity after them, on a real T0 sample.

- re-selecting (a new keep_top or threshold, --overwrite) makes no model call: the judge sees no request and the
  ifd weights are broken on disk, so a load would fail;
- kill -9 mid judge step, resume: journaled judgements are not asked again, the result equals an uninterrupted run;
- every kept and rejected record carries the scores and ranks of the filters it reached; stats.json is right;
- bad configs fail in one line, exit 2, naming file:line and the option, before any model loads, writing nothing;
- empty input, records without outputs, unicode and duplicate texts.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "trainer"))
sys.path.insert(0, str(HERE.parent / "filters"))
from test_llm_judge import RatingServer  # noqa: E402
from tiny import build_model  # noqa: E402

ROOT = HERE.parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "TOKENIZERS_PARALLELISM": "false", "INSTRUCTGEN_TORCH_THREADS": "1"}


def gen(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "instructgen", "curate", *map(str, args), "--quiet"], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=300, **kw)


def rating(output: str):
    """A deterministic judge: the rating follows the output's length; a yes/no answer gets no score."""
    if output.split()[:1] and output.split()[0].strip(".,").lower() in ("no", "yes"):
        return "I cannot rate this.", {}
    s = len(output) % 6
    return f"Score: {s}\nBecause.", {s: 0.7, max(0, s - 1): 0.3}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_model(tmp_path_factory.mktemp("tiny-ifd"))


@pytest.fixture(scope="module")
def sample(shared_data, tmp_path_factory) -> Path:
    """14 T0 prompt/completion pairs (cut short, so the tiny model scores them fast) and one exact duplicate."""
    rows = []
    with gzip.open(shared_data / "t0_templates.jsonl.gz", "rt", encoding="utf-8") as f:
        for n, line in enumerate(f):
            if n % 1499 == 0:
                r = json.loads(line)
                rows.append({"prompt": r["prompt"][-160:], "completion": r["completion"][:80]})
            if len(rows) == 14:
                break
    rows.append(dict(rows[0]))  # a duplicate text: the same scores, two ranks, then diversity drops the later one
    path = tmp_path_factory.mktemp("t0") / "t0.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def config(folder: Path, model: Path, url: str, ifd_keep=8, judge_min=None, div_keep=5) -> Path:
    cfg = {"filters": [
        {"filter": "ifd", "model": str(model), "threshold": 50.0, "keep_top": ifd_keep, "max_length": 96},
        {"filter": "llm_judge", "judge": f"openai:{url}@judge", "min_score": judge_min, "batch_size": 2,
         "keep_top": 0.9},
        {"filter": "diversity", "score": "judge_rating*ifd", "keep_top": div_keep, "threshold": 0.98},
    ]}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "chain.yaml"
    import yaml
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def result(out: Path) -> dict:
    """What a run decided, without timings: every record (kept and rejected) and the per-filter counts."""
    stats = json.loads((out / "stats.json").read_text())
    return {"kept": records(out / "kept.jsonl"), "rejected": records(out / "rejected.jsonl"),
            "filters": [{k: f[k] for k in ("name", "records_in", "dropped", "kept")} for f in stats["filters"]]}


def same(a, b) -> bool:
    """Equal, floats to 1e-6 relative (a batch of another shape may round the last bit differently)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-6)
    return a == b


def test_quality_chain_reselects_without_a_model_call_and_resumes_after_kill_9(tiny, sample, tmp_path):
    chain = ["ifd", "llm_judge", "diversity"]
    with RatingServer(rating) as s:
        base = gen(sample, "--out", tmp_path / "a", "--config", config(tmp_path / "ca", tiny, s.url))
        assert base.returncode == 0, base.stderr
        asked = len(s.requests)
        a = result(tmp_path / "a")
        stats = json.loads((tmp_path / "a" / "stats.json").read_text())

        # every record carries the scores and ranks of every filter it reached, kept or rejected
        everything = a["kept"] + a["rejected"]
        assert len(everything) == 15 and len(a["kept"]) == 5
        for r in everything:
            reached = chain if r["verdict"]["kept"] else chain[:chain.index(r["verdict"]["filter"]) + 1]
            assert {"ifd", "ppl_cond", "ppl_alone"} <= set(r["scores"]) and "ifd" in r["meta"]["rank"]
            if "llm_judge" in reached:
                assert r["meta"]["judge"] and ("judge_rating" in r["scores"]) == ("llm_judge" in r["meta"]["rank"])
            if "diversity" in reached:
                assert "diversity" in r["meta"]["rank"]
        ifd_ranks = sorted(r["meta"]["rank"]["ifd"] for r in everything)
        assert ifd_ranks == list(range(1, 16))
        by_ifd = sorted(everything, key=lambda r: r["meta"]["rank"]["ifd"])
        assert [r["scores"]["ifd"] for r in by_ifd] == sorted((r["scores"]["ifd"] for r in everything), reverse=True)
        twins = {}  # the duplicate pair: same scores, distinct ranks
        for r in everything:
            twins.setdefault((r["instruction"], r["instances"][0]["output"]), []).append(r)
        pair = [v for v in twins.values() if len(v) == 2]
        assert len(pair) == 1 and pair[0][0]["scores"]["ifd"] == pair[0][1]["scores"]["ifd"]
        assert pair[0][0]["meta"]["rank"]["ifd"] != pair[0][1]["meta"]["rank"]["ifd"]
        first, second = sorted(pair[0], key=lambda r: r["meta"]["rank"].get("diversity", 99))
        assert second["verdict"]["reason"] == "diversity_cos>0.98"  # the walk reached both: the later is a duplicate
        assert second["verdict"]["duplicate_of"] == first["id"] and second["scores"]["diversity_cos_max"] > 0.99

        ifd, judge, div = stats["filters"]
        assert (ifd["records_in"], ifd["kept"], ifd["dropped"]) == (15, 8, {"below_top_8:ifd": 7})
        assert ifd["params"]["keep_top"] == 8 and ifd["details"]["scored"] == 15
        assert "model_load_seconds" in ifd["details"]
        unparseable = sum(1 for r in everything if r["meta"].get("judge") and r["meta"]["judge"][0]["score"] is None)
        assert unparseable and judge["records_in"] == 8 and judge["details"]["unparseable"] == unparseable
        assert judge["dropped"].get("judge_unparseable", 0) == unparseable
        distinct = len({(r["instruction"], r["instances"][0]["output"]) for r in everything if r["meta"].get("judge")})
        assert judge["details"]["judged"] == asked == distinct  # one call per distinct triplet, the twin reused
        assert judge["params"]["keep_top"] == 0.9 and div["params"]["score"] == "judge_rating*ifd"
        assert div["records_in"] == judge["kept"] and div["kept"] == 5

        # a tighter budget and a threshold, --overwrite: no judge request, and the ifd weights are broken on disk
        weights = next(tiny.glob("*.safetensors"))
        saved = weights.read_bytes()
        weights.write_bytes(b"broken")
        try:
            again = gen(sample, "--out", tmp_path / "a", "--overwrite", "--config",
                        config(tmp_path / "cb", tiny, s.url, ifd_keep=0.4, judge_min=0.5, div_keep=3))
        finally:
            weights.write_bytes(saved)
        assert again.returncode == 0, again.stderr
        assert len(s.requests) == asked
        st = json.loads((tmp_path / "a" / "stats.json").read_text())["filters"]
        assert st[0]["details"]["scores_cached"] == 15 and st[0]["details"]["scored"] == 0
        assert "model_load_seconds" not in st[0]["details"]
        assert st[0]["kept"] == 6 and st[0]["dropped"] == {"below_top_6:ifd": 9}  # ceil(0.4 * 15), of the 8 judged
        assert st[1]["details"]["judged"] == 0 and st[1]["details"]["reused"] == 6
        low = [r for r in records(tmp_path / "a" / "rejected.jsonl") if r["verdict"]["reason"] == "judge<0.5"]
        assert low and all(r["scores"]["judge_rating"] < 0.5 for r in low) and st[1]["dropped"]["judge<0.5"] == len(low)
        assert st[2]["records_in"] == st[1]["kept"] and 1 <= st[2]["kept"] <= 3
        assert st[2]["details"]["embeddings_encoded"] == 0 and st[2]["details"]["embeddings_cached"] == st[1]["kept"]

        # kill -9 while the judge waits on its 4th call (calls 1-2 journaled as one batch of 2), then resume
        gate, reached = threading.Event(), threading.Event()

        def hold(output):
            if len(s.requests) - before >= 4:
                reached.set()
                gate.wait(60)
        before = len(s.requests)
        s.fail = hold
        cfg = config(tmp_path / "ca2", tiny, s.url)
        p = subprocess.Popen([sys.executable, "-m", "instructgen", "curate", str(sample), "--out",
                              str(tmp_path / "b"), "--config", str(cfg), "--quiet"], cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert reached.wait(240), "the judge was never reached"
            # the cache is per folder: this run asked afresh
            assert len(s.requests) - before >= 4
            p.send_signal(signal.SIGKILL)
            p.wait(30)
        finally:
            gate.set()
            if p.poll() is None:
                p.kill()
        s.fail = lambda output: None
        assert not (tmp_path / "b" / "completed").exists()
        journal = tmp_path / "b" / ".cache" / "llm_judge.jsonl"
        done = len(journal.read_text().splitlines())
        assert done >= 2
        mid = len(s.requests)
        weights.write_bytes(b"broken")  # the ifd step had finished before the kill: its model is not loaded again
        try:
            resumed = gen(sample, "--out", tmp_path / "b", "--config", cfg)
        finally:
            weights.write_bytes(saved)
        assert resumed.returncode == 0, resumed.stderr
    assert len(s.requests) - mid == distinct - done  # journaled judgements are not asked again
    assert same(result(tmp_path / "b"), a)  # identical to the uninterrupted run


def bad(tmp_path, entry: dict) -> tuple[subprocess.CompletedProcess, Path]:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("filters:\n  - filter: length\n    fields: [instruction]\n"
                   + "  - " + json.dumps(entry) + "\n", encoding="utf-8")
    data = tmp_path / "in.jsonl"
    data.write_text('{"instruction": "Say something nice about rivers", "output": "Rivers are lovely"}\n')
    out = tmp_path / "out"
    return gen(data, "--out", out, "--config", cfg), out


@pytest.mark.parametrize("entry, says", [
    ({"filter": "ifd", "keep_top": 0}, "keep_top"),
    ({"filter": "ifd", "keep_top": -1}, "keep_top"),
    ({"filter": "ifd", "keep_top": 1.5}, "keep_top"),
    ({"filter": "ifd", "keep_top": "ten"}, "keep_top"),
    ({"filter": "llm_judge", "keep_top": 1.0}, "keep_top"),
    ({"filter": "diversity", "score": "judge_rating"}, "score"),
    ({"filter": "llm_judge", "judge": "openai:https://u:sk-abcdefgh12345678@example.com/v1@gpt"}, "judge"),
    ({"filter": "llm_judge", "judge": "openai:https://example.com/v1?api_key=sk-abcdefgh12345678@gpt"}, "judge"),
    ({"filter": "llm_judge", "judge": "openai:http://127.0.0.1:9/v1@gpt", "template": "/no/such.chat.jinja2"},
     "template"),
    ({"filter": "ifd", "model": "/no/such/model"}, "model"),
    ({"filter": "diversity", "model": "/no/such/model", "score": "words_instruction"}, "model"),
])
def test_bad_quality_configs_fail_in_one_line_before_any_model(tmp_path, entry, says):
    r, out = bad(tmp_path, entry)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gen curate: error: "), r.stderr
    assert f"bad.yaml:4: " in lines[0] and f"{says}" in lines[0], lines[0]
    assert "sk-abcdefgh" not in r.stderr + r.stdout
    assert not out.exists()


def test_diversity_walks_a_score_the_input_already_carries(tmp_path):
    """A score carried in by the records (an earlier gen curate's kept.jsonl) is a valid walk order."""
    data = tmp_path / "in.jsonl"
    rows = [{"id": f"r{i}", "instruction": f"Name a colour number {i} please", "instances": [{"output": "red"}],
             "scores": {"judge_rating": float(i)}} for i in range(4)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("filters:\n  - filter: diversity\n    score: judge_rating\n    keep_top: 2\n    threshold: 1.0\n")
    r = gen(data, "--out", tmp_path / "o", "--config", cfg)
    assert r.returncode == 0, r.stderr
    assert [k["id"] for k in records(tmp_path / "o" / "kept.jsonl")] == ["r2", "r3"]


def test_empty_input_missing_outputs_and_unicode(tiny, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"filters:\n  - filter: ifd\n    model: {json.dumps(str(tiny))}\n    threshold: 50.0\n"
                   "    keep_top: 2\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = gen(empty, "--out", tmp_path / "e", "--config", cfg)
    assert r.returncode == 0, r.stderr
    st = json.loads((tmp_path / "e" / "stats.json").read_text())
    assert st["records_in"] == 0 and st["filters"][0]["records_in"] == 0

    only = tmp_path / "instructions.jsonl"  # no record has an output: refused, naming the entry and the field
    only.write_text('{"instruction": "Write a poem about rivers"}\n')
    r = gen(only, "--out", tmp_path / "n", "--config", cfg)
    assert r.returncode == 2 and "c.yaml:2: " in r.stderr and "'output'" in r.stderr, r.stderr
    assert not (tmp_path / "n").exists()

    mixed = tmp_path / "mixed.jsonl"  # some without an output: dropped as ifd:no_output, never ranked or selected
    rows = [{"id": "u1", "instruction": "Traduis « bonjour » en 日本語", "output": "こんにちは 🌸"},
            {"id": "u2", "instruction": "Say hi", "output": ""},
            {"id": "u3", "instruction": "Écris un mot", "output": "ñandú"},
            {"id": "u4", "instruction": "Écris un mot", "output": "ñandú"},
            {"id": "u5", "instruction": "Only an instruction here"}]
    mixed.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    r = gen(mixed, "--out", tmp_path / "m", "--config", cfg)
    assert r.returncode == 0, r.stderr
    got = {x["id"]: x for x in records(tmp_path / "m" / "kept.jsonl") + records(tmp_path / "m" / "rejected.jsonl")}
    assert sum(x["verdict"]["kept"] for x in got.values()) == 2
    for i in ("u2", "u5"):
        assert got[i]["verdict"]["reason"] == "ifd:no_output" and "ifd" not in got[i]["scores"]
        assert "rank" not in got[i]["meta"]
    scored = [got[i] for i in ("u1", "u3", "u4")]
    assert sorted(x["meta"]["rank"]["ifd"] for x in scored) == [1, 2, 3] and all(x["scores"]["ifd"] > 0 for x in scored)
    assert got["u3"]["scores"] == got["u4"]["scores"]  # duplicate texts: one score (cached by text), two ranks
    assert got["u1"]["instruction"] == rows[0]["instruction"]  # unicode round-trips
    assert got["u1"]["instances"][0]["output"] == "こんにちは 🌸"


def test_kill_9_mid_ifd_step_rescores_only_the_unflushed_records(tiny, tmp_path):
    """Scores are flushed every 256 records: a process killed after the first flush resumes from it, and the
    result equals an uninterrupted run."""
    words = ["apple", "river", "stone", "cloud", "maple", "tiger", "piano", "lemon", "ocean", "candle"]
    rows = [{"id": f"r{i}", "instruction": f"Repeat the word {words[i % 10]} {i} times.",
             "output": " ".join([words[(i * 7) % 10]] * (1 + i % 5))} for i in range(700)]
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"filters:\n  - filter: ifd\n    model: {json.dumps(str(tiny))}\n    threshold: 50.0\n"
                   "    keep_top: 0.1\n    max_length: 32\n")
    out = tmp_path / "b"
    p = subprocess.Popen([sys.executable, "-m", "instructgen", "curate", str(data), "--out", str(out), "--config",
                          str(cfg), "--quiet"], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob(".cache/ifd*/**/chunk-*.npz")) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        p.send_signal(signal.SIGKILL)
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
    if p.returncode != -signal.SIGKILL:
        pytest.skip(f"the run ended before the kill (rc {p.returncode}); the machine is faster than this test")
    assert not (out / "completed").exists()
    r = gen(data, "--out", out, "--config", cfg)
    assert r.returncode == 0, r.stderr
    st = json.loads((out / "stats.json").read_text())["filters"][0]
    cached, scored = st["details"]["scores_cached"], st["details"]["scored"]
    assert cached >= 256 and cached + scored == 700
    fresh = gen(data, "--out", tmp_path / "a", "--config", cfg)
    assert fresh.returncode == 0, fresh.stderr
    assert same(result(out), result(tmp_path / "a"))

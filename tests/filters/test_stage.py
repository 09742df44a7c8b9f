"""`gen curate` end to end: outputs, stats, resume, refusal, overwrite keeping the cache, dry run, bad input."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import subprocess
import sys

import pytest

from instructgen.cli import main
from instructgen.filters import stage
from instructgen.filters.minhash import MinHashParams
from instructgen.filters.stage import curate
from instructgen.rundir import RunDirError

FAST = {"filters": [
    {"filter": "length", "min_words": 3, "max_words": 60},
    {"filter": "blacklist"},
    {"filter": "exact_dedup"},
    {"filter": "readability"},
    {"filter": "grammar", "enabled": False},
    {"filter": "minhash", "threshold": 0.7, "ngram": 3},
    {"filter": "rouge_l", "threshold": 0.7},
]}

PASSAGE = ("The Nile is a major north-flowing river in northeastern Africa that flows into the Mediterranean Sea "
           "and has historically been considered the longest river in the world")
ALPACA = [
    {"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat, sleep, move."},
    {"instruction": "Give three tips for staying healthy!", "input": "", "output": "Drink water."},
    {"instruction": "Draw a map of your town.", "input": "", "output": "..."},
    {"instruction": "Hi", "input": "", "output": "Hello"},
    {"instruction": "Answer the question about the passage.", "input": PASSAGE + ". Where does it flow?",
     "output": "Into the Mediterranean."},
    {"instruction": "Answer the question about the passage.", "input": PASSAGE + ". Where does it flow to?",
     "output": "The Mediterranean."},
    {"instruction": "Explain what a prime number is to a child.", "input": "", "output": "A number..."},
    {"instruction": "Explain what a prime number is to a young child.", "input": "", "output": "..."},
    {"instruction": "Translate the sentence into German.", "input": "I like apples.", "output": "Ich mag Äpfel."},
]


@pytest.fixture
def alpaca(tmp_path):
    p = tmp_path / "alpaca.json"
    p.write_text(json.dumps(ALPACA))
    return p


def read(p):
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def test_end_to_end_outputs_reasons_and_stats(alpaca, tmp_path, capsys):
    out = tmp_path / "cur"
    stats = curate(alpaca, out, config=FAST, quiet=False)
    kept, rejected = read(out / "kept.jsonl"), read(out / "rejected.jsonl")
    reasons = {r["id"]: (r["verdict"]["reason"], r["verdict"]["filter"], r["verdict"]["duplicate_of"]) for r in rejected}
    assert reasons == {"alpaca_1": ("exact_duplicate", "exact_dedup", "alpaca_0"),
                       "alpaca_2": ("blacklist:draw", "blacklist", None),
                       "alpaca_3": ("too_short:instruction", "length", None),
                       "alpaca_5": ("minhash_jaccard>=0.70", "minhash", "alpaca_4"),
                       "alpaca_7": ("rouge_l>0.70", "rouge_l", "alpaca_6")}
    assert [k["id"] for k in kept] == ["alpaca_0", "alpaca_4", "alpaca_6", "alpaca_8"]
    assert "reading_ease_instruction" in kept[0]["scores"] and "minhash_jaccard" in kept[1]["scores"]
    assert stats["records_in"] == 9 and stats["kept"] == 4 and stats["rejected"] == 5
    assert set(stats) >= {"input", "records_in", "kept", "rejected", "filters", "wall_seconds"}
    by = {f["name"]: f for f in stats["filters"]}
    assert list(by) == ["length", "blacklist", "exact_dedup", "readability", "grammar", "minhash", "rouge_l"]
    for f in stats["filters"]:
        assert set(f) >= {"name", "records_in", "dropped", "dropped_total", "kept", "seconds", "note", "params"}
    assert by["length"]["dropped"] == {"too_short:instruction": 1} and by["grammar"]["note"] == "disabled in config"
    mh = by["minhash"]
    assert mh["records_in"] == 6 and mh["details"]["bands"] * mh["details"]["rows"] <= 128
    assert mh["params"] == {**dataclasses.asdict(MinHashParams()), "threshold": 0.7, "ngram": 3}  # Params, whole
    # every record reaching rouge_l carries its score and rank, kept or dropped
    assert all("rouge_l_max" in r["scores"] and "rouge_l" in r["meta"]["rank"] for r in kept)
    assert {r["id"]: r["meta"]["rank"]["rouge_l"] for r in read(out / "rejected.jsonl") if r["id"] == "alpaca_7"} \
        == {"alpaca_7": 5}
    assert json.loads((out / "stats.json").read_text()) == stats
    assert (out / "completed").exists() and json.loads((out / "config.json").read_text())["stage"] == "curate"
    printed = capsys.readouterr().out
    assert "exact_duplicate" in printed and "total" in printed
    # curate.yaml reproduces the run: same config, so the folder is complete and nothing is done
    assert curate(alpaca, out, config=str(out / "curate.yaml"), quiet=True) == stats


def test_done_is_a_noop_other_config_refused_overwrite_keeps_cache(alpaca, tmp_path, monkeypatch):
    out = tmp_path / "cur"
    first = curate(alpaca, out, config=FAST, quiet=True)
    assert first["filters"][5]["details"]["signatures_computed"] == 6
    mtime = (out / "kept.jsonl").stat().st_mtime_ns
    assert curate(alpaca, out, config=FAST, quiet=True) == first and (out / "kept.jsonl").stat().st_mtime_ns == mtime
    stricter = json.loads(json.dumps(FAST))
    stricter["filters"][5]["threshold"] = 0.95
    with pytest.raises(RunDirError, match=r"filters.minhash.threshold: 0.7 -> 0.95"):
        curate(alpaca, out, config=stricter, quiet=True)
    again = curate(alpaca, out, config=stricter, overwrite=True, quiet=True)
    mh = again["filters"][5]
    assert mh["details"]["signatures_computed"] == 0 and mh["details"]["signatures_cached"] == 6
    assert mh["params"]["threshold"] == 0.95 and mh["records_in"] == 6
    assert not list(tmp_path.glob(".cur.curate-cache*"))


class Crash(Exception):
    pass


def _crash_after(monkeypatch, n: int) -> list:
    """Let `n` shard jobs finish, then crash the run (as a kill would) at the next one."""
    from instructgen.filters import shards
    real, calls = shards.run_shard, []

    def job(j):
        if len(calls) >= n:
            raise Crash(f"killed before pass {j['pass']} shard {j['shard']}")
        calls.append((j["pass"], j["shard"]))
        return real(j)
    monkeypatch.setattr(shards, "run_shard", job)
    return calls


def test_an_interrupted_run_resumes_shard_by_shard(alpaca, tmp_path, monkeypatch):
    full = curate(alpaca, tmp_path / "full", config=FAST, quiet=True, shard_size=2)
    want = (tmp_path / "full" / "kept.jsonl").read_text(), (tmp_path / "full" / "rejected.jsonl").read_text()
    shards_n = full["executor"]["shards"]
    assert shards_n >= 3 and len(full["passes"]) == 3  # the test needs several shards and passes
    out = tmp_path / "cur"
    with monkeypatch.context() as m:
        _crash_after(m, shards_n + 1)  # all of pass 1 and exact_dedup's central step, one shard of pass 2
        with pytest.raises(Crash):
            curate(alpaca, out, config=FAST, quiet=True, shard_size=2)
    assert not (out / "completed").exists() and (out / ".work" / "c2" / "done.json").exists()
    from instructgen.filters.exact import ExactDedupFilter
    monkeypatch.setattr(ExactDedupFilter, "decide_rows", lambda self, rows: pytest.fail("finished step re-run"))
    redone = _crash_after(monkeypatch, 10 ** 6)
    resumed = curate(alpaca, out, config=FAST, quiet=True, shard_size=2)
    assert ((out / "kept.jsonl").read_text(), (out / "rejected.jsonl").read_text()) == want
    # only the unfinished shards: pass 2 less its first shard, then the write pass
    assert redone == [(1, s) for s in range(1, shards_n)] + [(2, s) for s in range(shards_n)]
    assert [p["shards_run"] for p in resumed["passes"]] == [0, shards_n - 1, shards_n]
    assert [f["dropped"] for f in resumed["filters"]] == [f["dropped"] for f in full["filters"]]
    assert not (out / ".work").exists()  # the work folder goes once the outputs are written


def test_ranks_and_keep_top_resume_from_the_central_decisions(alpaca, tmp_path, monkeypatch):
    ranked = json.loads(json.dumps(FAST))
    ranked["filters"][5]["keep_top"] = 5  # minhash: the 5 most novel of 6
    ranked["filters"][6]["keep_top"] = 0.5  # rouge_l: half of what reaches it
    out = tmp_path / "cur"
    full = curate(alpaca, tmp_path / "full", config=ranked, quiet=True, shard_size=3)
    assert full["filters"][5]["dropped"] == {"minhash_jaccard>=0.70": 1}  # 5 survive the threshold: all kept
    assert full["filters"][6]["dropped"] == {"rouge_l>0.70": 1, "below_top_3:rouge_l_max": 1}
    kept = read(tmp_path / "full" / "kept.jsonl")
    assert all(set(r["meta"]["rank"]) == {"readability", "minhash", "rouge_l"} for r in kept)  # every scoring filter
    want = (tmp_path / "full" / "kept.jsonl").read_text(), (tmp_path / "full" / "rejected.jsonl").read_text()
    n = full["executor"]["shards"]
    with monkeypatch.context() as m:
        _crash_after(m, 2 * n)  # killed before the write pass: every central decision is on disk
        with pytest.raises(Crash):
            curate(alpaca, out, config=ranked, quiet=True, shard_size=3)
    from instructgen.filters.minhash import MinHashFilter
    from instructgen.filters.rouge import RougeNoveltyFilter
    for cls in (MinHashFilter, RougeNoveltyFilter):
        monkeypatch.setattr(cls, "decide_rows", lambda self, rows: pytest.fail("finished step re-run"))
    curate(alpaca, out, config=ranked, quiet=True, shard_size=3)
    assert ((out / "kept.jsonl").read_text(), (out / "rejected.jsonl").read_text()) == want


def test_a_shard_marker_from_another_run_is_refused_never_reused(alpaca, tmp_path, monkeypatch):
    out = tmp_path / "cur"
    with monkeypatch.context() as m:
        _crash_after(m, 1)
        with pytest.raises(Crash):
            curate(alpaca, out, config=FAST, quiet=True, shard_size=2)
    marker = out / ".work" / "p0" / "00000.done.json"
    rec = json.loads(marker.read_text())
    marker.write_text(json.dumps(dict(rec, identity="another-run")))
    with pytest.raises(RunDirError, match="00000.done.json: this shard was done by another run"):
        curate(alpaca, out, config=FAST, quiet=True, shard_size=2)
    marker.write_text(json.dumps(rec))
    assert curate(alpaca, out, config=FAST, quiet=True, shard_size=2)["kept"] == 4


def test_dry_run_writes_nothing_and_prints_the_funnel(alpaca, tmp_path, capsys):
    out = tmp_path / "never"
    stats = curate(alpaca, out, config=FAST, dry_run=True, quiet=True)
    assert not out.exists() and stats["kept"] == 4
    assert "rouge_l" in capsys.readouterr().out


def test_empty_input_gives_an_empty_valid_result(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_text("")
    stats = curate(p, tmp_path / "out", config=FAST, quiet=True)
    assert stats["records_in"] == 0 and stats["kept"] == 0 and len(stats["filters"]) == len(FAST["filters"])
    assert (tmp_path / "out" / "kept.jsonl").read_text() == "" and (tmp_path / "out" / "completed").exists()


def test_a_run_folder_is_an_input(alpaca, tmp_path):
    curate(alpaca, tmp_path / "a", config=FAST, quiet=True)
    stats = curate(tmp_path / "a", tmp_path / "b", config=FAST, quiet=True)
    assert stats["records_in"] == 4 and stats["kept"] == 4


def test_cli_errors_are_one_line_with_the_place(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "ok", "output": "x"}\n{"instruction": \n')
    assert main(["curate", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert f"{bad}:2: not valid JSON" in capsys.readouterr().err
    txt = tmp_path / "list.txt"
    txt.write_text("Name a river.\nName a mountain in Asia.\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("filters:\n  - filter: length\n    fields: [instruction, output]\n")
    assert main(["curate", str(txt), "--out", str(tmp_path / "o2"), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}:2: filter 'length' reads field 'output'" in err and not (tmp_path / "o2").exists()


def test_enabled_grammar_without_languagetool_stops_before_any_work(alpaca, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LANGUAGETOOL_URL", raising=False)
    monkeypatch.setenv("LTP_PATH", str(tmp_path / "no-lt"))
    cfg = tmp_path / "g.yaml"
    cfg.write_text("filters:\n  - filter: grammar\n")
    assert main(["curate", str(alpaca), "--out", str(tmp_path / "o"), "--config", str(cfg)]) == 2
    assert "--languagetool-url" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_help_and_print_config_do_not_import_torch():
    code = ("import sys; from instructgen.cli import main\n"
            "try:\n    main(['curate', '--help'])\nexcept SystemExit: pass\n"
            "main(['curate', '--print-config'])\n"
            "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "--languagetool-url" in r.stdout and "filter: minhash" in r.stdout


def test_default_chain_on_real_prompt_completion_pairs(shared_data, tmp_path):
    with gzip.open(shared_data / "t0_templates.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for _, line in zip(range(150), f)]
    p = tmp_path / "t0.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["curate", str(p), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    by = {f["name"]: f for f in stats["filters"]}
    assert by["grammar"]["note"] == "skipped: LanguageTool not reachable" or os.environ.get("LANGUAGETOOL_URL")
    assert by["minhash"]["dropped_total"] > 0 and by["embedding"]["details"]["embeddings_encoded"] > 0
    assert stats["kept"] + stats["rejected"] == 150
    for r in read(tmp_path / "out" / "rejected.jsonl"):
        assert r["verdict"]["reason"] and r["verdict"]["filter"] in by
        if "dup" in r["verdict"]["reason"] or r["verdict"]["filter"] in ("minhash", "rouge_l", "embedding"):
            assert r["verdict"]["duplicate_of"]

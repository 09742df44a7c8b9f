"""Report and publish benchmarks (issue 6), run by hand: `python benchmarks/report_publish.py [--limit N]`.

A curated stage folder is built from the 55,185 real prompt/completion pairs in ../shared/data
(t0_templates.jsonl.gz) with per-record scores and a stats.json, then timed:
  baseline  reading the stage's records (load_run: JSON parse + Task objects), the least any report must do;
  report    write_report: every figure, the verb-object tree, the token counts, the HTML page;
  publish   gen publish --local-dir: parquet shards, card, figures, report, config files.
Each prints its wall time and its ratio to the baseline measured in the same run (targets: report <= 5x the
baseline, publish <= 10x: both scale like reading the data, not worse).

`--big N` (e.g. `--big 1000000`) instead times `gen report` alone on an N-record curated stage: the real pairs
cycled with unique ids and fresh scores, a quarter of them dropped. It prints the seconds, the page's bytes and
the peak memory (the report streams the records: binned figures, sampled rows), and the same for a 1/10 stage,
so the page size and memory can be seen not to grow with N.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))


def make_stage(folder: Path, limit: int | None) -> int:
    from instructgen.records import read_tasks, write_jsonl
    from instructgen.rundir import library_versions, write_json

    tasks = read_tasks(SHARED / "t0_templates.jsonl.gz")[:limit]
    rng = random.Random(0)
    kept, dropped = [], []
    for i, t in enumerate(tasks):
        t.scores = {"flesch_reading_ease": rng.uniform(0, 100), "minhash_jaccard": rng.uniform(0, 1)}
        if t.scores["minhash_jaccard"] > 0.8:
            t.drop("minhash>0.80", filter="minhash", duplicate_of=tasks[i - 1].id if i else None)
            dropped.append(t)
        else:
            kept.append(t)
    folder.mkdir(parents=True)
    write_jsonl(folder / "kept.jsonl", kept)
    write_jsonl(folder / "rejected.jsonl", dropped)
    write_json(folder / "stats.json", {"input": str(SHARED / "t0_templates.jsonl.gz"), "records_in": len(tasks),
                                       "kept": len(kept), "rejected": len(dropped), "wall_seconds": 0, "filters": [
                                           {"name": "minhash", "records_in": len(tasks),
                                            "dropped": {"minhash>0.80": len(dropped)}, "dropped_total": len(dropped),
                                            "kept": len(kept), "seconds": 0, "note": None,
                                            "params": {"threshold": 0.8}}]})
    write_json(folder / "config.json", {"stage": "curate", "config": {"input": "t0_templates.jsonl.gz"}})
    write_json(folder / "versions.json", library_versions())
    (folder / "completed").write_text("bench\n")
    return len(tasks)


def make_big_stage(folder: Path, n: int) -> int:
    """An n-record curated stage written line by line (no Task objects): the real pairs cycled."""
    from instructgen.records import read_tasks
    from instructgen.rundir import library_versions, write_json

    base = [t.to_dict() for t in read_tasks(SHARED / "t0_templates.jsonl.gz")[:20000]]
    rng = random.Random(0)
    folder.mkdir(parents=True)
    dropped = 0
    with open(folder / "kept.jsonl", "w", encoding="utf-8") as kept, \
            open(folder / "rejected.jsonl", "w", encoding="utf-8") as rej:
        for i in range(n):
            d = dict(base[i % len(base)], id=f"big-{i:07d}")
            j = rng.random()
            d["scores"] = {"minhash_jaccard": j, "reading_ease_instruction": rng.uniform(-20, 110)}
            if j > 0.75:
                d["verdict"] = {"kept": False, "reason": "minhash>0.75", "filter": "minhash",
                                "duplicate_of": f"big-{max(0, i - 1):07d}"}
                dropped += 1
                rej.write(json.dumps(d, ensure_ascii=False) + "\n")
            else:
                kept.write(json.dumps(d, ensure_ascii=False) + "\n")
    write_json(folder / "stats.json", {"records_in": n, "kept": n - dropped, "rejected": dropped, "filters": [
        {"name": "minhash", "filter": "minhash", "records_in": n, "dropped": {"minhash>0.75": dropped},
         "dropped_total": dropped, "kept": n - dropped, "params": {"threshold": 0.75}},
        {"name": "readability", "filter": "readability", "records_in": n - dropped, "dropped": {},
         "dropped_total": 0, "kept": n - dropped, "params": {"min_reading_ease": -40.0}}]})
    write_json(folder / "config.json", {"stage": "curate", "config": {"input": "t0_templates.jsonl.gz"}})
    write_json(folder / "versions.json", library_versions())
    (folder / "completed").write_text("bench\n")
    return n


def big(n: int) -> None:
    """`gen report` on an n-record and an n/10-record stage, each in a fresh process (peak memory is per run)."""
    import subprocess
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for size in (n // 10, n):
            stage = Path(tmp) / f"curated-{size}"
            _, made = timed(lambda: make_big_stage(stage, size))
            code = ("import json, resource, sys, time; from instructgen.report import write_report; "
                    "t = time.perf_counter(); out = write_report(sys.argv[1], sys.argv[2]); "
                    "print(json.dumps({'s': time.perf_counter() - t, 'bytes': out.stat().st_size, "
                    "'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")
            res = subprocess.run([sys.executable, "-c", code, str(stage), str(Path(tmp) / f"r{size}.html")],
                                 capture_output=True, text=True, cwd=ROOT, check=True)
            r = json.loads(res.stdout.strip().splitlines()[-1])
            mb = sum(p.stat().st_size for p in stage.glob("*.jsonl")) / 1e6
            rows.append({"records": size, "data_mb": round(mb), "write_s": round(made, 1),
                         "report_s": round(r["s"], 1), "page_bytes": r["bytes"], "peak_rss_mb": round(r["rss_mb"])})
            print(f"{size:>9,} records ({mb:,.0f} MB of JSONL, written in {made:.0f} s): gen report {r['s']:6.1f} s, "
                  f"page {r['bytes']:,} bytes, peak memory {r['rss_mb']:,.0f} MB")
            for p in stage.glob("*.jsonl"):
                p.unlink()  # the disk, before the next size
        print(json.dumps(rows))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None, help="use only the first N records")
    ap.add_argument("--big", type=int, default=0, metavar="N",
                    help="time gen report alone on an N-record stage (and an N/10 one), e.g. 1000000")
    args = ap.parse_args()
    if not (SHARED / "t0_templates.jsonl.gz").exists():
        sys.exit("../shared/data/t0_templates.jsonl.gz is absent")
    if args.big:
        return big(args.big)
    from instructgen.publish import PublishConfig, publish
    from instructgen.report import load_run, write_report

    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "curated"
        n = make_stage(stage, args.limit)
        _, base = timed(lambda: load_run(stage))
        out, rep = timed(lambda: write_report(stage, Path(tmp) / "report.html"))
        size = out.stat().st_size
        (_, _, manifest), pub = timed(lambda: publish(stage, PublishConfig(repo="bench/t0", split_test=0.05),
                                                      local_dir=Path(tmp) / "pub"))
        print(f"records: {n:,} (curated stage from t0_templates.jsonl.gz)")
        print(f"baseline load_run : {base:7.2f} s")
        print(f"write_report      : {rep:7.2f} s  ratio {rep / base:5.2f}x (target <= 5x)  page {size / 1e6:.2f} MB")
        print(f"publish --local-dir: {pub:6.2f} s  ratio {pub / base:5.2f}x (target <= 10x)  "
              f"{sum(manifest['splits'].values()):,} examples, {len(manifest['files'])} files")
        print(json.dumps({"records": n, "load_s": round(base, 2), "report_s": round(rep, 2),
                          "publish_s": round(pub, 2)}))


if __name__ == "__main__":
    main()

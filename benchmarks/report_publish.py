"""Report and publish benchmarks (issue 6), run by hand: `python benchmarks/report_publish.py [--limit N]`.

A curated stage folder is built from the 55,185 real prompt/completion pairs in ../shared/data
(t0_templates.jsonl.gz) with per-record scores and a stats.json, then timed:
  baseline  reading the stage's records (load_run: JSON parse + Task objects), the least any report must do;
  report    write_report: every figure, the verb-object tree, the token counts, the HTML page;
  publish   gen publish --local-dir: parquet shards, card, figures, report, config files.
Each prints its wall time and its ratio to the baseline measured in the same run (targets: report <= 5x the
baseline, publish <= 10x: both scale like reading the data, not worse).
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


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None, help="use only the first N records")
    args = ap.parse_args()
    if not (SHARED / "t0_templates.jsonl.gz").exists():
        sys.exit("../shared/data/t0_templates.jsonl.gz is absent")
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

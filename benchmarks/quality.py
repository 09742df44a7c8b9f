"""Quality-selection benchmarks (issue 11) on ../shared/data/t0_templates.jsonl.gz (55,185 real, noisy P3/T0
prompt/completion pairs), each ratio against a baseline measured in the same run.

1. `throughput`: IFD scoring of the same records with the same model (the embedded SmolLM2-135M) three ways,
   each in its own process so its peak RSS is its own: the one-record-at-a-time loop of the reference scripts
   (Superfiltering's `data_analysis.py`: one forward per text, `model(ids, labels=...)`, full logits) in
   float32; our batched scorer (`filters/ifd.py`: both texts of every record in one length-sorted pool, loss
   per row, vocabulary projection only at scored positions) in float32; and the same in the dtype `auto` picks
   (bfloat16 on a CPU with AMX). Same tokenization and truncation everywhere, so the IFDs must agree: the table
   shows the largest IFD difference and the rank correlation against the loop. Target: >= 5x records/s.
2. `selection`: does selection pay? From one pool, select the same number of records by random, ifd (drop
   IFD >= 1, keep the top K), ifd + diversity (DEITA's greedy rule walking by IFD) and llm_judge (AlpaGasus
   rating, when a judge is given); train the same student with the same budget on each (`gen train`'s API)
   and score it before and after with `gen eval` (IFBench prompts, plus the floor). One table: selection,
   records, training tokens, before/after scores. `--scale tiny` (the default) only checks that the pipeline
   works: a random-weight 2-layer student built from a config (tests/trainer/tiny.py) that also scores and
   judges, seconds per step, numbers without meaning. `small` (CPU, well under an hour on a free machine) and
   `gpu` use the embedded SmolLM2-135M as scorer, judge and student, on larger pools.

    python benchmarks/quality.py throughput [--records 256] [--forward-batch 16] [--max-length 512]
    python benchmarks/quality.py selection [--scale tiny|small|gpu] [--judge SPEC|none]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "t0_templates.jsonl.gz"
sys.path.insert(0, str(ROOT))


def load_rows(n: int, seed: int = 0, max_chars: int | None = None) -> list[dict]:
    """n records drawn at random (seed 0) from the whole file, so many templates are represented; with
    `max_chars`, only prompts up to that long (so a training example is rarely cut)."""
    with gzip.open(DATA, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    rows = [r for r in rows if r["completion"].strip() and r["prompt"].strip()
            and (max_chars is None or len(r["prompt"]) <= max_chars)]
    random.Random(seed).shuffle(rows)
    return rows[:n]


def tasks_from(rows):
    from instructgen.records import Instance, Task
    return [Task(id=r["id"], instruction=r["prompt"], instances=[Instance("", r["completion"])]) for r in rows]


# ------------------------------------------------------------------------------------------------ throughput

def side(mode: str, n: int, forward_batch: int, max_length: int, forward_tokens: int) -> dict:
    """One side of part 1, in this process: load, then score n records; returns timings, RSS and the IFDs."""
    import resource

    import numpy as np
    import torch

    from instructgen.filters.ifd import IFDScorer, ifd_prompt, token_nll
    pairs = [(ifd_prompt(r["prompt"]), r["completion"]) for r in load_rows(n)]
    dtype = {"loop": "float32", "batched-fp32": "float32", "batched-auto": "auto"}[mode]
    sc = IFDScorer("smollm2-135m", max_length, forward_batch, dtype=dtype, max_tokens=forward_tokens)
    model, tok = sc.load()
    rows = [r for p in pairs for r in sc.encode(*p)]
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if mode == "loop":  # the reference scripts' shape: one text per forward, HF's loss over full logits
        nll = []
        with torch.inference_mode():
            for ids, ctx in rows:
                x = torch.tensor([ids])
                labels = x.clone()
                labels[0, :ctx] = -100
                nll.append(float(model(input_ids=x, labels=labels).loss))
        nll = np.array(nll)
    else:
        out = token_nll(model, rows, forward_batch, tok.pad_token_id, "cpu", sc.max_tokens)
        nll = out[:, 0] / out[:, 1]
    seconds = time.perf_counter() - t0
    return {"mode": mode, "dtype": sc.dtype, "records": len(pairs), "tokens": sum(len(r[0]) for r in rows),
            "seconds": seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_after_load_mib": rss_loaded, "ifd": np.exp(nll[0::2] - nll[1::2]).tolist(),
            "threads": torch.get_num_threads()}


def run_side(mode: str, args) -> dict:
    cmd = [sys.executable, __file__, "_side", mode, "--records", str(args.records), "--forward-batch",
           str(args.forward_batch), "--max-length", str(args.max_length), "--forward-tokens", str(args.forward_tokens)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if p.returncode:
        sys.exit(f"{mode} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def throughput(args) -> None:
    import numpy as np
    from scipy.stats import spearmanr

    from instructgen.progress import table
    sides = [run_side(m, args) for m in ("loop", "batched-fp32", "batched-auto")]
    base = sides[0]
    rows = []
    for s in sides:
        a, b = np.array(s["ifd"]), np.array(base["ifd"])
        rel = np.abs(a - b) / b
        same_side = float(np.mean((a < 1) == (b < 1)))  # the IFD >= 1 rule decides the same
        rows.append([s["mode"], s["dtype"], s["records"], s["tokens"], round(s["seconds"], 1),
                     round(s["records"] / s["seconds"], 3), round(base["seconds"] / s["seconds"], 2),
                     f"{np.median(rel):.1e}", f"{np.max(rel):.1e}", round(float(spearmanr(a, b)[0]), 4), same_side,
                     round(s["peak_rss_mib"]), round(s["peak_rss_mib"] - s["rss_after_load_mib"])])
    print(f"IFD scoring, {base['records']} T0 records (seed 0), smollm2-135m, max_length {args.max_length}, "
          f"forward batch {args.forward_batch} rows / {args.forward_tokens} tokens, {base['threads']} torch threads, "
          f"IFD range {min(base['ifd']):.3g}-{max(base['ifd']):.3g}, load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(table(rows, header=["scorer", "dtype", "records", "tokens", "seconds", "records/s", "x loop",
                              "median rel dIFD", "max rel dIFD", "spearman", "same IFD>=1", "peak RSS MiB",
                              "scoring MiB"]))


# ------------------------------------------------------------------------------------------------- selection

SCALES = {  # pool, selected, student steps, IFBench prompts, answer tokens
    "tiny": dict(pool=24, select=8, steps=2, suite="ifbench:2", answer_tokens=16, judge_tokens=8, max_chars=300),
    # small: sized to finish in well under an hour on a free 2-core CPU (3 students of 10 steps, 4 IFBench runs)
    "small": dict(pool=500, select=80, steps=10, suite="ifbench:16", answer_tokens=256, judge_tokens=64,
                  max_chars=1500),
    "gpu": dict(pool=20000, select=2000, steps=600, suite="ifbench", answer_tokens=1280, judge_tokens=64,
                max_chars=None),
}


def select_all(pool, k: int, model: str, judge: str | None, judge_tokens: int, cache: Path, max_length: int):
    """{selection name: (records, seconds)}; every scorer runs through its gen curate filter."""
    from instructgen.filters.diversity import DiversityFilter
    from instructgen.filters.ifd import IFDFilter
    from instructgen.filters.llm_judge import LLMJudgeFilter
    from instructgen.records import Task

    def copy():
        return [Task.from_dict(t.to_dict()) for t in pool]

    ctx = {"cache_dir": cache}
    out = {"random": (random.Random(0).sample(copy(), k), 0.0)}
    t0 = time.perf_counter()
    f = IFDFilter.of(model=model, keep_top=k, max_length=max_length)
    f.prepare(ctx)
    out["ifd"] = ([t for t in f.apply(copy()) if t.kept], time.perf_counter() - t0)
    t0 = time.perf_counter()
    f = IFDFilter.of(model=model, max_length=max_length)  # threshold only: its scores come from the cache
    f.prepare(ctx)
    survivors = [t for t in f.apply(copy()) if t.kept]
    d = DiversityFilter.of(keep_top=k, score="ifd", fields=["instruction", "input", "output"])
    d.prepare(ctx)
    out["ifd+diversity"] = ([t for t in d.apply(survivors) if t.kept], time.perf_counter() - t0)
    if judge:
        t0 = time.perf_counter()
        j = LLMJudgeFilter.of(judge=judge, min_score=None, keep_top=k, max_new_tokens=judge_tokens,
                              template="judge_quality.completion")
        j.prepare(ctx)
        kept = [t for t in j.apply(copy()) if t.kept]
        j.close()
        out["llm_judge"] = (kept, time.perf_counter() - t0, j.details)
    return out


def selection(args) -> None:
    from instructgen.progress import table
    from instructgen.records import write_jsonl
    from instructgen.trainer import TrainConfig, train

    sc = SCALES[args.scale]
    work = Path(args.work or tempfile.mkdtemp(prefix="quality-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.scale == "tiny":
        sys.path.insert(0, str(ROOT / "tests" / "trainer"))
        from tiny import build_model
        student = str(work / "tiny-student")
        if not (Path(student) / "config.json").exists():
            build_model(Path(student))
        scorer, judge, max_length = student, f"transformers:{student}", 256
        train_kw = dict(lora_r=8, lora_alpha=16, lora_dropout=0.0, learning_rate=1e-2, batch_size=4, grad_accum=1,
                        max_seq_length=256, eval_generations=2, eval_max_new_tokens=8, min_heldout=2,
                        max_truncated_share=1.0)  # the tiny tokenizer spells T0's words byte by byte
    else:
        scorer, judge, max_length = "smollm2-135m", "smollm2-135m", 512
        train_kw = dict(batch_size=4, grad_accum=4, max_seq_length=512, eval_generations=8)
    if args.judge:
        judge = None if args.judge == "none" else args.judge
    pool = tasks_from(load_rows(sc["pool"], max_chars=sc["max_chars"]))
    chosen = select_all(pool, sc["select"], scorer, judge, sc["judge_tokens"], work / "cache", max_length)
    rows = []
    for name, picked in chosen.items():
        recs, secs = picked[0], picked[1]
        note = f"judge: {picked[2]}" if len(picked) > 2 else ""
        if not recs:
            rows.append([name, 0, None, None, None, None, None, None, round(secs, 1), note or "nothing selected"])
            continue
        data = work / f"{name}.jsonl"
        write_jsonl(data, recs)
        cfg = TrainConfig(student=scorer if args.scale == "tiny" else "smollm2-135m", max_steps=sc["steps"],
                          cpu_max_steps=0, benchmark=sc["suite"], benchmark_max_new_tokens=sc["answer_tokens"],
                          save_steps=max(1, sc["steps"]), **train_kw)
        m = train(cfg, data, work / f"train-{name}", quiet=True)
        bench = m.get("benchmark") or {}
        before, after = bench.get("before") or {}, bench.get("after") or {}
        floor = bench.get("floor") or {}
        rows.append([name, len(recs), m["train"].get("tokens_seen"), _num(before.get("prompt_strict")),
                     _num(after.get("prompt_strict")), _num(before.get("instruction_loose")),
                     _num(after.get("instruction_loose")), _num(floor.get("instruction_loose")), round(secs, 1),
                     note])
    print(f"selection at scale {args.scale}: pool {len(pool)} T0 records, {sc['select']} selected each, "
          f"{sc['steps']} steps, {sc['suite']} (work folder {work})")
    print(table(rows, header=["selection", "records", "train tokens", "prompt strict before", "after",
                              "inst loose before", "after", "floor inst loose", "select s", "note"]))


def _num(x):
    return None if x is None else round(float(x), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="part", required=True)
    for name in ("throughput", "_side"):
        p = sub.add_parser(name)
        if name == "_side":
            p.add_argument("mode")
        p.add_argument("--records", type=int, default=256)
        p.add_argument("--forward-batch", type=int, default=16)
        p.add_argument("--max-length", type=int, default=512)
        p.add_argument("--forward-tokens", type=int, default=4096)
    p = sub.add_parser("selection")
    p.add_argument("--scale", choices=list(SCALES), default="tiny")
    p.add_argument("--judge", default=None, help="judge teacher spec, or none (default: the scale's)")
    p.add_argument("--work", default=None, help="work folder (default: a new temp folder)")
    args = ap.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA} is absent (../shared/data is beside the repo in CI only)")
    if args.part == "_side":
        print(json.dumps(side(args.mode, args.records, args.forward_batch, args.max_length, args.forward_tokens)))
    elif args.part == "throughput":
        throughput(args)
    else:
        selection(args)


if __name__ == "__main__":
    main()

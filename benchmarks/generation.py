"""Generation benchmarks (issue 2), run by hand: `python benchmarks/generation.py [--num 30] [--skip-model]`.

1. Instructions kept per minute on the embedded teacher: our batched pipeline vs a naive loop that sends one
   prompt at a time and scans the whole pool with rouge-score (as the original did); same model, sampling,
   seeds. Target >= 4x. `--rows R` with `--batch-size B > R` lets the teacher refill finished rows from the
   waiting prompts of a call (B prompts per call, R decoded at once).
2. Overhead: our end-to-end completion tokens/s vs a raw batched `model.generate` over the same prompts with
   the same batch size and sampling. Target >= 0.9.
3. Novelty check: ours vs the exhaustive rouge-score scan, 500 new candidates against a pool of 5,000 real
   instructions built from ../shared/data: identical decisions, target >= 50x faster.
Each ratio is against a baseline measured in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))


def novelty_benchmark(n_pool: int = 5000, n_cand: int = 500) -> dict:
    from rouge_score import rouge_scorer

    from instructgen.filters.rouge import RougeIndex, rouge_tokens

    seeds = [json.loads(line)["instruction"] for line in open(SHARED / "self_instruct_seed_tasks.jsonl")]
    rows = [json.loads(line)["prompt"] for line in gzip.open(SHARED / "t0_templates.jsonl.gz", "rt")]
    short = sorted({r for r in rows if 4 <= len(r.split()) <= 60})  # instruction-sized prompts
    rng = random.Random(0)
    rng.shuffle(short)
    pool = seeds + short[: n_pool - len(seeds)]
    cands = short[n_pool - len(seeds): n_pool - len(seeds) + n_cand]

    t0 = time.perf_counter()
    idx = RougeIndex()
    idx.extend((str(i), p) for i, p in enumerate(pool))
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = [idx.max_score(rouge_tokens(c), threshold=0.7)[0] > 0.7 for c in cands]
    t_ours = time.perf_counter() - t0 + t_build

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    t0 = time.perf_counter()
    theirs = [max(scorer.score(c, p)["rougeL"].fmeasure for p in pool) > 0.7 for c in cands]
    t_ex = time.perf_counter() - t0
    return {"pool": len(pool), "candidates": len(cands), "rejected": sum(theirs), "identical": ours == theirs,
            "ours_s": t_ours, "index_build_s": t_build, "exhaustive_s": t_ex, "speedup": t_ex / t_ours}


def naive_loop(teacher, cfg, num: int) -> dict:
    """The original's shape: one prompt per request, exhaustive rouge-score scan of the pool per candidate."""
    from rouge_score import rouge_scorer

    from instructgen.generator.bootstrap import PACKAGED_SEEDS, SelfInstructRecipe, sample_shown
    from instructgen.generator.teachers import Sampling
    from instructgen.filters.rules import BlacklistFilter, FirstCharFilter, LengthFilter, PrefixFilter
    from instructgen.records import Task, read_seed_tasks
    from instructgen.templates import load_template

    seeds = read_seed_tasks(PACKAGED_SEEDS)
    template, recipe = load_template(cfg.template), SelfInstructRecipe()
    rules = [LengthFilter(), BlacklistFilter(), FirstCharFilter(), PrefixFilter()]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool, machine, tokens, i = [s.instruction for s in seeds], [], 0, 0
    t0 = time.perf_counter()
    while len(machine) < num:
        rng = random.Random(f"{cfg.seed}:{i}")
        shown = sample_shown(rng, seeds, machine, 8, 2)
        s = Sampling(cfg.temperature, cfg.top_p, cfg.max_new_tokens, cfg.presence_penalty, tuple(cfg.stop),
                     seed=cfg.seed + i)
        c = teacher.generate([recipe.render(template, shown)], s)[0]
        tokens += c.completion_tokens
        i += 1
        if c.finish_reason == "length":
            continue
        for cand in recipe.parse(template, c.text, len(shown)):
            t = Task(id=f"n{i}", instruction=cand.instruction)
            if not all(f.decide(t) for f in rules):
                continue
            if max(scorer.score(t.instruction, p)["rougeL"].fmeasure for p in pool) > 0.7:
                continue
            pool.append(t.instruction)
            machine.append(t)
            if len(machine) >= num:
                break
    dt = time.perf_counter() - t0
    return {"kept": len(machine), "seconds": dt, "completion_tokens": tokens, "calls": i}


def raw_generate(teacher, prompts: list[str], cfg, batch_size: int) -> dict:
    """Plain batched `model.generate` with transformers' own sampling over the same prompts."""
    import torch
    tok, model = teacher.tokenizer, teacher.model
    t0, n = time.perf_counter(), 0
    torch.manual_seed(cfg.seed)
    for b in range(0, len(prompts), batch_size):
        enc = tok(prompts[b:b + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=cfg.max_new_tokens, do_sample=True,
                                 temperature=cfg.temperature, top_p=cfg.top_p, stop_strings=list(cfg.stop),
                                 tokenizer=tok, pad_token_id=tok.pad_token_id)
        new = out[:, enc["input_ids"].shape[1]:]
        n += int((new != tok.pad_token_id).sum())
    dt = time.perf_counter() - t0
    return {"completion_tokens": n, "seconds": dt, "tokens_per_s": n / dt}


def refill_benchmark(teacher, cfg, n_prompts: int, max_new_tokens: int) -> dict:
    """One call of `n_prompts` Self-Instruct prompts, greedy (so both write the same tokens): our loop (rows leave
    when done, waiting prompts refill them) vs `model.generate` in static batches of the same width."""
    import dataclasses

    from instructgen.generator.bootstrap import PACKAGED_SEEDS, SelfInstructRecipe, sample_shown
    from instructgen.generator.teachers import Sampling
    from instructgen.records import read_seed_tasks
    from instructgen.templates import load_template

    seeds, tmpl = read_seed_tasks(PACKAGED_SEEDS), load_template(cfg.template)
    rng = random.Random(0)
    prompts = [SelfInstructRecipe().render(tmpl, sample_shown(rng, seeds, [], 8, 0)) for _ in range(n_prompts)]
    s = Sampling(0.0, 1.0, max_new_tokens, cfg.presence_penalty, tuple(cfg.stop))
    res = {}
    for name, own in (("static", False), ("refill", True)):
        saved, teacher.own_loop = teacher.own_loop, own
        t0 = time.perf_counter()
        out = teacher.generate(prompts, dataclasses.replace(s))
        res[name] = {"seconds": time.perf_counter() - t0, "tokens": sum(c.completion_tokens for c in out),
                     "texts": [c.text for c in out]}
        teacher.own_loop = saved
    same = res["static"]["texts"] == res["refill"]["texts"]
    return {k: {"seconds": round(v["seconds"], 1), "tokens": v["tokens"]} for k, v in res.items()} | {
        "identical": same, "speedup": res["static"]["seconds"] / res["refill"]["seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--num", type=int, default=30, help="instructions to keep in each generation run")
    ap.add_argument("--batch-size", type=int, default=16, help="prompts per teacher call (config batch_size)")
    ap.add_argument("--rows", type=int, default=0, help="rows the teacher decodes at once (0: --batch-size); "
                    "fewer rows than prompts per call lets finished rows refill from the waiting prompts")
    ap.add_argument("--skip-model", action="store_true", help="only the novelty benchmark")
    ap.add_argument("--skip-novelty", action="store_true")
    ap.add_argument("--skip-raw", action="store_true", help="skip row 2 (raw model.generate over the same prompts)")
    ap.add_argument("--refill", type=int, default=0, metavar="N",
                    help="only row 4: one greedy call of N prompts, our loop vs static model.generate batches")
    ap.add_argument("--refill-max-new-tokens", type=int, default=256)
    args = ap.parse_args()
    rows = []
    if args.refill:
        from instructgen.config import generation_config
        from instructgen.generator.hf_teacher import TransformersTeacher
        width = args.rows or args.batch_size
        r = refill_benchmark(TransformersTeacher("smollm2-135m", batch_size=width),
                             generation_config({"batch_size": width}), args.refill, args.refill_max_new_tokens)
        print(json.dumps(r, indent=1))
        rows.append((f"4. one greedy call, {args.refill} prompts, {width} rows", f"{r['static']['seconds']:.1f} s "
                     f"(static model.generate)", f"{r['refill']['seconds']:.1f} s (identical={r['identical']})",
                     r["speedup"], ""))
        args.skip_model = args.skip_novelty = True

    if not args.skip_model:
        from instructgen.config import generation_config
        from instructgen.generator.bootstrap import generate_instructions
        from instructgen.generator.hf_teacher import TransformersTeacher
        from instructgen.records import read_tasks

        width = args.rows or args.batch_size
        teacher = TransformersTeacher("smollm2-135m", batch_size=width)
        cfg = generation_config({"num": args.num, "batch_size": args.batch_size})
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            s = generate_instructions(cfg, Path(d) / "run", teacher=teacher, quiet=True)
            ours_s = time.perf_counter() - t0
            ours_stats = dict(teacher.stats)
            log = read_tasks(Path(d) / "run" / "log.jsonl")
        naive = naive_loop(teacher, cfg, args.num)
        ours_rate, naive_rate = s["kept"] / ours_s * 60, naive["kept"] / naive["seconds"] * 60
        raw = None
        rows.append(("1. kept instructions / min", f"{naive_rate:.1f} (naive, 1 prompt/call)",
                     f"{ours_rate:.1f} ({args.batch_size} prompts/call, {width} rows)", ours_rate / naive_rate, ">= 4x"))

    if not args.skip_model and not args.skip_raw:  # 2. the same prompts our run sent, through raw model.generate
        from instructgen.generator.bootstrap import SelfInstructRecipe, PACKAGED_SEEDS
        from instructgen.records import read_seed_tasks
        from instructgen.templates import load_template
        seeds = read_seed_tasks(PACKAGED_SEEDS)
        by_id = {t.id: t for t in seeds + [t for t in log if t.kept]}
        seen, prompts = set(), []
        tmpl = load_template(cfg.template)
        for t in log:
            key = (t.meta["batch"], t.provenance["completion_index"])
            if key not in seen:
                seen.add(key)
                prompts.append(SelfInstructRecipe().render(tmpl, [by_id[i] for i in t.provenance["shown"]]))
        raw = raw_generate(teacher, prompts, cfg, width)
        ours_tps = s["completion_tokens"] / ours_s
        rows.append(("2. completion tokens / s", f"{raw['tokens_per_s']:.1f} (raw generate)",
                     f"{ours_tps:.1f} (end to end)", ours_tps / raw["tokens_per_s"], ">= 0.9"))
    if not args.skip_model:
        print(json.dumps({"ours": s, "ours_seconds": ours_s, "naive": naive, "raw": raw,
                          "teacher_stats_ours": ours_stats}, indent=1))

    if not args.skip_novelty:
        nb = novelty_benchmark()
        print(json.dumps(nb, indent=1))
        rows.append((f"3. novelty check, {nb['candidates']} vs {nb['pool']}", f"{nb['exhaustive_s']:.1f} s (exhaustive)",
                     f"{nb['ours_s']:.2f} s (identical={nb['identical']})", nb["speedup"], ">= 50x"))

    from instructgen.progress import table
    print(table([(a, b, c, f"{r:.2f}x", t) for a, b, c, r, t in rows],
                header=["benchmark", "baseline", "instructgen", "ratio", "target"]))


if __name__ == "__main__":
    main()

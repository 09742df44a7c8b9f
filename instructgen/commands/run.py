"""gen run: the whole mission in one resumable command."""

from __future__ import annotations

import argparse

HELP = "seeds -> instructions -> instances -> curate -> train -> evaluate -> report, in one resumable run"
DESCRIPTION = HELP + """

Each stage writes its own subfolder of --out with its own `completed` marker; re-running the same command
skips finished stages and resumes the interrupted one. Defaults are the embedded teacher and student
(SmolLM2-135M-Instruct) on CPU: about 10 minutes on 2 cores for --num 30.
Per-stage options go in --config run.yaml under `instructions:`, `instances:`, `curate:` and `training:`."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run folder (created; resumed when it exists)")
    p.add_argument("--num", type=int, help="instructions to keep (default 30)")
    p.add_argument("--seeds", help="seed file (default: packaged seeds)")
    p.add_argument("--teacher", help="teacher spec (default smollm2-135m)")
    p.add_argument("--student", help="student spec (default smollm2-135m)")
    p.add_argument("--preset", choices=["self-instruct", "alpaca", "magpie", "evol"])
    p.add_argument("--seed", type=int)
    p.add_argument("--no-train", dest="train", action="store_const", const=False,
                   help="stop after curation (no student training)")
    p.add_argument("--benchmark", help="gen eval suite scored before and after training (default ifbench:16; "
                                       "ifbench for all 294 prompts; none to skip); same as training.benchmark")
    p.add_argument("--config", help="run.yaml with shared options and per-stage sections")
    p.add_argument("--overwrite", action="store_true", help="discard existing stage folders with another config")
    p.add_argument("--quiet", action="store_true")


def run(args) -> int:
    from ..pipeline import run_config, run_pipeline
    flags = {k: getattr(args, k) for k in ("num", "seeds", "teacher", "student", "preset", "seed", "train")}
    cfg = run_config(flags, args.config)
    if args.benchmark:
        cfg.training = dict(cfg.training, benchmark=args.benchmark)
    run_pipeline(cfg, args.out, overwrite=args.overwrite, quiet=args.quiet)
    return 0

"""gen run: the whole mission in one resumable command."""

from __future__ import annotations

import argparse

HELP = "seeds -> instructions -> instances -> curate -> train -> evaluate -> report, in one resumable run"
DESCRIPTION = HELP + """

Each stage writes its own subfolder of --out with its own `completed` marker; re-running the same command
skips finished stages and resumes the interrupted one. Defaults are the embedded teacher and student
(SmolLM2-135M-Instruct) on CPU: about 10 minutes on 2 cores for --num 30.
Per-stage options go in --config run.yaml under `instructions:`, `instances:`, `curate:` and `training:`, or in
--set STAGE.KEY=VALUE (train.lora_r=16, instructions.teacher=SPEC, curate.minhash.threshold=0.8,
curate.workers=2); a per-stage value (teacher, seed, ...) wins over the shared one. Precedence: defaults <
run.yaml < flags < --set. The `curate:` section holds `filters:` (a chain replacing the default), the executor
options (executor, workers, ray_address, shard_size) and NAME: {OPTION: VALUE} changes to the chain's entries."""


TWEAKS = {"preset": {"choices": ["self-instruct", "alpaca", "magpie", "evol"]}, "teacher": {"metavar": "SPEC"},
          "student": {"metavar": "SPEC"}, "seeds": {"metavar": "FILE"},
          "train": {"help": "train and evaluate the student; --no-train stops after curation (default: train)"}}
# RunConfig options without a flag, and why
FLAG_EXCLUSIONS = {
    "instructions": "a stage section: run.yaml `instructions:` or --set instructions.KEY=VALUE",
    "instances": "a stage section: run.yaml `instances:` or --set instances.KEY=VALUE",
    "curate": "a stage section: run.yaml `curate:` or --set curate.NAME.OPTION=VALUE / curate.workers=N",
    "training": "a stage section: run.yaml `training:` or --set train.KEY=VALUE",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..cli import add_config_flags, add_set_flag
    from ..pipeline import RunConfig
    p.add_argument("--out", required=True, help="run folder (created; resumed when it exists)")
    p.add_argument("--benchmark", help="gen eval suite scored before and after training (default ifbench:16; "
                                       "ifbench for all 294 prompts; none to skip); same as training.benchmark")
    p.add_argument("--config", help="run.yaml with shared options and per-stage sections")
    add_set_flag(p, "train.lora_r=16, --set curate.minhash.threshold=0.8, --set instructions.temperature=0.9; "
                    "a stage's option is STAGE.KEY (instructions, instances, curate, train)")
    p.add_argument("--overwrite", action="store_true", help="discard existing stage folders with another config")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summaries")
    add_config_flags(p, RunConfig, skip=tuple(FLAG_EXCLUSIONS), tweak=TWEAKS)


def run(args) -> int:
    from ..cli import flag_values
    from ..config import blaming, parse_sets
    from ..pipeline import RunConfig, resolve_stages, run_config, run_pipeline
    sets = parse_sets(args.sets)
    extra = {"training": {"benchmark": args.benchmark}} if args.benchmark else {}
    cfg = run_config(flag_values(args, RunConfig), args.config, sets, extra=extra)
    with blaming(sets):
        resolve_stages(cfg)  # every stage's config checked here, so an error names the --set that caused it
    run_pipeline(cfg, args.out, overwrite=args.overwrite, quiet=args.quiet)
    return 0

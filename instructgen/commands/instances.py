"""gen instances: complete instructions with (input, output) instances (Self-Instruct stages 2-4)."""

from __future__ import annotations

import argparse

HELP = "generate input/output instances for instructions (Self-Instruct: classify, generate, filter)"
DESCRIPTION = HELP + """

INPUT is a completed `gen instructions` folder (its instructions.jsonl), or any records file: our JSONL, a
Self-Instruct seed file, Alpaca JSON, a .txt with one instruction per line. For each kept task without
instances: is it classification (a few-shot Yes/No prompt, greedy, 3 tokens; skipped when the record already
says, or with --assume-classification), then up to --max-instances instances, greedy: label first for
classification tasks, input first otherwise. Dropped instances and tasks are counted by reason. Writes
OUT/tasks.jsonl, OUT/rejected.jsonl and OUT/summary.json; re-running the same command resumes or does nothing."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="INPUT", help="gen instructions folder or records file")
    p.add_argument("--out", help="run folder (default: INPUT/instances when INPUT is a folder; required otherwise)")
    p.add_argument("--teacher", help="transformers:MODEL | vllm:MODEL | openai:URL@MODEL (default smollm2-135m)")
    p.add_argument("--batch-size", type=int, help="tasks per teacher call (default 16)")
    p.add_argument("--assume-classification", choices=["auto", "yes", "no"],
                   help="yes/no: set is_classification on tasks lacking it without asking the teacher (default auto)")
    p.add_argument("--max-instances", type=int, help="instances per task (default 5)")
    p.add_argument("--max-new-tokens", type=int, help="instance-generation token budget (default 300)")
    from .instructions import add_budget_arguments
    add_budget_arguments(p)
    p.add_argument("--config", help="YAML file of InstancesConfig options (flags win)")
    p.add_argument("--overwrite", action="store_true", help="discard an existing run folder with another config")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")


FLAGS = ("teacher", "batch_size", "assume_classification", "max_instances", "max_new_tokens", "price_input_per_m",
         "price_output_per_m", "max_cost", "max_tokens", "rps")


def default_out(input_path: str, out: str | None) -> str:
    from pathlib import Path
    if out:
        return out
    if Path(input_path).is_dir():
        return str(Path(input_path) / "instances")
    raise FileNotFoundError("--out is required when INPUT is a file")


def run(args) -> int:
    import json

    from ..config import to_dict
    from ..generator.instances import generate_instances, instances_config

    cfg = instances_config({k: getattr(args, k) for k in FLAGS}, args.config)
    if args.print_config:
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    generate_instances(cfg, args.input, default_out(args.input, args.out), overwrite=args.overwrite,
                       quiet=args.quiet)
    return 0

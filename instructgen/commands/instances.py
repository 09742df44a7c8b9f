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
OUT/tasks.jsonl, OUT/rejected.jsonl and OUT/summary.json; re-running the same command resumes or does nothing.
Every InstancesConfig option is a flag below and a --set KEY=VALUE; precedence: defaults < --config < flags <
--set."""


TWEAKS = {"assume_classification": {"choices": ["auto", "yes", "no"]}, "teacher": {"metavar": "SPEC"}}
FLAG_EXCLUSIONS: dict[str, str] = {}  # every InstancesConfig option has a flag


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..cli import add_config_flags, add_set_flag
    from ..generator.instances import InstancesConfig
    p.add_argument("input", metavar="INPUT", help="gen instructions folder or records file")
    p.add_argument("--out", help="run folder (default: INPUT/instances when INPUT is a folder; required otherwise)")
    p.add_argument("--config", help="YAML file of InstancesConfig options (flags win)")
    add_set_flag(p, "max_instances=3")
    p.add_argument("--overwrite", action="store_true", help="discard an existing run folder with another config")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    add_config_flags(p, InstancesConfig, skip=tuple(FLAG_EXCLUSIONS), tweak=TWEAKS)


def default_out(input_path: str, out: str | None) -> str:
    from pathlib import Path
    if out:
        return out
    if Path(input_path).is_dir():
        return str(Path(input_path) / "instances")
    raise FileNotFoundError("--out is required when INPUT is a file")


def run(args) -> int:
    import json

    from ..cli import flag_values
    from ..config import parse_sets, resolve, to_dict
    from ..generator.instances import InstancesConfig, generate_instances, validate_instances

    cfg = resolve(InstancesConfig, flag_values(args, InstancesConfig), args.config, parse_sets(args.sets),
                  validate_instances)
    if args.print_config:
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    generate_instances(cfg, args.input, default_out(args.input, args.out), overwrite=args.overwrite,
                       quiet=args.quiet)
    return 0

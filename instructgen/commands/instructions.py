"""gen instructions: bootstrap new instructions from seed tasks."""

from __future__ import annotations

import argparse

HELP = "bootstrap new instructions from seed tasks (Self-Instruct loop, or Alpaca's one pass)"
DESCRIPTION = HELP + """

Presets: self-instruct (Wang et al. 2023), alpaca (Taori et al. 2023), magpie (Xu et al. 2024: no seeds),
evol (Xu et al., ICLR 2024, WizardLM). Defaults reproduce --preset self-instruct exactly (8 in-context instructions, 2 from the generated pool,
temperature 0.7, top_p 0.5, presence penalty 2, 1024 tokens, length-cut completions dropped, 4-150 words,
the 13-word blacklist, ROUGE-L > 0.7 rejected). Every GenerationConfig option is a flag below and a --set
KEY=VALUE; precedence: defaults < preset < --config < flags < --set. The effective values are written to
OUT/config.json (--print-config shows them). Re-running the same command resumes or does nothing when complete.

Before the first call an estimate of tokens (and cost, with --price-*-per-m) is printed; --max-cost and
--max-tokens stop cleanly after the last finished batch, and the same command with a larger budget resumes.
When stderr is not a terminal, a progress line is printed every $INSTRUCTGEN_PROGRESS_SECONDS (default 30)."""


# options of GenerationConfig that keep a fixed set of values or a metavar
TWEAKS = {"preset": {"choices": ["self-instruct", "alpaca", "magpie", "evol"]},
          "drop_truncated": {"choices": ["completion", "last_item"]},
          "teacher": {"metavar": "SPEC"}, "seeds": {"metavar": "FILE"}, "template": {"metavar": "NAME|FILE"}}
FLAG_EXCLUSIONS: dict[str, str] = {}  # every GenerationConfig option has a flag


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..cli import add_config_flags, add_set_flag
    from ..config import PRESETS, GenerationConfig
    p.add_argument("--out", required=True, help="run folder (created; resumed when it exists)")
    p.add_argument("--config", help="YAML file of GenerationConfig options (flags win)")
    add_set_flag(p, "temperature=0.9")
    p.add_argument("--overwrite", action="store_true", help="discard an existing run folder with another config")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    by_preset = tuple(sorted({k for v in PRESETS.values() for k in v}))
    add_config_flags(p, GenerationConfig, skip=tuple(FLAG_EXCLUSIONS), tweak=TWEAKS, preset_fields=by_preset)


def resolve_config(args):
    from ..cli import flag_values
    from ..config import GenerationConfig, generation_config, parse_sets
    return generation_config(flag_values(args, GenerationConfig), args.config, parse_sets(args.sets))


def run(args) -> int:
    import json

    cfg = resolve_config(args)
    if args.print_config:
        from ..config import to_dict
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    from ..generator.bootstrap import generate_instructions
    generate_instructions(cfg, args.out, overwrite=args.overwrite, quiet=args.quiet)
    return 0

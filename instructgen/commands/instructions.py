"""gen instructions: bootstrap new instructions from seed tasks."""

from __future__ import annotations

import argparse

HELP = "bootstrap new instructions from seed tasks (Self-Instruct loop, or Alpaca's one pass)"
DESCRIPTION = HELP + """

Presets: self-instruct (Wang et al. 2023), alpaca (Taori et al. 2023), magpie (Xu et al. 2024: no seeds),
evol (Xu et al., ICLR 2024, WizardLM). Defaults reproduce --preset self-instruct exactly (8 in-context instructions, 2 from the generated pool,
temperature 0.7, top_p 0.5, presence penalty 2, 1024 tokens, length-cut completions dropped, 4-150 words,
the 13-word blacklist, ROUGE-L > 0.7 rejected). Flags and --config override the preset; the effective values
are written to OUT/config.json. Re-running the same command resumes or does nothing when complete.

Before the first call an estimate of tokens (and cost, with --price-*-per-m) is printed; --max-cost and
--max-tokens stop cleanly after the last finished batch, and the same command with a larger budget resumes.
When stderr is not a terminal, a progress line is printed every $INSTRUCTGEN_PROGRESS_SECONDS (default 30)."""


def add_generation_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by `gen instructions` and `gen run` (None = not given, so presets/YAML apply)."""
    p.add_argument("--num", type=int, help="instructions to keep (default 100)")
    p.add_argument("--seeds", help="seed file: Self-Instruct JSONL, our records, or Alpaca JSON (default: packaged)")
    p.add_argument("--teacher", help="transformers:MODEL | vllm:MODEL | openai:URL@MODEL (default smollm2-135m)")
    p.add_argument("--preset", choices=["self-instruct", "alpaca", "magpie", "evol"],
                   help="published recipe (default self-instruct; magpie: no seeds, the chat template's pre-query; "
                        "evol: WizardLM's Evol-Instruct rounds with elimination)")
    p.add_argument("--template", help="prompt template name or .jinja2 file (a *.chat.jinja2 file is a chat prompt)")
    p.add_argument("--batch-size", type=int, help="prompts per teacher call (default 16)")
    p.add_argument("--seed", type=int, help="random seed (default 42)")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--presence-penalty", type=float)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--response-max-new-tokens", type=int, help="magpie/evol: answer token budget (default 1024)")
    p.add_argument("--rounds", type=int, help="evol: rounds of evolution (default 4, WizardLM's M)")
    add_budget_arguments(p)


def add_budget_arguments(p: argparse.ArgumentParser) -> None:
    """Cost and budget flags (`gen instructions`, `gen instances`): not part of a run's identity, so the same
    command with a larger budget resumes a run that stopped on it."""
    p.add_argument("--price-input-per-m", type=float, help="teacher price per million prompt tokens (default 0)")
    p.add_argument("--price-output-per-m", type=float, help="teacher price per million completion tokens (default 0)")
    p.add_argument("--max-cost", type=float, help="stop cleanly once the run has cost this much (at the prices)")
    p.add_argument("--max-tokens", type=int, help="stop cleanly once the run has used this many tokens")
    p.add_argument("--rps", type=float, help="requests per second sent to an HTTP teacher (openai:...)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run folder (created; resumed when it exists)")
    add_generation_arguments(p)
    p.add_argument("--config", help="YAML file of GenerationConfig options (flags win)")
    p.add_argument("--overwrite", action="store_true", help="discard an existing run folder with another config")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")


BUDGET_FLAGS = ("price_input_per_m", "price_output_per_m", "max_cost", "max_tokens", "rps")
GEN_FLAGS = ("num", "seeds", "teacher", "preset", "template", "batch_size", "seed", "temperature", "top_p",
             "presence_penalty", "max_new_tokens", "response_max_new_tokens", "rounds") + BUDGET_FLAGS


def resolve_config(args):
    from ..config import generation_config
    return generation_config({k: getattr(args, k) for k in GEN_FLAGS}, args.config)


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

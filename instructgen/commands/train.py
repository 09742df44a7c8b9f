"""gen train: tune a student on instruction data with QLoRA / LoRA (trl SFTTrainer + peft)."""

from __future__ import annotations

import argparse

HELP = "tune a student on a curated set with QLoRA or LoRA, evaluating it before and after"
DESCRIPTION = HELP + """

DATA is a stage folder (gen curate / gen instances / gen instructions), our records JSONL, Alpaca JSON or
messages JSONL. Each example is rendered with the student's chat template; the loss is on the response only,
which ends with the EOS token. Defaults follow QLoRA (Dettmers et al. 2023): r 64, alpha 16, dropout 0.1,
LoRA on all linear layers, lr 2e-4 constant with 3% warmup, max grad norm 0.3, batch 4 x 4.

--quantization auto is nf4 (4-bit NF4 with double quantization, paged 8-bit AdamW, gradient checkpointing,
bf16 compute) on CUDA and plain fp32 LoRA on CPU. NF4 also runs on CPU (--quantization nf4); it is often
quoted as ~12x slower per step there, but with bitsandbytes 0.50 on an AVX-512 CPU we measured about the
same step time as fp32 LoRA and a third of the weight memory (benchmarks/trainer.py); auto keeps exact
fp32 math on CPU. On CPU, training stops after cpu_max_steps (default 4: ~45 s a step of 16
examples for the embedded student on one core) so a demo finishes in minutes; pass --max-steps N or
--cpu-max-steps 0 for a real run.

OUT gets the adapter (with the tokenizer and chat template), metrics.json (held-out loss and perplexity before
and after), eval.jsonl (answers before and after), train_log.jsonl and checkpoints. Re-running the same command
resumes from the last checkpoint, or does nothing when complete. Every TrainConfig option is a flag below and a
--set KEY=VALUE; the resolved values: --print-config. Precedence: defaults < --config < flags < --set."""


# options of TrainConfig that keep a short form or a fixed set of values
TWEAKS = {"learning_rate": {"aliases": ["--lr"]}, "quantization": {"choices": ["auto", "nf4", "none"]},
          "student": {"metavar": "SPEC"}, "chat_template": {"metavar": "FILE"}}
FLAG_EXCLUSIONS: dict[str, str] = {}  # every TrainConfig option has a flag


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..cli import add_config_flags, add_set_flag
    from ..trainer.config import TrainConfig
    p.add_argument("data", metavar="DATA", help="stage folder or records file (JSONL, Alpaca JSON, messages JSONL)")
    p.add_argument("--out", required=True, help="output folder (created; resumed when it exists)")
    p.add_argument("--config", help="YAML file of TrainConfig options (flags win)")
    add_set_flag(p, "lora_r=16")
    p.add_argument("--merge", action="store_true", help="also write OUT/merged: base + adapter in full precision")
    p.add_argument("--push-to-hub", metavar="REPO", help="upload the adapter with a model card to OWNER/NAME "
                                                         "as one commit (token from HF_TOKEN or `hf auth login`, "
                                                         "checked before training)")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository private")
    p.add_argument("--overwrite", action="store_true", help="discard an existing OUT trained with another config")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--quiet", action="store_true", help="no preflight report, progress bar or summary")
    add_config_flags(p, TrainConfig, skip=tuple(FLAG_EXCLUSIONS), tweak=TWEAKS)


def run(args) -> int:
    import json

    from ..cli import flag_values
    from ..config import parse_sets
    from ..trainer.config import TrainConfig, train_config
    cfg = train_config(flag_values(args, TrainConfig), args.config, parse_sets(args.sets))
    if args.print_config:
        from ..config import to_dict
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    from ..trainer import train
    train(cfg, args.data, args.out, overwrite=args.overwrite, quiet=args.quiet, merge=args.merge,
          push_to_hub=args.push_to_hub, private=args.private)
    return 0

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
resumes from the last checkpoint, or does nothing when complete. All options: --print-config; YAML: --config."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="DATA", help="stage folder or records file (JSONL, Alpaca JSON, messages JSONL)")
    p.add_argument("--out", required=True, help="output folder (created; resumed when it exists)")
    p.add_argument("--student", help="student spec: smollm2-135m (default), a local HF folder, a .gguf file or a "
                                     "hub id in the local cache")
    p.add_argument("--quantization", choices=["auto", "nf4", "none"],
                   help="auto (default): nf4 on CUDA, none (fp32 LoRA) on CPU")
    p.add_argument("--epochs", type=float, help="passes over the data (default 3)")
    p.add_argument("--max-steps", type=int, help="optimizer steps, overriding --epochs (default 0 = use epochs)")
    p.add_argument("--cpu-max-steps", type=int, help="cap on steps when training on CPU (default 4; 0 = none)")
    p.add_argument("--batch-size", type=int, help="examples per device step (default 4)")
    p.add_argument("--grad-accum", type=int, help="device steps per optimizer step (default 4)")
    p.add_argument("--learning-rate", "--lr", dest="learning_rate", type=float, help="peak learning rate (2e-4)")
    p.add_argument("--lora-r", type=int, help="LoRA rank (64)")
    p.add_argument("--lora-alpha", type=int, help="LoRA alpha (16)")
    p.add_argument("--lora-dropout", type=float, help="LoRA dropout (0.1)")
    p.add_argument("--max-seq-length", type=int, help="tokens per example (512)")
    p.add_argument("--heldout-share", type=float, help="share held out for evaluation (0.05)")
    p.add_argument("--eval-generations", type=int, help="held-out answers before/after in eval.jsonl (20)")
    p.add_argument("--benchmark", help="gen eval suite scored before and after training: ifbench:N (default "
                                       "ifbench:16), ifbench (all 294), ifeval:FILE, reference:FILE, or none")
    p.add_argument("--save-steps", type=int, help="checkpoint every N steps (5)")
    p.add_argument("--system", help="system prompt of every example (default: each record's own, if any)")
    p.add_argument("--chat-template", help="Jinja chat template file to use instead of the student's")
    p.add_argument("--seed", type=int, help="random seed (42)")
    p.add_argument("--config", help="YAML file of TrainConfig options (flags win)")
    p.add_argument("--merge", action="store_true", help="also write OUT/merged: base + adapter in full precision")
    p.add_argument("--push-to-hub", metavar="REPO", help="upload the adapter with a model card to OWNER/NAME "
                                                         "as one commit (token from HF_TOKEN or `hf auth login`, "
                                                         "checked before training)")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository private")
    p.add_argument("--overwrite", action="store_true", help="discard an existing OUT trained with another config")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--quiet", action="store_true", help="no preflight report, progress bar or summary")


FLAGS = ("student", "quantization", "epochs", "max_steps", "cpu_max_steps", "batch_size", "grad_accum",
         "learning_rate", "lora_r", "lora_alpha", "lora_dropout", "max_seq_length", "heldout_share",
         "eval_generations", "benchmark", "save_steps", "chat_template", "system", "seed")


def run(args) -> int:
    import json

    from ..trainer.config import train_config
    cfg = train_config({k: getattr(args, k) for k in FLAGS}, args.config)
    if args.print_config:
        from ..config import to_dict
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    from ..trainer import train
    train(cfg, args.data, args.out, overwrite=args.overwrite, quiet=args.quiet, merge=args.merge,
          push_to_hub=args.push_to_hub, private=args.private)
    return 0

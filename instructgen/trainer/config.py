"""`gen train` options: one typed dataclass, every default next to the source it reproduces.

Sources: Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs" (arXiv 2305.14314), section 4
and appendix B.2, and its repository's `qlora.py` / `scripts/finetune_guanaco_7b.sh`; Taori et al. 2023,
Stanford Alpaca `train.py`. Device-dependent choices (`auto`) are resolved by `plan()`, and the resolved
values are written into metrics.json, so a run shows what it actually did on its hardware.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..config import ConfigError, doc, resolve

QUANTIZATIONS = ("auto", "nf4", "none")


@dataclass
class TrainConfig:
    """`gen train`: QLoRA (4-bit NF4 base + LoRA) or plain LoRA on a student, with trl's SFTTrainer."""

    student: str = doc("student model spec: embedded name, local HF folder, .gguf file or cached hub id",
                       default="smollm2-135m")
    quantization: str = doc("nf4 | none | auto: auto is nf4 (QLoRA) on CUDA and plain fp32 LoRA on CPU (exact fp32 "
                            "math, no bitsandbytes CPU kernels; nf4 does run on CPU)", default="auto")
    double_quant: bool = doc("quantize the NF4 quantization constants too (QLoRA section 3)", default=True)
    lora_r: int = doc("LoRA rank (QLoRA appendix B.2: r=64 for every model size)", default=64)
    lora_alpha: int = doc("LoRA alpha (QLoRA appendix B.2: 16 for every model size)", default=16)
    lora_dropout: float = doc("LoRA dropout (QLoRA appendix B.2: 0.1 up to 13B, 0.05 for 33B and 65B)",
                              default=0.1)
    lora_target_modules: str | list[str] = doc("modules given LoRA: all-linear = every linear layer but the LM "
                                               "head (QLoRA section 4: LoRA on all linear layers is needed to "
                                               "match full finetuning), or a list of module names such as "
                                               "[q_proj, v_proj]", default="all-linear")
    learning_rate: float = doc("peak learning rate (QLoRA appendix B.2: 2e-4 for 7B and 13B, 1e-4 above)",
                               default=2e-4)
    lr_scheduler: str = doc("learning-rate schedule; QLoRA's scripts pass `--lr_scheduler_type constant "
                            "--warmup_ratio 0.03`, and HF's plain 'constant' ignores warmup, so the warmup they "
                            "ask for needs constant_with_warmup", default="constant_with_warmup")
    warmup_ratio: float = doc("share of steps warming up linearly (QLoRA scripts: 0.03)", default=0.03)
    max_grad_norm: float = doc("gradient clipping (QLoRA appendix B.2 and qlora.py: 0.3, 'works well for all "
                               "models tested')", default=0.3)
    weight_decay: float = doc("AdamW weight decay (qlora.py: 0.0, LoRA dropout regularizes instead)", default=0.0)
    adam_beta2: float = doc("Adam beta2 (QLoRA appendix B.2: 0.999)", default=0.999)
    batch_size: int = doc("examples per device step (QLoRA guanaco-7b script: 4)", default=4)
    grad_accum: int = doc("device steps per optimizer step (QLoRA guanaco-7b script: 4, so 16 per update)",
                          default=4)
    epochs: float = doc("passes over the training examples (Stanford Alpaca train.py: 3)", default=3.0)
    max_steps: int = doc("stop after this many optimizer steps; 0 = run `epochs`", default=0)
    cpu_max_steps: int = doc("cap on optimizer steps when training on CPU, 0 = no cap: a step of 16 examples of "
                             "~130 tokens takes ~45 s for the embedded 135M student on one free core (measured), "
                             "so 4 steps keep the training stage of `gen run` to ~3-4 minutes", default=4)
    max_seq_length: int = doc("tokens per example, prompt and response; longer ones are cut at the end "
                              "(Stanford Alpaca train.py: model_max_length 512)", default=512)
    max_truncated_share: float = doc("refuse to train when more than this share of the training examples "
                                     "would be truncated", default=0.5)
    gradient_checkpointing: bool | None = doc("recompute activations in the backward pass to save memory; "
                                              "None = on CUDA only (QLoRA: on)", default=None)
    optim: str = doc("optimizer; auto = paged 8-bit AdamW on CUDA (QLoRA section 3, paged optimizers), "
                     "torch AdamW on CPU (the paged ones need CUDA unified memory)", default="auto")
    heldout_share: float = doc("share of examples held out for the before/after evaluation", default=0.05)
    min_heldout: int = doc("at least this many held-out examples (when the data allows one left to train on)",
                           default=4)
    eval_generations: int = doc("held-out instructions answered before and after training, into eval.jsonl",
                                default=20)
    eval_max_new_tokens: int = doc("greedy tokens per held-out answer", default=128)
    eval_batch_size: int = doc("held-out examples per evaluation/generation batch", default=8)
    benchmark: str | None = doc("instruction-following benchmark scored before and after training (a `gen eval` "
                                "suite: ifbench:N, ifbench, ifeval:FILE, reference:FILE); ifbench:16 keeps a CPU "
                                "demo short; none = skip", default="ifbench:16")
    benchmark_max_new_tokens: int = doc("greedy tokens per benchmark answer", default=256)
    save_steps: int = doc("checkpoint every N optimizer steps; a re-run resumes from the last one", default=5)
    save_total_limit: int = doc("checkpoints kept (older ones deleted)", default=2)
    logging_steps: int = doc("log loss, learning rate and tokens/s into train_log.jsonl every N steps",
                             default=1)
    user_template: str = doc("template rendering an instruction and input into the user turn", default="user_turn")
    system: str | None = doc("system prompt of every example; None = each record's own (if any)", default=None)
    chat_template: str | None = doc("a Jinja chat template file used instead of the student's own; None = the "
                                    "student's, or a plain '### Instruction / ### Response' one (saved with "
                                    "the adapter) when it has none", default=None)
    seed: int = doc("seed for the held-out split, LoRA init and data order", default=42)


def train_config(flags: dict[str, Any], config_file: str | None = None,
                 sets: list[tuple[str, Any]] = ()) -> TrainConfig:
    """Resolve a TrainConfig: defaults < YAML (--config) < flags < --set, then validate."""
    return resolve(TrainConfig, flags, config_file, list(sets), validate, floats=yaml_floats)


def yaml_floats(values: dict[str, Any]) -> dict[str, Any]:
    """YAML 1.1 reads `2e-4` (no dot) as a string; accept it for float options."""
    kinds = {f.name: f.default for f in fields(TrainConfig)}
    out = dict(values)
    for k, v in values.items():
        if isinstance(kinds.get(k.replace("-", "_")), float) and isinstance(v, str):
            try:
                out[k] = float(v)
            except ValueError:
                pass  # build() names the option and the bad value
    return out


def validate(c: TrainConfig) -> None:
    """Check every option before any model is loaded; the message names the option."""
    checks = [
        (c.quantization in QUANTIZATIONS, f"quantization '{c.quantization}': choose one of {', '.join(QUANTIZATIONS)}"),
        (c.lora_r >= 1, "lora_r must be at least 1"),
        (c.lora_alpha > 0, "lora_alpha must be positive"),
        (0 <= c.lora_dropout < 1, "lora_dropout must be in [0, 1)"),
        (c.learning_rate > 0, "learning_rate must be positive"),
        (0 <= c.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
        (c.max_grad_norm > 0, "max_grad_norm must be positive"),
        (c.batch_size >= 1, "batch_size must be at least 1"),
        (c.grad_accum >= 1, "grad_accum must be at least 1"),
        (c.epochs > 0, "epochs must be positive"),
        (c.max_steps >= 0, "max_steps must be >= 0 (0 = run `epochs`)"),
        (c.cpu_max_steps >= 0, "cpu_max_steps must be >= 0 (0 = no cap)"),
        (c.max_seq_length >= 8, "max_seq_length must be at least 8"),
        (0 < c.max_truncated_share <= 1, "max_truncated_share must be in (0, 1]"),
        (0 < c.heldout_share < 1, "heldout_share must be in (0, 1)"),
        (c.min_heldout >= 1, "min_heldout must be at least 1"),
        (c.eval_generations >= 0, "eval_generations must be >= 0"),
        (c.eval_max_new_tokens >= 1, "eval_max_new_tokens must be at least 1"),
        (c.eval_batch_size >= 1, "eval_batch_size must be at least 1"),
        (c.benchmark_max_new_tokens >= 1, "benchmark_max_new_tokens must be at least 1"),
        (c.save_steps >= 1, "save_steps must be at least 1"),
        (c.save_total_limit >= 1, "save_total_limit must be at least 1"),
        (c.logging_steps >= 1, "logging_steps must be at least 1"),
        (c.optim == "auto" or bool(c.optim), "optim must be 'auto' or a transformers optimizer name"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    if c.benchmark and c.benchmark.lower() != "none":
        from ..eval.suites import load_suite
        if load_suite(c.benchmark).kind == "judge":  # a bad suite or a missing file fails here, before any model
            raise ConfigError("benchmark: a judge suite needs a judge and a second model; run it with gen eval")


@dataclass
class Plan:
    """What `auto` resolved to on this machine."""

    device: str  # cuda | cpu
    quantization: str  # nf4 | none
    compute_dtype: str  # bfloat16 | float32
    optim: str
    gradient_checkpointing: bool
    max_steps: int  # -1 = run `epochs`


def plan(c: TrainConfig, cuda: bool | None = None) -> Plan:
    """Resolve the device-dependent choices: QLoRA on CUDA, plain fp32 LoRA on CPU unless told otherwise."""
    bf16 = True
    if cuda is None:
        import torch
        cuda = torch.cuda.is_available()
        bf16 = cuda and torch.cuda.is_bf16_supported()
    quant = c.quantization if c.quantization != "auto" else ("nf4" if cuda else "none")
    steps = c.max_steps or -1
    if not cuda and c.cpu_max_steps:
        steps = min(steps, c.cpu_max_steps) if steps > 0 else c.cpu_max_steps
    return Plan(device="cuda" if cuda else "cpu", quantization=quant,
                # QLoRA: bf16 compute (fp16 on GPUs without bf16); fp32 on CPU, the exact reference
                compute_dtype=("bfloat16" if bf16 else "float16") if cuda else "float32",
                optim=c.optim if c.optim != "auto" else ("paged_adamw_8bit" if cuda else "adamw_torch"),
                gradient_checkpointing=c.gradient_checkpointing if c.gradient_checkpointing is not None else cuda,
                max_steps=steps)

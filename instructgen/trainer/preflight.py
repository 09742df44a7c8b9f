"""The preflight report printed before the first training step, and the checks that stop a run that would
waste its time: no token to train on, or most examples truncated."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ConfigError
from ..progress import table
from .data import Encoded


class PreflightError(ConfigError):
    """Training would be pointless or mostly cut; raised before the model is loaded."""


def percentile(values: list[int], q: float) -> int:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, -(-len(s) * q // 100) - 1))
    return s[int(k)]


def check(train: Encoded, heldout: Encoded, max_length: int, max_truncated_share: float) -> None:
    """Stop before loading the model when no token would be trained or most examples would be truncated."""
    n = len(train.lengths)
    if not train.rows:
        raise PreflightError(f"no token would be trained: all {n} training examples have an empty response after "
                             f"truncation to max_seq_length={max_length} (their prompts fill it); raise "
                             f"max_seq_length")
    if train.truncated / n > max_truncated_share:
        raise PreflightError(f"{train.truncated} of {n} training examples ({train.truncated / n:.0%}) are longer "
                             f"than max_seq_length={max_length} tokens (p50 {percentile(train.lengths, 50)}, "
                             f"max {max(train.lengths)}); raise max_seq_length or max_truncated_share "
                             f"({max_truncated_share:g})")
    if not heldout.rows:
        raise PreflightError(f"none of the {len(heldout.lengths)} held-out examples keeps a response token within "
                             f"max_seq_length={max_length}; raise max_seq_length")


@dataclass
class MemoryEstimate:
    weights: int
    adapter_and_optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.adapter_and_optimizer + self.activations


def estimate_memory(model, trainable: int, optim: str, batch_size: int, seq_len: int, checkpointing: bool,
                    act_bytes: int) -> MemoryEstimate:
    """A rough peak-memory estimate for one training step.

    weights: the loaded model's real footprint (NF4 blocks included); adapter: the LoRA weights in fp32 plus
    gradients plus AdamW's two moments (one byte each for the 8-bit optimizers); activations: Korthikanti et al.
    2022 ("Reducing Activation Recomputation in Large Transformer Models", eq. 1), s*b*h*(34 + 5*a*s/h) bytes
    per layer at 2 bytes a value, or each layer's input (2*s*b*h) plus one layer recomputed when checkpointing,
    plus the fp32 logits and their gradient."""
    c = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    h, layers, heads, vocab = c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.vocab_size
    tokens = batch_size * seq_len
    full_layer = tokens * h * 34 + 5 * heads * seq_len * tokens
    acts = (tokens * h * 2 * layers + full_layer) if checkpointing else full_layer * layers
    activations = acts * act_bytes // 2 + 2 * tokens * vocab * 4
    state = 2 if "8bit" in optim else 8
    return MemoryEstimate(weights=int(model.get_memory_footprint()),
                          adapter_and_optimizer=trainable * (4 + 4 + state), activations=int(activations))


def report(train: Encoded, heldout: Encoded, trainable: int, total_params: int, mem: MemoryEstimate,
           plan, steps: int, batch_size: int, grad_accum: int) -> str:
    """The preflight table: what will be trained, on what, at roughly what memory."""
    n = len(train.lengths)
    rows = [
        ("student", f"{plan.quantization} base, {plan.compute_dtype} compute, on {plan.device}"),
        ("trainable parameters", f"{trainable:,} of {total_params:,} ({100 * trainable / max(1, total_params):.2f}%)"),
        ("examples", f"{n:,} train ({len(train.rows):,} with a response to learn), {len(heldout.lengths):,} held out"),
        ("tokens per example", f"p50 {percentile(train.lengths, 50)}, p90 {percentile(train.lengths, 90)}, "
                               f"p99 {percentile(train.lengths, 99)}, max {max(train.lengths)}"),
        ("tokens trained", f"{train.trained_tokens:,} of {train.total_tokens:,} "
                           f"({100 * train.trained_tokens / max(1, train.total_tokens):.1f}%, the responses)"),
        ("examples truncated", f"{train.truncated:,} ({100 * train.truncated / n:.1f}%); "
                               f"{train.no_target:,} dropped with no response left"),
        ("optimizer steps", f"{steps:,} of {batch_size} x {grad_accum} examples"),
        ("estimated peak memory", f"{_size(mem.total)} (weights {_size(mem.weights)}, adapter + optimizer "
                                  f"{_size(mem.adapter_and_optimizer)}, activations {_size(mem.activations)})"),
    ]
    return "preflight\n" + table(rows)


def _size(n: int) -> str:
    return f"{n / 1024 ** 3:.2f} GiB" if n >= 1024 ** 3 else f"{n / 1024 ** 2:.1f} MiB"

"""Before/after evaluation on the held-out examples: loss and perplexity, and greedy answers side by side.

"Before" is the student as training starts from it: the base model with the adapter switched off (for nf4,
the 4-bit base). It is computed once and kept in the run folder (`eval_before.json`), so a resumed run does not
redo it and always compares against the same numbers.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Sequence

from ..rundir import write_json
from .data import render_prompt


def heldout_loss(trainer, dataset, adapter: bool = True) -> dict:
    """Mean per-token loss on the held-out responses (trl's evaluation: the per-batch token means, averaged)
    and its perplexity; `adapter=False` measures the base model."""
    ctx = contextlib.nullcontext() if adapter else trainer.model.disable_adapter()
    with ctx:
        loss = float(trainer.evaluate(eval_dataset=dataset)["eval_loss"])
    return {"loss": round(loss, 6), "perplexity": round(math.exp(min(loss, 50.0)), 4)}


def generate(model, tokenizer, conversations: Sequence[list[dict]], max_new_tokens: int, batch_size: int,
             adapter: bool = True) -> list[str]:
    """Greedy answers to the user turns of `conversations` (left-padded batches, stop at EOS)."""
    import torch

    prompts = [render_prompt(tokenizer, m) for m in conversations]
    ctx = contextlib.nullcontext() if adapter else model.disable_adapter()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    was_training = model.training
    model.eval()
    device = next(p for p in model.parameters()).device
    out: list[str] = []
    try:
        with ctx, torch.inference_mode():
            for i in range(0, len(prompts), batch_size):
                enc = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True,
                                add_special_tokens=False).to(device)
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
                out += tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return [o.strip() for o in out]


def evaluate(trainer, tokenizer, dataset, examples: Sequence[dict], max_new_tokens: int, batch_size: int,
             adapter: bool) -> dict:
    """{"loss", "perplexity", "answers": [...]} for the held-out set, with or without the adapter."""
    metrics = heldout_loss(trainer, dataset, adapter=adapter)
    metrics["answers"] = generate(trainer.model, tokenizer, [e["messages"] for e in examples], max_new_tokens,
                                  batch_size, adapter=adapter) if examples else []
    return metrics


def cached_before(path: Path, compute) -> dict:
    """The "before" evaluation, computed once per run folder."""
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    before = compute()
    write_json(path, before)
    return before


def eval_rows(examples: Sequence[dict], before: Sequence[str], after: Sequence[str]) -> list[dict]:
    """eval.jsonl rows: one held-out instruction with its reference and both answers."""
    return [{"id": e["id"], "instruction": e["instruction"], "input": e["input"], "reference": e["output"],
             "before": b, "after": a} for e, b, a in zip(examples, before, after)]

"""Instruction-Following Difficulty (IFD): how much the instruction helps a language model predict the answer.

IFD = PPL(output | prompt) / PPL(output), where the prompt is the instruction and input in Cherry LLM's Alpaca
form (`ifd_prompt`) and both perplexities are over the very same output tokens (Li et al. 2024, "From Quantity
to Quality: Boosting LLM Performance with Self-Guided Data Selection for Instruction Tuning", NAACL; the
"Cherry LLM" code). An IFD near or above 1 means the instruction does not make the answer any easier to predict:
the answer does not depend on the instruction (Cherry drops IFD >= 1). Among the rest a higher IFD is a harder,
more informative example; Cherry keeps the top 5-10%. Superfiltering (Li et al. 2024, "Superfiltering:
Weak-to-Strong Data Filtering for Fast Instruction-Tuning", ACL) shows that a small proxy LM (GPT-2, 124M) ranks
records by IFD consistently with a 7B one, which is why the default scorer is the embedded SmolLM2-135M.

Faithful to the papers, with two deliberate choices:
- The unconditioned text is the output after one start token (the tokenizer's BOS, else its EOS, GPT-2's
  document separator), so its first token is scored too and both perplexities cover the same tokens (the
  reference scripts score the output alone from its second token, or after "### Response:").
- Counts come from the data: a share is of the records given (Superfiltering's `select_data.py` hard-codes
  Alpaca's 52,002).

Speed (what `benchmarks/quality.py` measures): both texts of every record are scored in one pool of sequences,
sorted by length so a batch pads little; the loss is per row over its own scored tokens (pads and prompt tokens
masked), and the vocabulary projection runs only at the scored positions (a batch of full logits is B x L x
49k floats: most of the memory). Scores are cached per record by text hash (the filter base's cache), so a
crash or a new threshold or budget recomputes nothing already scored.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..records import Task, text_hash
from .base import Decision, RecordFilter, SelectParams, doc

# Cherry LLM's Alpaca prompts (cherry_seletion/data_analysis.py, PROMPT_DICT), pinned: a change is a visible diff
PROMPT_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further context. "
                "Write a response that appropriately completes the request.\n\n"
                "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:")
PROMPT_NO_INPUT = ("Below is an instruction that describes a task. "
                   "Write a response that appropriately completes the request.\n\n"
                   "### Instruction:\n{instruction}\n\n### Response:")


def ifd_prompt(instruction: str, input: str = "") -> str:
    """The conditioning text of one (instruction, input): Cherry LLM's Alpaca prompt, with or without input."""
    if input:
        return PROMPT_INPUT.format_map({"instruction": instruction, "input": input})
    return PROMPT_NO_INPUT.format_map({"instruction": instruction})


def ifd_of(nll_cond: float, nll_alone: float) -> float:
    """IFD from the two mean token losses: exp(cond) / exp(alone) = exp(cond - alone)."""
    return math.exp(nll_cond - nll_alone)


def batches(lengths: Sequence[int], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Row indices, longest first, cut into batches of at most `batch_size` rows and `max_tokens` padded tokens
    (a batch of long rows is smaller: memory stays flat whatever the lengths)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out: list[list[int]] = []
    for i in order:
        if out and len(out[-1]) < batch_size and (len(out[-1]) + 1) * lengths[out[-1][0]] <= max_tokens:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def token_nll(model, rows: Sequence[tuple[list[int], int]], batch_size: int = 16, pad_id: int = 0,
              device: str = "cpu", max_tokens: int = 4096) -> np.ndarray:
    """(sum of token NLL, tokens scored) per row, for rows (token ids, n_context): tokens ids[n_context:] are
    scored, each predicted from all tokens before it. Rows are batched longest first and right-padded; each
    row's loss counts only its own scored tokens, so a row's result does not depend on its batch."""
    import torch
    out = np.zeros((len(rows), 2), dtype=np.float64)
    body, head = _split(model)
    with torch.inference_mode():
        for idx in batches([len(r[0]) for r in rows], max(1, batch_size), max_tokens):
            width = len(rows[idx[0]][0])
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            att = torch.zeros((len(idx), width), dtype=torch.long)
            scored = torch.zeros((len(idx), width), dtype=torch.bool)  # positions whose NEXT token is scored
            for b, i in enumerate(idx):
                toks, ctx = rows[i]
                ids[b, :len(toks)] = torch.tensor(toks, dtype=torch.long)
                att[b, :len(toks)] = 1
                scored[b, max(ctx, 1) - 1:len(toks) - 1] = True
            ids, att, scored = ids.to(device), att.to(device), scored.to(device)
            if head is not None:  # project only the scored positions onto the vocabulary
                hidden = body(input_ids=ids, attention_mask=att).last_hidden_state
                logits = head(hidden[scored]).float()
            else:
                logits = model(input_ids=ids, attention_mask=att).logits[scored].float()
            targets = ids[:, 1:][scored[:, :-1]]
            nll = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
            which = torch.nonzero(scored, as_tuple=True)[0]  # the batch row of each scored position
            sums = torch.zeros(len(idx), dtype=torch.float64, device=nll.device).index_add_(0, which, nll.double())
            counts = scored.sum(dim=1)
            for b, i in enumerate(idx):
                out[i] = (float(sums[b]), int(counts[b]))
    return out


def _split(model):
    """(decoder body, vocabulary head) of a causal LM, or (None, None) when its logits are more than
    head(body(x)) (a logit scale or soft-cap), where the full forward is used."""
    cfg = model.config
    if getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None):
        return None, None
    body, head = getattr(model, "base_model", None), model.get_output_embeddings()
    if body is None or body is model or head is None:
        return None, None
    return body, head


DTYPES = ("auto", "float32", "bfloat16")


def resolve_dtype(dtype: str, device: str) -> str:
    """"auto": bfloat16 on CUDA and on CPUs with AMX bf16 tiles (where it is ~2x float32, measured in
    benchmarks/quality.py), float32 elsewhere."""
    if dtype != "auto":
        return dtype
    if device != "cpu":
        return "bfloat16"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return "bfloat16" if " amx_bf16" in f.read(200_000) else "float32"
    except OSError:
        return "float32"


class IFDScorer:
    """Mean token losses of outputs with and without their prompt, from a causal LM (loaded on first use)."""

    def __init__(self, model: str = "smollm2-135m", max_length: int = 512, batch_size: int = 16,
                 device: str = "cpu", dtype: str = "auto", max_tokens: int = 4096):
        if max_length < 8 or batch_size < 1:
            raise ValueError("max_length must be >= 8 and batch_size >= 1")
        if dtype not in DTYPES:
            raise ValueError(f"dtype: one of {', '.join(DTYPES)}, got {dtype!r}")
        self.spec, self.max_length, self.batch_size, self.device = model, max_length, batch_size, device
        self.max_tokens = max(max_tokens, max_length)
        self.dtype = resolve_dtype(dtype, device)
        self.model = self.tokenizer = None
        self.details: dict = {}

    def load(self):
        """The scorer LM and its tokenizer, loaded once."""
        if self.model is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from ..models import resolve
            t0 = time.perf_counter()
            path, gguf = resolve(self.spec)
            self.tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=gguf)
            self.model = AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf, dtype=getattr(torch, self.dtype))
            self.model.to(self.device)
            self.model.eval()
            self.details["model_load_seconds"] = round(time.perf_counter() - t0, 3)
        return self.model, self.tokenizer

    def encode(self, prompt: str, output: str) -> tuple[tuple[list[int], int], tuple[list[int], int]]:
        """The two scored rows of one record: (prompt + output, len(prompt)) and (start + output, 1), over the
        same output tokens, cut to `max_length` (the prompt keeps its last tokens, at most half, when both do
        not fit)."""
        tok = self.tokenizer
        p = tok(prompt, add_special_tokens=True)["input_ids"]
        o = tok(output, add_special_tokens=False)["input_ids"]
        if len(p) + len(o) > self.max_length:
            keep_p = min(len(p), max(self.max_length // 2, self.max_length - len(o)))
            p = p[len(p) - keep_p:]
            o = o[:self.max_length - keep_p]
        start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        return (p + o, len(p)), ([start] + o, 1)

    def losses(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """(n, 3) float64 for (prompt, output) pairs: the output's mean token NLL with its prompt, without it,
        and the output tokens scored. NaN where the output is empty (nothing to score)."""
        out = np.full((len(pairs), 3), np.nan)
        todo = [i for i, (_, o) in enumerate(pairs) if o]
        if not todo:
            return out
        model, tok = self.load()
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        t0 = time.perf_counter()
        rows = [r for i in todo for r in self.encode(*pairs[i])]
        nll = token_nll(model, rows, self.batch_size, pad, self.device, self.max_tokens)
        out[todo] = np.stack([nll[0::2, 0] / nll[0::2, 1], nll[1::2, 0] / nll[1::2, 1], nll[0::2, 1]], axis=1)
        self.details["score_seconds"] = round(self.details.get("score_seconds", 0.0) + time.perf_counter() - t0, 3)
        return out


def task_pairs(task: Task) -> list[tuple[str, str]]:
    """(prompt, output) of each instance of a task (one per instance; none without instances)."""
    return [(ifd_prompt(task.instruction, i.input), i.output) for i in task.instances]


def record_scores(losses: np.ndarray) -> dict | None:
    """The scores of one record from its instances' losses: IFD and both perplexities, each the mean over the
    instances with an output (None when none has one)."""
    ok = losses[~np.isnan(losses[:, 0])]
    if not len(ok):
        return None
    return {"ifd": float(np.mean(np.exp(ok[:, 0] - ok[:, 1]))), "ppl_cond": float(np.mean(np.exp(ok[:, 0]))),
            "ppl_alone": float(np.mean(np.exp(ok[:, 1])))}


@dataclass
class IFDParams(SelectParams):
    threshold: float = doc("drop a record whose IFD is at least this (Cherry LLM: 1.0, the answer does not depend "
                           "on the instruction); keep_top then keeps the highest IFDs among the rest (Cherry: "
                           "the top 5-10%)", default=1.0)
    model: str = doc("scorer LM: an embedded name (smollm2-135m), a local HF folder, a .gguf file or a hub id in "
                     "the local HF cache (Superfiltering: a small proxy ranks like a 7B one)", default="smollm2-135m")
    max_length: int = doc("tokens of prompt + output scored (Cherry LLM's default); when both do not fit the "
                          "prompt keeps at most half", default=512)
    forward_batch: int = doc("sequences per forward pass, longest first (each record is two sequences)",
                             default=16)
    forward_tokens: int = doc("padded tokens per forward pass at most: long sequences go in smaller batches, "
                              "so memory stays flat", default=4096)
    device: str = doc("torch device", default="cpu")
    dtype: str = doc("auto | float32 | bfloat16; auto = bfloat16 on CUDA and on CPUs with AMX (about twice "
                     "float32 there), else float32", default="auto")


class IFDFilter(RecordFilter):
    """Instruction-Following Difficulty (Cherry LLM, Li et al. 2024; Superfiltering, Li et al. 2024): drops a
    record whose IFD = PPL(output | instruction + input) / PPL(output) is at least `threshold` (the instruction
    does not help predict the answer) and, with keep_top, keeps the highest IFDs. Stores `ifd`, `ppl_cond` and
    `ppl_alone` (means over a record's instances) on every record it scores; a record with no output is dropped
    as `ifd:no_output`. Scores are cached per record by text hash."""

    name = "ifd"
    Params = IFDParams
    score_key = "ifd"
    higher_is_better = True  # Cherry LLM keeps the highest IFDs below 1
    fields = ("output",)  # what it needs besides the instruction (its prompt): curate refuses records without
    per_field = False
    cache_kind = "ifd"
    score_names = ("ifd", "ppl_cond", "ppl_alone")
    batch_size = 256  # records per score_batch call: length sorting pads little within this many

    def setup(self) -> None:
        if not self.p.threshold > 0:
            raise ValueError(f"threshold: an IFD bound > 0 (Cherry LLM: 1.0), got {self.p.threshold}")
        self.scorer = IFDScorer(self.p.model, self.p.max_length, self.p.forward_batch, self.p.device, self.p.dtype,
                                self.p.forward_tokens)

    def prepare(self, ctx: dict) -> None:
        from ..models import ModelSpecError, resolve
        try:
            resolve(self.p.model)  # a missing model fails here, before any record (an embedded GGUF converts once)
        except ModelSpecError as e:
            raise ModelSpecError(f"model: {e}") from None
        super().prepare(ctx)

    def cache_identity(self) -> dict:
        return {"model": self.p.model, "max_length": self.p.max_length, "dtype": self.scorer.dtype,
                "prompt": text_hash(PROMPT_INPUT, PROMPT_NO_INPUT), "unconditioned": "start token + output"}

    def cache_text(self, task: Task) -> str:
        return json.dumps(task_pairs(task), ensure_ascii=False)

    def score_batch(self, tasks: list[Task]) -> list[Decision]:
        spans, pairs = [], []
        for t in tasks:
            tp = task_pairs(t)
            spans.append((len(pairs), len(pairs) + len(tp)))
            pairs += tp
        losses = self.scorer.losses(pairs)
        self.details.update(self.scorer.details)
        for t, (a, b) in zip(tasks, spans):
            s = record_scores(losses[a:b]) if b > a else None
            if s:
                t.scores.update(s)
        return [self.decide_scores(t) for t in tasks]

    def decide_scores(self, task: Task) -> Decision:
        v = task.scores.get("ifd")
        if v is None or v != v:
            return "ifd:no_output"
        return f"ifd>={self.p.threshold:.2f}" if v >= self.p.threshold else None

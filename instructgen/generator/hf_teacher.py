"""The default teacher: a transformers causal LM on CPU or CUDA, decoded by our own loop over its KV cache.

Why our own loop and not `model.generate` (measured, benchmarks/generation.py and benchmarks/instances.py):
- static batching lasts as long as the longest row; here a finished row leaves the batch at once and, when the
  caller handed more prompts than `batch_size`, a waiting prompt takes its place (refill);
- prompts that share a long head (the few-shot block of `gen instances`) are grouped; the head is computed once
  per group and its KV cache is copied into each row, so only the distinct tails are prefilled.
Rows of different lengths share one cache: each row's real tokens are marked in a 2-D attention mask, positions
are passed explicitly, and columns no live row uses are dropped. Models whose cache is not plain per-layer KV
(sliding windows, state-space layers, encoder-decoders) use `model.generate` in sorted static batches instead.
This module is longer than a stage because the decode loop and its fallback are one unit.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

from transformers.cache_utils import Cache, DynamicLayer

from .teachers import Completion, Prompt, Sampling, cut_at_stop

MIN_SHARED_PREFIX = 32  # tokens; a shorter common head costs more to copy than to recompute


class TransformersTeacher:
    """Batched generation with a transformers causal LM.

    Sampling follows the OpenAI-style semantics the published recipes used: presence penalty first (subtracted
    once from every token already generated), then temperature, then top-p (the rule of transformers'
    `TopPLogitsWarper`).
    With `Sampling.seed`, prompt i of a call draws from its own generator seeded `seed + i`, so a completion
    does not depend on which other prompts share its batch. `top_logprobs` are the model's own distribution
    (log-softmax of the raw logits, before penalty and temperature), as vLLM and OpenAI report them.
    """

    def __init__(self, model: str = "smollm2-135m", batch_size: int = 16, device: str | None = None,
                 dtype: str | None = None, rows: int = 0):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..models import resolve

        path, gguf = resolve(model)
        self.name = f"transformers:{model}"
        # rows decoded together (`rows`, else the stage's batch_size); with fewer rows than a call's prompts the
        # waiting prompts refill finished rows (1.9x static batching on one 32-prompt call, benchmarks/generation.py)
        self.batch_size = rows or batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if self.device == "cuda" else torch.float32)
        self.tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=gguf)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf, dtype=torch_dtype).to(self.device)
        self.model.eval()
        self.own_loop = _plain_kv_cache(self.model)
        self.supports = frozenset({"raw", "chat", "logprobs", "stream"} if self.own_loop else {"raw", "chat"})
        self.eos = set(_as_list(self.model.generation_config.eos_token_id) + _as_list(self.tokenizer.eos_token_id))
        self.stats = {"prompt_tokens": 0, "completion_tokens": 0, "seconds": 0.0, "prefix_tokens_shared": 0}
        self._token_text: dict[int, str] = {}

    def render(self, prompt: Prompt) -> str:
        """A chat prompt goes through the model's chat template; a string is used as is."""
        if isinstance(prompt, str):
            return prompt
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in prompt) + "\n\n"

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling,
                 on_tokens: Callable[[int], None] | None = None) -> list[Completion]:
        """Complete every prompt, in order; `on_tokens(n)` is called after each decoding step with the number
        of tokens it produced."""
        if self.model is None:
            raise RuntimeError(f"teacher {self.name} is closed")
        texts = [self.render(p) for p in prompts]
        if self.own_loop:
            return _Decoder(self, sampling, on_tokens).run([self.encode(t) for t in texts])
        t0 = time.perf_counter()
        out = self._static(texts, sampling, on_tokens)
        self.stats["prompt_tokens"] += sum(c.prompt_tokens for c in out)
        self.stats["completion_tokens"] += sum(c.completion_tokens for c in out)
        self.stats["seconds"] += time.perf_counter() - t0
        return out

    def stream(self, sampling: Sampling, on_tokens: Callable[[int], None] | None = None) -> "_Decoder":
        """A decoder the caller feeds while it runs (supports "stream"): `add(token_ids, seed)` queues prompts
        and returns their rows, `step()` decodes one token on every live row, `completion(row)` once a row's
        `finish` is set, `cancel()` stops the rest. Prompts are encoded with `encode(render(prompt))`."""
        if self.model is None:
            raise RuntimeError(f"teacher {self.name} is closed")
        if not self.own_loop:
            raise RuntimeError(f"teacher {self.name} cannot stream (its cache is not plain per-layer KV)")
        return _Decoder(self, sampling, on_tokens)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def close(self) -> None:
        """Drop the model (and CUDA memory it held); idempotent."""
        if self.model is None:
            return
        self.model = None
        import gc
        gc.collect()
        try:
            import torch
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # never fail on the way out
            pass

    def token_text(self, tok: int) -> str:
        s = self._token_text.get(tok)
        if s is None:
            s = self._token_text[tok] = self.tokenizer.decode([tok])
        return s

    def _static(self, texts: list[str], s: Sampling, on_tokens) -> list[Completion]:
        """Fallback for caches we cannot edit: `model.generate`, batches of similar length, caller's order."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[Completion | None] = [None] * len(texts)
        for b in range(0, len(order), self.batch_size):
            idx = order[b:b + self.batch_size]
            for i, c in zip(idx, self._generate_batch([texts[i] for i in idx], s, b)):
                out[i] = c
            if on_tokens is not None:
                on_tokens(sum(out[i].completion_tokens for i in idx))
        return out  # type: ignore[return-value]

    def _generate_batch(self, texts: list[str], s: Sampling, offset: int) -> list[Completion]:
        import torch
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        prompt_len = enc["input_ids"].shape[1]
        processors = LogitsProcessorList()
        if s.presence_penalty:
            processors.append(PresencePenalty(s.presence_penalty, prompt_len))
        kw = dict(do_sample=False)
        if s.temperature > 0:
            processors.append(TemperatureLogitsWarper(s.temperature))
            if s.top_p < 1.0:
                processors.append(TopPLogitsWarper(s.top_p))
            kw = dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0)
            if s.seed is not None:
                torch.manual_seed(s.seed + offset)
        if s.stop:
            kw.update(stop_strings=list(s.stop), tokenizer=self.tokenizer)
        with torch.inference_mode():
            gen = self.model.generate(**enc, max_new_tokens=s.max_new_tokens, logits_processor=processors,
                                      pad_token_id=self.tokenizer.pad_token_id, **kw)
        out = []
        for row, n_prompt in zip(gen[:, prompt_len:].tolist(), enc["attention_mask"].sum(dim=1).tolist()):
            n = next((j + 1 for j, tok in enumerate(row) if tok in self.eos), None)
            toks = row[: (n - 1) if n else len(row)]
            while toks and toks[-1] == self.tokenizer.pad_token_id:  # finished early on a stop string
                toks.pop()
            text, hit_stop = cut_at_stop(self.tokenizer.decode(toks, skip_special_tokens=True), s.stop)
            count = n or len(toks)
            finish = "stop" if (n or hit_stop or count < s.max_new_tokens) else "length"
            out.append(Completion(text=text, finish_reason=finish, prompt_tokens=int(n_prompt),
                                  completion_tokens=int(count)))
        return out


@dataclass
class _Row:
    index: int  # position in the caller's list
    prompt: list[int]
    generator: object = None  # torch.Generator when the call is seeded
    out: list[int] = field(default_factory=list)
    logprobs: list[dict[str, float]] | None = None
    finish: str | None = None
    started: bool = False  # prefilled (a row cancelled while waiting used no prompt tokens)


class _Decoder:
    """Rows enter (prefill, sharing their group's head), decode a token per step, and leave as soon as they
    finish; waiting prompts refill freed rows. `run` is one `generate` call: add its prompts, step until all
    are done. `TransformersTeacher.stream` hands the decoder to a caller that adds prompts while it runs, so
    the first rows of one batch fill the rows the last of the previous one left (gen instructions)."""

    def __init__(self, teacher: TransformersTeacher, s: Sampling, on_tokens):
        import torch
        self.torch, self.t, self.s, self.on_tokens = torch, teacher, s, on_tokens
        self.model, self.dev = teacher.model, teacher.device
        self.tail = max((len(x) for x in s.stop), default=0) + 3  # tokens re-decoded to spot a stop string
        self.pending: deque = deque()  # (group id, head length, row), grouped by shared head
        self.heads: dict[int, list] = {}
        self.live: list[_Row] = []
        self.groups = 0  # group ids handed out so far (each `add` numbers its own groups after them)
        self.cache = self.mask = self.pos = self.seen = self.logits = None  # the live rows' state

    def add(self, ids: list[list[int]], seed: int | None = None) -> list[_Row]:
        """Queue prompts (token ids); row i of them samples from its own generator seeded `seed + i` (default:
        the sampling's seed). Returns their rows: a row is done when its `finish` is set."""
        if any(not x for x in ids):
            raise ValueError("an empty prompt cannot be completed by a local model")
        seed = self.s.seed if seed is None else seed
        rows = [_Row(i, x, logprobs=[] if self.s.logprobs > 0 else None) for i, x in enumerate(ids)]
        if seed is not None and self.s.temperature > 0:
            for r in rows:
                r.generator = self.torch.Generator(device=self.dev).manual_seed(seed + r.index)
        for gid, head, i in _groups(ids):
            self.pending.append((gid + self.groups if gid >= 0 else -1, head, rows[i]))
        self.groups += len(ids)
        return rows

    @property
    def busy(self) -> bool:
        return bool(self.pending or self.live)

    @property
    def free(self) -> int:
        """Rows that would idle at the next step (no live row and no waiting prompt for them)."""
        return max(self.t.batch_size - len(self.live) - len(self.pending), 0)

    def step(self) -> None:
        """Admit waiting prompts into free rows, then decode one token for every live row."""
        t0 = time.perf_counter()
        with self.torch.inference_mode():
            while self.pending and len(self.live) < self.t.batch_size:
                self.live += self._admit(self.t.batch_size - len(self.live))
            if self.live:
                self.live = self._step(self.live)
        self.t.stats["seconds"] += time.perf_counter() - t0

    def cancel(self) -> None:
        """Stop every live and waiting row (their `finish` becomes "cancelled"; tokens made so far count)."""
        for r in self.live + [x[2] for x in self.pending]:
            if r.finish is None:  # a step that raised may leave rows it had finished among the live ones
                self._done(r, "cancelled")
        self.live, self.heads = [], {}
        self.pending.clear()
        self.cache = self.mask = self.pos = self.seen = self.logits = None

    def completion(self, r: _Row) -> Completion:
        return Completion(text=self._text(r), finish_reason=r.finish, prompt_tokens=len(r.prompt) * r.started,
                          completion_tokens=len(r.out), top_logprobs=r.logprobs)

    def run(self, ids: list[list[int]]) -> list[Completion]:
        rows = self.add(ids)
        while self.busy:
            self.step()
        return [self.completion(r) for r in rows]

    def _done(self, r: _Row, finish: str) -> None:
        r.finish = finish
        self.t.stats["prompt_tokens"] += len(r.prompt) * r.started
        self.t.stats["completion_tokens"] += len(r.out)

    def _text(self, r: _Row) -> str:
        toks = r.out[:-1] if r.out and r.out[-1] in self.t.eos else r.out
        return cut_at_stop(self.t.tokenizer.decode(toks, skip_special_tokens=True), self.s.stop)[0]

    def _admit(self, room: int) -> list[_Row]:
        """Prefill up to `room` waiting prompts of one group and merge them into the running cache."""
        torch = self.torch
        from transformers import DynamicCache
        pending, heads = self.pending, self.heads
        group, p = pending[0][0], pending[0][1]
        take = []
        while pending and pending[0][0] == group and len(take) < room:
            take.append(pending.popleft()[2])
            take[-1].started = True
        if p and group not in heads:  # the shared head, once per group
            c = DynamicCache(config=self.model.config)
            head = torch.tensor([take[0].prompt[:p]], device=self.dev)
            self.model(input_ids=head, cache=c, use_cache=True, logits_to_keep=1)
            heads[group] = [(k, v) for k, v, *_ in c]
            self.t.stats["prefix_tokens_shared"] += p
        more = bool(pending) and pending[0][0] == group
        head_kv = heads.get(group) if more else heads.pop(group, None)  # freed after the group's last rows
        n, tails = len(take), [r.prompt[p:] for r in take]
        width = max(len(x) for x in tails)
        pad = self.t.tokenizer.pad_token_id
        inp = torch.tensor([[pad] * (width - len(x)) + x for x in tails], device=self.dev)
        mask = torch.tensor([[1] * p + [0] * (width - len(x)) + [1] * len(x) for x in tails], device=self.dev)
        pos = torch.tensor([[p] * (width - len(x)) + list(range(p, p + len(x))) for x in tails], device=self.dev)
        c = (DynamicCache(ddp_cache_data=[(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in head_kv])
             if p else DynamicCache(config=self.model.config))
        logits = self.model(input_ids=inp, attention_mask=mask, position_ids=pos, cache=c, use_cache=True,
                            logits_to_keep=1).logits[:, -1].float()
        seen = torch.zeros(n, logits.shape[-1], device=self.dev)
        if self.cache is None:
            self.cache = Cache(layers=[_Slab(layer.keys, layer.values) for layer in c.layers])
            self.mask, self.pos, self.seen, self.logits = mask, mask.sum(1), seen, logits
        else:  # left-pad the shorter of the two caches so that their columns line up
            t = max(self.mask.shape[1], mask.shape[1])
            for old, new in zip(self.cache.layers, c.layers):
                old.stack(new.keys, new.values, t)
            self.mask = torch.cat([_pad_left(self.mask, t), _pad_left(mask, t)])
            self.pos = torch.cat([self.pos, mask.sum(1)])
            self.seen = torch.cat([self.seen, seen])
            self.logits = torch.cat([self.logits, logits])
        return take

    def _step(self, live: list[_Row]) -> list[_Row]:
        """Pick a token for every live row, retire finished rows, and run the rest one position on."""
        torch, s = self.torch, self.s
        scores = self.logits - s.presence_penalty * self.seen if s.presence_penalty else self.logits
        if s.temperature <= 0:
            toks = scores.argmax(-1)
        else:
            toks = _sample(scores / s.temperature, s.top_p, [r.generator for r in live])
        if s.logprobs > 0:
            top = self.logits.log_softmax(-1).topk(s.logprobs, dim=-1)
            for r, vals, idx in zip(live, top.values.tolist(), top.indices.tolist()):
                d: dict[str, float] = {}
                for lp, tok in zip(vals, idx):
                    d.setdefault(self.t.token_text(tok), lp)
                r.logprobs.append(d)
        self.seen[torch.arange(len(live)), toks] = 1.0
        keep = []
        for i, (r, tok) in enumerate(zip(live, toks.tolist())):
            r.out.append(tok)
            if tok in self.t.eos:
                self._done(r, "stop")
            elif s.stop and any(x in self.t.tokenizer.decode(r.out[-self.tail:], skip_special_tokens=True)
                                for x in s.stop if x):
                self._done(r, "stop")
            elif len(r.out) >= s.max_new_tokens:
                self._done(r, "length")
            else:
                keep.append(i)
        if self.on_tokens is not None:
            self.on_tokens(len(live))
        if len(keep) < len(live):
            self._retire(keep)
            toks = toks[keep]
            live = [live[i] for i in keep]
        if not live:
            return live
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(live), 1)], dim=1)
        self.logits = self.model(input_ids=toks[:, None], attention_mask=self.mask, position_ids=self.pos[:, None],
                                 cache=self.cache, use_cache=True).logits[:, -1].float()
        self.pos = self.pos + 1
        return live

    def _retire(self, keep: list[int]) -> None:
        """Drop finished rows, then the cache columns that no live row attends to any more."""
        if not keep:
            self.cache = None
            return
        idx = self.torch.tensor(keep, device=self.dev)
        self.mask, self.pos, self.seen, self.logits = self.mask[idx], self.pos[idx], self.seen[idx], self.logits[idx]
        cols = self.mask.any(0)
        trim = not bool(cols.all())
        if trim:
            self.mask = self.mask[:, cols]
        for layer in self.cache.layers:
            layer.select(idx, cols if trim else None)


def _nucleus(scores, top_p: float):
    """The top-p nucleus of each row of `scores`: (token ids, weights), best first, weights zero past the
    nucleus. The rule is transformers' `TopPLogitsWarper`: a token stays when the probability of the tokens
    ranked above it is below `top_p` (the best token always stays). Only the best k tokens are sorted, k grown
    until every row's nucleus ends inside them: sorting the whole vocabulary of every row was a third of a
    16-row decode step."""
    import torch
    vocab = scores.shape[-1]
    if top_p >= 1.0:
        return None, scores.softmax(-1)
    lse = scores.logsumexp(-1, keepdim=True)
    if not bool(torch.isfinite(lse).all()):
        raise RuntimeError("the model's next-token scores are not finite (NaN or inf)")
    k = min(64, vocab)
    while True:
        vals, idx = scores.topk(k, dim=-1)
        # one order whatever k is: by score, ties by token id (topk orders equal scores differently for
        # different k, and k depends on the other rows of the step)
        by_id = idx.argsort(dim=-1)
        vals, idx = vals.gather(1, by_id), idx.gather(1, by_id)
        by_score = torch.sort(vals, dim=-1, descending=True, stable=True).indices
        vals, idx = vals.gather(1, by_score), idx.gather(1, by_score)
        p = (vals - lse).exp()
        keep = (p.cumsum(-1) - p) < top_p
        keep[:, 0] = True
        if k == vocab or not bool(keep[:, -1].any()):
            return idx, p * keep
        k = min(4 * k, vocab)


def _sample(scores, top_p: float, generators: list):
    """One token per row from softmax(scores) cut to the top-p nucleus, by the inverse of its cumulative
    weights. With per-row generators each row draws exactly one uniform number per step, so its tokens do not
    depend on which rows share the batch (nor on how many candidates the other rows needed)."""
    import torch
    idx, w = _nucleus(scores, top_p)
    if idx is None and not bool(torch.isfinite(w).all()):
        raise RuntimeError("the model's next-token scores are not finite (NaN or inf)")
    cum = w.cumsum(-1)
    if generators[0] is None:
        u = torch.rand(len(generators), 1, device=w.device)
    else:
        u = torch.cat([torch.rand(1, generator=g, device=w.device) for g in generators])[:, None]
    pick = torch.searchsorted(cum, u * cum[:, -1:], right=True)
    if idx is None:  # the whole vocabulary; u * total rounding up to total would pick past the end
        return torch.where(pick.squeeze(1) < w.shape[-1], pick.squeeze(1), w.argmax(-1))
    return idx.gather(1, torch.minimum(pick, (w > 0).sum(-1, keepdim=True) - 1)).squeeze(1)


def _groups(ids: list[list[int]]) -> list[tuple[int, int, int]]:
    """Order prompts so that those sharing a head are adjacent; returns (group, head length, index) per prompt.

    Prompts are sorted by their tokens; a prompt joins the previous group when it shares at least
    MIN_SHARED_PREFIX tokens with it and at least half of the group's current head (so one stray prompt does
    not shrink a long shared head to a short one). Prompts in no group form group -1, without a head."""
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    groups: list[list] = []  # [head length, members]
    for i in order:
        if groups:
            g = groups[-1]
            first = ids[g[1][0]]
            n = _common(first, ids[i], g[0])
            if n >= MIN_SHARED_PREFIX and (len(g[1]) == 1 or 2 * n >= g[0]):
                g[0] = n
                g[1].append(i)
                continue
        groups.append([len(ids[i]), [i]])
    out, alone = [], []
    for gid, (n, members) in enumerate(groups):
        if len(members) == 1:
            alone += members
        else:
            out += [(gid, min(n, min(len(ids[i]) for i in members) - 1), i) for i in members]
    # prompts without a shared head enter together, by length, so that a batch of them pads little
    return out + [(-1, 0, i) for i in sorted(alone, key=lambda i: len(ids[i]))]


def _common(a: list[int], b: list[int], limit: int) -> int:
    n = 0
    for x, y in zip(a[:limit], b):
        if x != y:
            break
        n += 1
    return n


def _pad_left(x, t: int, dim: int = 1):
    """Zero-pad `x` on the left along `dim` to length t (masked columns: their values are never attended)."""
    import torch
    missing = t - x.shape[dim]
    if missing == 0:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x.new_zeros(shape), x], dim=dim)


class _Slab(DynamicLayer):
    """One layer of the live rows' cache: keys and values [rows, heads, columns, dim] are views into a buffer
    with spare columns, so a decode step writes its token in place. transformers' DynamicLayer concatenates
    the whole cache on every token instead: at 16 rows of ~400 tokens that copy (and its fresh pages) was most
    of a decode step (forward 171 -> 154 ms measured by hand, README). Sequence length and mask sizes are
    DynamicLayer's, read from the `keys` view."""

    @staticmethod
    def room(t: int) -> int:
        """Spare columns given to a new buffer of t used columns."""
        return max(128, t // 2)

    is_croppable = False
    supports_early_init = False

    def __init__(self, keys, values):
        super().__init__()
        self.is_initialized = True
        self.device = keys.device
        self._put(keys.shape[0], keys.shape[2], [(0, keys, values)])

    def _put(self, n: int, t: int, parts) -> None:
        """A new buffer of n rows and t used columns (plus room), holding `parts` (first row, keys, values),
        each right-aligned on the columns; what no part covers is zero (masked)."""
        self.t = t
        room = self.room(t)
        k0, v0 = parts[0][1], parts[0][2]
        self._k = k0.new_zeros(n, k0.shape[1], t + room, k0.shape[3])
        self._v = v0.new_zeros(n, v0.shape[1], t + room, v0.shape[3])
        for row, k, v in parts:
            self._k[row:row + k.shape[0], :, t - k.shape[2]:t] = k
            self._v[row:row + v.shape[0], :, t - v.shape[2]:t] = v
        self.keys, self.values = self._k[:, :, :t], self._v[:, :, :t]

    def update(self, keys, values, *args, **kwargs):
        add = keys.shape[2]
        if self.t + add > self._k.shape[2]:
            self._put(self._k.shape[0], self.t, [(0, self.keys, self.values)])
        self._k[:, :, self.t:self.t + add] = keys
        self._v[:, :, self.t:self.t + add] = values
        self.t += add
        self.keys, self.values = self._k[:, :, :self.t], self._v[:, :, :self.t]
        return self.keys, self.values

    def stack(self, keys, values, t: int) -> None:
        """Append rows below the live ones, both left-padded to t columns."""
        n = self.keys.shape[0]
        self._put(n + keys.shape[0], t, [(0, self.keys, self.values), (n, keys, values)])

    def select(self, idx, cols=None) -> None:
        """Keep rows `idx` (and, when given, the columns `cols`, a boolean mask)."""
        keys, values = self.keys.index_select(0, idx), self.values.index_select(0, idx)
        if cols is not None:
            keys, values = keys[:, :, cols], values[:, :, cols]
        self._put(keys.shape[0], keys.shape[2], [(0, keys, values)])

    def _unsupported(self, *args, **kwargs):
        raise NotImplementedError("the decode loop's cache layer only grows, stacks and selects rows")

    crop = batch_select_indices = batch_repeat_interleave = reorder_cache = reset = _unsupported


def _plain_kv_cache(model) -> bool:
    """Whether the model's cache is plain per-layer keys and values that our loop may slice and pad."""
    try:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer
        if getattr(model.config, "is_encoder_decoder", False):
            return False
        return all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers)
    except Exception:
        return False


def _as_list(x) -> list[int]:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


class PresencePenalty:
    """Subtract `penalty` from the logit of every token that already occurs in the generated text (OpenAI's
    presence penalty; the prompt does not count). Used by the `model.generate` fallback."""

    def __init__(self, penalty: float, prompt_len: int):
        self.penalty, self.prompt_len = penalty, prompt_len

    def __call__(self, input_ids, scores):
        import torch
        generated = input_ids[:, self.prompt_len:]
        if generated.shape[1] == 0:
            return scores
        seen = torch.zeros_like(scores, dtype=torch.bool)
        seen.scatter_(1, generated, True)
        return scores - self.penalty * seen.to(scores.dtype)

"""The default teacher: transformers `generate`, batched and left-padded, on CPU or CUDA."""

from __future__ import annotations

import time
from typing import Sequence

from .teachers import Completion, Prompt, Sampling, cut_at_stop


class TransformersTeacher:
    """Batched generation with a transformers causal LM.

    Sampling follows the OpenAI-style semantics the published recipes used: presence penalty first (subtracted
    once from every token already generated), then temperature, then top-p. transformers has no presence
    penalty, and its built-in warpers would run before a custom processor, so all three are applied here in
    that order.
    """

    def __init__(self, model: str = "smollm2-135m", batch_size: int = 16, device: str | None = None,
                 dtype: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..models import resolve

        path, gguf = resolve(model)
        self.name = f"transformers:{model}"
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if self.device == "cuda" else torch.float32)
        self.tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=gguf)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf, dtype=torch_dtype).to(self.device)
        self.model.eval()
        self.stats = {"prompt_tokens": 0, "completion_tokens": 0, "seconds": 0.0}

    def render(self, prompt: Prompt) -> str:
        """A chat prompt goes through the model's chat template; a string is used as is."""
        if isinstance(prompt, str):
            return prompt
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in prompt) + "\n\n"

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Completion]:
        texts = [self.render(p) for p in prompts]
        # Sort by length so each batch pads little; results are returned in the caller's order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[Completion | None] = [None] * len(texts)
        for b in range(0, len(order), self.batch_size):
            idx = order[b:b + self.batch_size]
            for i, c in zip(idx, self._generate_batch([texts[i] for i in idx], sampling, b)):
                out[i] = c
        return out  # type: ignore[return-value]

    def _generate_batch(self, texts: list[str], s: Sampling, offset: int) -> list[Completion]:
        import torch
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

        t0 = time.perf_counter()
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        prompt_len = enc["input_ids"].shape[1]
        greedy = s.temperature <= 0
        processors = LogitsProcessorList()
        if s.presence_penalty:
            processors.append(PresencePenalty(s.presence_penalty, prompt_len))
        kw = dict(do_sample=False)
        if not greedy:
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
        new = gen[:, prompt_len:].tolist()
        eos = set(_as_list(self.model.generation_config.eos_token_id) + _as_list(self.tokenizer.eos_token_id))
        prompt_counts = enc["attention_mask"].sum(dim=1).tolist()
        out = []
        for row, n_prompt in zip(new, prompt_counts):
            n = next((j + 1 for j, tok in enumerate(row) if tok in eos), None)
            hit_eos = n is not None
            toks = row[: (n - 1) if hit_eos else len(row)]
            while toks and toks[-1] == self.tokenizer.pad_token_id:  # finished early on a stop string
                toks.pop()
            text, hit_stop = cut_at_stop(self.tokenizer.decode(toks, skip_special_tokens=True), s.stop)
            count = n if hit_eos else len(toks)
            finish = "stop" if (hit_eos or hit_stop or count < s.max_new_tokens) else "length"
            out.append(Completion(text=text, finish_reason=finish, prompt_tokens=int(n_prompt),
                                  completion_tokens=int(count)))
        self.stats["prompt_tokens"] += sum(c.prompt_tokens for c in out)
        self.stats["completion_tokens"] += sum(c.completion_tokens for c in out)
        self.stats["seconds"] += time.perf_counter() - t0
        return out


def _as_list(x) -> list[int]:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


class PresencePenalty:
    """Subtract `penalty` from the logit of every token that already occurs in the generated text (OpenAI's
    presence penalty; the prompt does not count)."""

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

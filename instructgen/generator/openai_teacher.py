"""The `openai` teacher: any OpenAI-compatible server (OpenAI, vLLM's server, llama.cpp, TGI, our `serve.py`).

String prompts go to `/completions`, message lists to `/chat/completions`, one request per prompt, at most
`max_concurrency` in flight, results in the caller's order. Retries, the rate limit (`rps`), redaction and
cancelling are the shared HTTP client's (`http_client.py`): timeouts, connection errors, 429 and 5xx are retried
with backoff (Retry-After honoured), other 4xx fail at once with the server's message, and a failed request or
Ctrl-C cancels the call at once (queued prompts are never sent, in-flight sockets are cut).

The API key comes from the environment only and goes out only as a Bearer header: it is never logged, never put
in an exception (a server echoing it is redacted) and never part of `name` (which lands in provenance). A URL
holding credentials (`user:password@`, `?api_key=`) is refused as a spec error, before anything is written,
without repeating them (`instructgen.secrets`).

Several endpoints of one model (`openai:http://a:8000/v1,http://b:8000/v1@MODEL`, e.g. one vLLM server per GPU):
each request goes to one of them (`balance: round_robin`, strict rotation, the default; or `least_loaded`, the
fewest in flight), `max_concurrency` is per endpoint, `rps` and the API key are shared. An endpoint that refuses
connections, or fails a request on every retry (timeouts, 429, 5xx), is skipped for `cooldown_s` and its
requests go to the others; the answers come back in prompt order whichever endpoint gave them, so a caller
(the bootstrap loop, its pool and its budget) sees the same thing as with one endpoint.

Token log-probabilities (`Sampling.logprobs = k`): chat requests ask `logprobs: true, top_logprobs: k`,
completions requests `logprobs: k` (OpenAI caps these at 20 and 5; vLLM's server takes more); either answer is
read into `Completion.top_logprobs`, one {token: logprob} per generated position (the top k, plus the token that
was generated), cut where the text is cut at a stop string. A server that sends none gives None.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from ..secrets import redact_url, url_secret_problem, userinfo_in
from .http_client import BALANCE, EndpointPool, JSONClient, TeacherRequestError, run_concurrently
from .teachers import ENDPOINT_SEP, Completion, Prompt, Sampling, TeacherSpecError, cut_at_stop, finish_reason

__all__ = ["OpenAITeacher", "TeacherRequestError", "parse_openai_endpoints", "parse_openai_spec"]

log = logging.getLogger(__name__)

SPEC_FORM = ("openai:BASE_URL@MODEL (e.g. openai:http://127.0.0.1:8000/v1@my-model), or several endpoints of one "
             "model: openai:BASE_URL,BASE_URL@MODEL")
MAX_API_STOPS = 4  # the OpenAI API rejects more than 4 stop strings; the rest are cut client-side


def parse_openai_endpoints(spec: str, key_env: str = "OPENAI_API_KEY") -> tuple[list[str], str]:
    """Split `BASE_URL[,BASE_URL...]@MODEL` (an `openai:` prefix is allowed) into (base URLs without trailing /,
    model). Several base URLs are endpoints serving the same model (e.g. one vLLM server per GPU): a comma
    followed by a scheme separates them, and only the last one carries `@MODEL`.

    Credentials are looked for before the split at the model's `@` (`http://admin:4242@127.0.0.1:9/v1` has
    no model: it is a password, not a host and a model); a message never repeats them, and shows the URLs only
    in their redacted form. A query is kept (`?api-version=...`) unless a parameter holds a secret."""
    rest = spec[len("openai:"):] if spec.startswith("openai:") else spec
    *heads, last = ENDPOINT_SEP.split(rest)
    if any("@" in h for h in heads):
        raise TeacherSpecError(f"openai teacher spec: an '@' in an endpoint before the last: one @MODEL ends the "
                               f"spec, and credentials in a URL (user:password@) are not accepted (put the key in "
                               f"${key_env}); the spec is not shown. Accepted form: {SPEC_FORM}")
    if userinfo_in(last):
        raise TeacherSpecError(f"openai teacher spec: credentials in the URL (user:password@) are not accepted; "
                               f"put the key in ${key_env}. Accepted form: {SPEC_FORM}")
    url, sep, model = last.rpartition("@")
    urls = [u.rstrip("/") for u in heads + [url]]
    problem, shown = None, " 'openai:" + ",".join(redact_url(u) for u in heads + [last]) + "'"
    if not sep or not model.strip() or not url:
        problem = "expected BASE_URL@MODEL"
    else:
        for u in urls:
            problem, hide = url_problem(u, key_env)
            if problem:
                shown = "" if hide else shown
                break
        else:
            if len(set(urls)) < len(urls):
                problem = "an endpoint is listed twice"
    if problem:
        raise TeacherSpecError(f"openai teacher spec{shown}: {problem}. Accepted form: {SPEC_FORM}")
    return urls, model.strip()


def parse_openai_spec(spec: str, key_env: str = "OPENAI_API_KEY") -> tuple[str, str]:
    """(base URL, model) of `BASE_URL@MODEL`; several endpoints come back joined by commas, as the spec has
    them (see parse_openai_endpoints)."""
    urls, model = parse_openai_endpoints(spec, key_env)
    return ",".join(urls), model


def url_problem(url: str, key_env: str) -> tuple[str | None, bool]:
    """(why this base URL is refused, whether the message must not show it: it may hold a secret); (None, False)
    when it is fine (pure)."""
    problem = url_secret_problem(url, key_env)
    if problem:
        return problem, True
    if "," in url:  # a mistyped scheme after a comma (`https//`) would hide credentials from the checks
        return ("a comma in a base URL: several endpoints are BASE_URL,BASE_URL@MODEL, each starting with "
                "http:// or https://"), True
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"'{redact_url(url)}' is not an http(s) URL", False
    try:
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        return "bad port in the base URL (a number 1-65535)", True  # it may be a password
    return None, False


def check_options(options: dict[str, Any]) -> None:
    """Check the values of this backend's teacher_options that the constructor would only refuse after the run
    folder exists (teachers.validate_options calls it before anything is written)."""
    if "balance" in options and options["balance"] not in BALANCE:
        raise TeacherSpecError(f"teacher_options balance: {options['balance']!r} is not one of "
                               f"{', '.join(BALANCE)}")
    v = options.get("cooldown_s", 0)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise TeacherSpecError(f"teacher_options cooldown_s: {v!r} is not a number of seconds >= 0")


class OpenAITeacher:
    """Generate through an OpenAI-compatible HTTP API, on one endpoint or spread over several that serve the same
    model (`balance`: round_robin or least_loaded, see http_client.EndpointPool); results come back in the
    caller's order, whichever endpoint answered."""

    supports = frozenset({"raw", "chat", "logprobs"})  # "raw": /completions; whether a server has both is its own

    def __init__(self, base_url: str | Sequence[str], model: str, max_concurrency: int = 8,
                 timeout_s: float = 300.0, max_attempts: int = 6, backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 api_key_env: str | None = None, batch_size: int | None = None, rps: float | None = None,
                 balance: str = "round_robin", cooldown_s: float = 30.0):
        # batch_size is the caller's prompts per generate() call; max_concurrency is what each endpoint sees.
        env = api_key_env or "OPENAI_API_KEY"
        urls = ENDPOINT_SEP.split(base_url) if isinstance(base_url, str) else list(base_url)
        for url in urls:
            problem = url_secret_problem(url, env)
            if problem:
                raise TeacherSpecError(f"openai teacher base URL: {problem}")
        if api_key_env and not os.environ.get(api_key_env):
            raise TeacherSpecError(f"api_key_env: environment variable {api_key_env} is not set")
        if rps is not None and rps < 0:
            raise TeacherSpecError(f"rps {rps}: requests per second must be >= 0 (0 or none: no limit)")
        check_options(dict(balance=balance, cooldown_s=cooldown_s))
        # one key for every endpoint (one provider or one deployment); local servers need none
        self.clients = [JSONClient(url, api_key=os.environ.get(env) or None, timeout_s=timeout_s,
                                   max_attempts=max_attempts, backoff_s=backoff_s, max_backoff_s=max_backoff_s,
                                   rps=rps) for url in urls]
        if len({c.base_url for c in self.clients}) < len(self.clients):
            raise TeacherSpecError("openai teacher: an endpoint is listed twice")
        for c in self.clients[1:]:
            c.rate = self.clients[0].rate  # rps counts the requests to every endpoint together
        self.client = self.clients[0]
        self.pool = EndpointPool(self.clients, balance, cooldown_s)
        self.base_url = ",".join(c.base_url for c in self.clients)
        self.model = model
        self.name = f"openai:{self.base_url}@{model}"
        self.max_concurrency = max(1, int(max_concurrency))
        self.batch_size = batch_size
        for c in self.clients:
            c.stats.update(prompt_tokens=0, completion_tokens=0)  # requests and retries are the client's
        self._warned_no_logprobs = False

    @property
    def stats(self) -> dict[str, Any]:
        """Requests, retries and tokens summed over the endpoints; with several, `endpoints` has each one's."""
        total: dict[str, Any] = {}
        for c in self.clients:
            for k, v in c.stats.items():
                total[k] = total.get(k, 0) + v
        if len(self.clients) > 1:
            total["endpoints"] = {c.base_url: dict(c.stats, sent=n) for c, n in zip(self.clients, self.pool.sent)}
        return total

    @property
    def max_attempts(self) -> int:  # the judge's probe lowers it for one call
        return self.client.max_attempts

    @max_attempts.setter
    def max_attempts(self, value: int) -> None:
        for c in self.clients:
            c.max_attempts = max(1, int(value))

    @classmethod
    def from_spec(cls, spec: str, **kw) -> "OpenAITeacher":
        urls, model = parse_openai_endpoints(spec, kw.get("api_key_env") or "OPENAI_API_KEY")
        return cls(urls, model, **kw)

    def __repr__(self) -> str:  # never show the key
        return f"OpenAITeacher({self.name!r}, max_concurrency={self.max_concurrency})"

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling,
                 on_tokens: Callable[[int], None] | None = None) -> list[Completion]:
        """One completion per prompt, in order; `on_tokens(n)` as each request lands with its n completion
        tokens. The first request that fails for good cancels the rest; so does an exception in the calling
        thread (Ctrl-C), which is re-raised once the call is cancelled."""
        done = (lambda i, c: on_tokens(c.completion_tokens)) if on_tokens else None
        return run_concurrently(list(prompts), lambda p, call: self._one(p, sampling, call),
                                self.max_concurrency * len(self.clients), on_result=done, name="openai-teacher")

    def close(self) -> None:
        for c in self.clients:
            c.close()

    # -- one prompt: two pure functions around one POST -----------------------------------------------------

    def request_body(self, prompt: Prompt, s: Sampling) -> tuple[str, dict[str, Any]]:
        """(endpoint path, JSON body) for one prompt (pure)."""
        body: dict[str, Any] = {"model": self.model, "max_tokens": s.max_new_tokens,
                                "temperature": max(0.0, s.temperature), "top_p": s.top_p}
        if s.presence_penalty:
            body["presence_penalty"] = s.presence_penalty
        stops = [x for x in s.stop if x]
        if stops:
            # The server stops at the earliest of the first four; any other stop string that occurs earlier in
            # the text is cut client-side, so the result is the same as a server taking them all.
            body["stop"] = stops[:MAX_API_STOPS]
        if s.seed is not None:
            body["seed"] = s.seed
        if isinstance(prompt, str):
            if s.logprobs > 0:
                body["logprobs"] = s.logprobs
            return "/completions", {**body, "prompt": prompt}
        if s.logprobs > 0:
            body.update(logprobs=True, top_logprobs=s.logprobs)
        return "/chat/completions", {**body, "messages": list(prompt)}

    def _one(self, prompt: Prompt, s: Sampling, call) -> Completion:
        path, body = self.request_body(prompt, s)
        data, client = self.pool.post(path, body, call)
        try:
            c = self.to_completion(data, s.stop, chat=path == "/chat/completions", where=client.url(path),
                                   logprobs=s.logprobs > 0)
        except TeacherRequestError as e:  # it quotes the body, which may echo the key
            raise TeacherRequestError(client.redact(str(e))) from None
        if s.logprobs > 0 and c.top_logprobs is None and not self._warned_no_logprobs:
            self._warned_no_logprobs = True
            log.warning("%s: asked for logprobs=%d but the server sent none", client.url(path), s.logprobs)
        client.count(prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens)
        return c

    @staticmethod
    def to_completion(data: Any, stops: Sequence[str], chat: bool, where: str = "server",
                      logprobs: bool = False) -> Completion:
        """Turn a (chat) completions response into a Completion; missing usage counts as 0 (pure)."""
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] if chat else choice["text"]
            if not isinstance(text, (str, type(None))):
                raise TypeError
            text, hit_stop = cut_at_stop(text or "", [x for x in stops if x])
            usage = data.get("usage") or {}
            top = read_logprobs(choice.get("logprobs"), chat, len(text) if hit_stop else None) if logprobs else None
            return Completion(text=text, finish_reason=finish_reason(choice.get("finish_reason"), hit_stop),
                              prompt_tokens=int(usage.get("prompt_tokens") or 0),
                              completion_tokens=int(usage.get("completion_tokens") or 0), top_logprobs=top)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise TeacherRequestError(f"{where}: unexpected response shape (no choices[0]"
                                      f"{'.message.content' if chat else '.text'} string, or bad usage or "
                                      f"logprobs): {str(data)[:200]}") from None


def read_logprobs(lp: Any, chat: bool, cut: int | None = None) -> list[dict[str, float]] | None:
    """A choice's `logprobs` -> one {token: logprob} per generated position, the generated token included;
    with `cut` (the text was cut at a stop string there) positions starting at or after it are left out; None
    when the server sent none (pure).

    Chat: {"content": [{"token", "logprob", "top_logprobs": [{"token", "logprob"}]}]}. Completions:
    {"tokens": [...], "token_logprobs": [...], "top_logprobs": [{token: logprob}]}."""
    if not lp:
        return None
    if chat:
        content = lp["content"]
        if content is None:
            return None
        rows = [(e["token"], e["logprob"], {t["token"]: t["logprob"] for t in e.get("top_logprobs") or ()})
                for e in content]
    else:
        tokens, chosen = lp["tokens"], lp.get("token_logprobs") or [None] * len(lp["tokens"])
        tops = lp.get("top_logprobs") or [None] * len(tokens)
        rows = [(t, c, dict(top or {})) for t, c, top in zip(tokens, chosen, tops)]
    out, at = [], 0
    for token, logprob, top in rows:
        if cut is not None and at >= cut:  # the stop string and what followed it
            break
        if logprob is not None:
            top.setdefault(token, float(logprob))
        out.append({str(k): float(v) for k, v in top.items()})
        at += len(token)
    return out

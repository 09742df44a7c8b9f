"""The `openai` teacher: any OpenAI-compatible server (OpenAI, vLLM's server, llama.cpp, TGI, our `serve.py`).

String prompts go to `/completions`, message lists to `/chat/completions`, one request per prompt, at most
`max_concurrency` in flight, results in the caller's order. Timeouts, connection errors, 429 and 5xx are retried
with exponential backoff and jitter (a Retry-After header is honoured, up to `max_backoff_s`); other 4xx fail at
once with the server's message. The API key comes from the environment only and goes out only as a Bearer
header: it is never logged, never put in an exception (a server echoing it is redacted) and never part of `name`
(which lands in provenance). Standard library only: http.client with pooled keep-alive connections; no proxies.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import random
import ssl
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, Sequence
from urllib.parse import urlsplit

from .teachers import Completion, Prompt, Sampling, TeacherSpecError, cut_at_stop

log = logging.getLogger(__name__)

SPEC_FORM = "openai:BASE_URL@MODEL (e.g. openai:http://127.0.0.1:8000/v1@my-model)"
MAX_API_STOPS = 4  # the OpenAI API rejects more than 4 stop strings; the rest are cut client-side


class TeacherRequestError(RuntimeError):
    """A request failed for good: a 4xx other than 429, a bad response, or every attempt used up."""


def parse_openai_spec(spec: str) -> tuple[str, str]:
    """Split `BASE_URL@MODEL` (an `openai:` prefix is allowed) into (base_url without trailing /, model)."""
    rest = spec[len("openai:"):] if spec.startswith("openai:") else spec
    url, sep, model = rest.rpartition("@")
    url = url.rstrip("/")
    problem = None
    if not sep or not model.strip() or not url:
        problem = "expected BASE_URL@MODEL"
    else:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problem = f"'{url}' is not an http(s) URL"
        elif "@" in parts.netloc:
            problem = "credentials in the URL are not accepted; put the key in $OPENAI_API_KEY"
        elif parts.query or parts.fragment:
            problem = "the base URL takes no query or fragment"
        else:
            try:
                parts.port  # noqa: B018  (raises on a bad port)
            except ValueError:
                problem = f"bad port in '{url}'"
    if problem:
        shown = "" if problem.startswith("credentials") else f" 'openai:{rest}'"  # never echo a secret
        raise TeacherSpecError(f"openai teacher spec{shown}: {problem}. Accepted form: {SPEC_FORM}")
    return url, model.strip()


class OpenAITeacher:
    """Generate through an OpenAI-compatible HTTP API; results come back in the caller's order."""

    def __init__(self, base_url: str, model: str, max_concurrency: int = 8, timeout_s: float = 300.0,
                 max_attempts: int = 6, backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 api_key_env: str | None = None, batch_size: int | None = None):
        # batch_size is the caller's prompts per generate() call; concurrency is what the server sees.
        self.base_url, self.model = base_url.rstrip("/"), model
        self.name = f"openai:{self.base_url}@{model}"
        self.max_concurrency = max(1, int(max_concurrency))
        self.timeout_s, self.max_attempts = float(timeout_s), max(1, int(max_attempts))
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max_backoff_s)
        self.batch_size = batch_size
        env = api_key_env or "OPENAI_API_KEY"
        if api_key_env and not os.environ.get(api_key_env):
            raise TeacherSpecError(f"api_key_env: environment variable {api_key_env} is not set")
        self._api_key = os.environ.get(env) or None  # local servers need no key
        parts = urlsplit(self.base_url)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/")
        self._pool: list[http.client.HTTPConnection] = []
        self._pool_lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0}
        self._stats_lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: str, **kw) -> "OpenAITeacher":
        url, model = parse_openai_spec(spec)
        return cls(url, model, **kw)

    def __repr__(self) -> str:  # never show the key
        return f"OpenAITeacher({self.name!r}, max_concurrency={self.max_concurrency})"

    # -- public API ---------------------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Completion]:
        if not prompts:
            return []
        abort = threading.Event()
        ex = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(prompts)),
                                thread_name_prefix="openai-teacher")
        futures = [ex.submit(self._one, p, sampling, abort) for p in prompts]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f in done and f.exception() is not None), None)
        if failed is not None:
            abort.set()  # queued prompts are dropped; in-flight ones give up at their next retry wait
            ex.shutdown(wait=False, cancel_futures=True)
            raise failed.exception()  # type: ignore[misc]
        ex.shutdown(wait=True)
        return [f.result() for f in futures]

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, []
        for c in pool:
            c.close()

    # -- one prompt ---------------------------------------------------------------------------------------

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
            return "/completions", {**body, "prompt": prompt}
        return "/chat/completions", {**body, "messages": list(prompt)}

    def _one(self, prompt: Prompt, s: Sampling, abort: threading.Event) -> Completion:
        path, body = self.request_body(prompt, s)
        data = self._post(path, body, abort)
        c = self.to_completion(data, s.stop, chat=path == "/chat/completions", where=self.base_url + path)
        self._count(prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens)
        return c

    def _count(self, **kw: int) -> None:
        with self._stats_lock:
            for k, v in kw.items():
                self.stats[k] += v

    @staticmethod
    def to_completion(data: Any, stops: Sequence[str], chat: bool, where: str = "server") -> Completion:
        """Turn a (chat) completions response into a Completion; missing usage counts as 0 (pure)."""
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] if chat else choice["text"]
        except (KeyError, IndexError, TypeError):
            raise TeacherRequestError(f"{where}: unexpected response shape (no choices[0]"
                                      f"{'.message.content' if chat else '.text'}): {str(data)[:200]}") from None
        text, hit_stop = cut_at_stop(text or "", [x for x in stops if x])
        finish = "length" if choice.get("finish_reason") == "length" and not hit_stop else "stop"
        usage = data.get("usage") or {}
        return Completion(text=text, finish_reason=finish, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0))

    # -- HTTP with retries --------------------------------------------------------------------------------

    def _post(self, path: str, body: dict, abort: threading.Event) -> Any:
        url = self.base_url + path
        payload = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        last = "no attempt made"
        for attempt in range(1, self.max_attempts + 1):
            if abort.is_set():
                raise TeacherRequestError(f"{url}: cancelled after another request failed")
            retry_after = None
            self._count(requests=1)
            try:
                status, resp_headers, raw = self._send(self._prefix + path, payload, headers)
            except (OSError, http.client.HTTPException) as e:  # timeouts, refused/reset connections, bad HTTP
                last = _redact(f"{type(e).__name__}: {e}", self._api_key)
            else:
                if 200 <= status < 300:
                    try:
                        return json.loads(raw)
                    except ValueError:
                        raise TeacherRequestError(f"{url}: HTTP {status} but the body is not JSON: "
                                                  f"{_redact(raw[:200].decode('utf-8', 'replace'), self._api_key)}"
                                                  ) from None
                message = _redact(_server_message(raw), self._api_key)
                if status != 429 and status < 500:
                    raise TeacherRequestError(f"{url}: HTTP {status}: {message}")
                last = f"HTTP {status}: {message}"
                retry_after = _retry_after(resp_headers.get("Retry-After"))
            if attempt == self.max_attempts:
                break
            delay = self._delay(attempt, retry_after)
            self._count(retries=1)
            log.warning("%s: %s; retry %d/%d in %.1fs", url, last, attempt, self.max_attempts - 1, delay)
            if abort.wait(delay):
                raise TeacherRequestError(f"{url}: cancelled after another request failed")
        raise TeacherRequestError(f"{url}: gave up after {self.max_attempts} attempts; last: {last}")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (half fixed, half random), or the server's Retry-After (capped)."""
        if retry_after is not None:
            return min(retry_after, self.max_backoff_s)
        d = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return d / 2 + random.uniform(0, d / 2)

    def _send(self, path: str, payload: bytes, headers: dict) -> tuple[int, Any, bytes]:
        conn, reused = self._connection()
        try:
            conn.request("POST", path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            conn.close()
            if not reused:
                raise
            # A pooled keep-alive connection the server had closed: redo once on a fresh one, not counted.
            conn, _ = self._connection(fresh=True)
            try:
                conn.request("POST", path, body=payload, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except BaseException:
                conn.close()
                raise
        except BaseException:
            conn.close()
            raise
        if resp.will_close:
            conn.close()
        else:
            with self._pool_lock:
                self._pool.append(conn)
        return resp.status, resp.headers, raw

    def _connection(self, fresh: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        if not fresh:
            with self._pool_lock:
                if self._pool:
                    return self._pool.pop(), True
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout_s,
                                               context=ssl.create_default_context()), False
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout_s), False


def _server_message(raw: bytes) -> str:
    """The server's error message: OpenAI's {"error": {"message"}} when present, else the body's start."""
    text = raw.decode("utf-8", "replace")
    try:
        data = json.loads(text)
        err = data.get("error", data) if isinstance(data, dict) else data
        msg = err.get("message") if isinstance(err, dict) else err
        if isinstance(msg, str) and msg:
            return msg[:500]
        if msg is not None:
            return json.dumps(msg)[:500]
    except ValueError:
        pass
    return " ".join(text.split())[:500] or "(empty body)"


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (a number or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _redact(text: str, secret: str | None) -> str:
    """A server that echoes the key (or part of it) must not get it into our messages."""
    return text.replace(secret, "***") if secret else text

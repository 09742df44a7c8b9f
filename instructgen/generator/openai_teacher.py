"""The `openai` teacher: any OpenAI-compatible server (OpenAI, vLLM's server, llama.cpp, TGI, our `serve.py`).

String prompts go to `/completions`, message lists to `/chat/completions`, one request per prompt, at most
`max_concurrency` in flight, results in the caller's order. Timeouts, connection errors, 429 and 5xx are retried
with exponential backoff and jitter (a Retry-After header is honoured, up to `max_backoff_s`); other 4xx fail at
once with the server's message. The API key comes from the environment only and goes out only as a Bearer
header: it is never logged, never put in an exception (a server echoing it is redacted) and never part of `name`
(which lands in provenance). A URL holding credentials (`user:password@`, `?api_key=`) is refused as a spec
error, before anything is written, without repeating them (`instructgen.secrets`).

Cancelling: workers are daemon threads and every wait is on the call's cancel flag, so a failed request, Ctrl-C
or any exception in the caller's thread stops the call at once: queued prompts are never sent, retries stop, and
in-flight sockets are shut down (the server sees the client go and can stop generating). Standard library only:
http.client with pooled keep-alive connections; no proxies.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import random
import socket
import ssl
import threading
import time
from typing import Any, Sequence
from urllib.parse import urlsplit

from ..secrets import redact, redact_url, url_secret_problem, userinfo_in
from .teachers import Completion, Prompt, Sampling, TeacherSpecError, cut_at_stop

log = logging.getLogger(__name__)

SPEC_FORM = "openai:BASE_URL@MODEL (e.g. openai:http://127.0.0.1:8000/v1@my-model)"
MAX_API_STOPS = 4  # the OpenAI API rejects more than 4 stop strings; the rest are cut client-side


class TeacherRequestError(RuntimeError):
    """A request failed for good: a 4xx other than 429, a bad response, or every attempt used up."""


def parse_openai_spec(spec: str, key_env: str = "OPENAI_API_KEY") -> tuple[str, str]:
    """Split `BASE_URL@MODEL` (an `openai:` prefix is allowed) into (base_url without trailing /, model).

    Credentials are looked for before the split at the model's `@` (`http://admin:4242@127.0.0.1:9/v1` has
    no model: it is a password, not a host and a model); a message never repeats them, and shows the URL only
    in its redacted form. A query is kept (`?api-version=...`) unless a parameter holds a secret."""
    rest = spec[len("openai:"):] if spec.startswith("openai:") else spec
    if userinfo_in(rest):
        raise TeacherSpecError(f"openai teacher spec: credentials in the URL (user:password@) are not accepted; "
                               f"put the key in ${key_env}. Accepted form: {SPEC_FORM}")
    url, sep, model = rest.rpartition("@")
    url = url.rstrip("/")
    problem, shown = None, f" 'openai:{redact_url(rest)}'"
    if not sep or not model.strip() or not url:
        problem = "expected BASE_URL@MODEL"
    elif url_secret_problem(url, key_env):
        problem, shown = url_secret_problem(url, key_env), ""
    else:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problem = f"'{redact_url(url)}' is not an http(s) URL"
        else:
            try:
                parts.port  # noqa: B018  (raises on a bad port)
            except ValueError:
                problem, shown = "bad port in the base URL (a number 1-65535)", ""  # it may be a password
    if problem:
        raise TeacherSpecError(f"openai teacher spec{shown}: {problem}. Accepted form: {SPEC_FORM}")
    return url, model.strip()


class _Call:
    """One `generate` call: its cancel flag and the connections it has in flight, cut when it is cancelled."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.lock = threading.Lock()
        self.conns: set[http.client.HTTPConnection] = set()

    def cancel(self) -> None:
        # The flag first, then the sockets: a worker checks the flag once its socket exists, so none is missed.
        self.cancelled.set()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            sock = c.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv; close() alone does not
                except OSError:
                    pass


class OpenAITeacher:
    """Generate through an OpenAI-compatible HTTP API; results come back in the caller's order."""

    def __init__(self, base_url: str, model: str, max_concurrency: int = 8, timeout_s: float = 300.0,
                 max_attempts: int = 6, backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 api_key_env: str | None = None, batch_size: int | None = None):
        # batch_size is the caller's prompts per generate() call; concurrency is what the server sees.
        env = api_key_env or "OPENAI_API_KEY"
        problem = url_secret_problem(base_url, env)
        if problem:
            raise TeacherSpecError(f"openai teacher base URL: {problem}")
        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/")
        self._query = f"?{parts.query}" if parts.query else ""  # e.g. ?api-version=...; never a secret
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self.base_url = f"{self._origin}{self._prefix}{self._query}"
        self.model = model
        self.name = f"openai:{self.base_url}@{model}"
        self.max_concurrency = max(1, int(max_concurrency))
        self.timeout_s, self.max_attempts = float(timeout_s), max(1, int(max_attempts))
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max_backoff_s)
        self.batch_size = batch_size
        if api_key_env and not os.environ.get(api_key_env):
            raise TeacherSpecError(f"api_key_env: environment variable {api_key_env} is not set")
        self._api_key = os.environ.get(env) or None  # local servers need no key
        self._pool: list[http.client.HTTPConnection] = []
        self._pool_lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0}
        self._stats_lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: str, **kw) -> "OpenAITeacher":
        url, model = parse_openai_spec(spec, kw.get("api_key_env") or "OPENAI_API_KEY")
        return cls(url, model, **kw)

    def __repr__(self) -> str:  # never show the key
        return f"OpenAITeacher({self.name!r}, max_concurrency={self.max_concurrency})"

    # -- public API ---------------------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Completion]:
        """One completion per prompt, in order. The first request that fails for good cancels the rest; so
        does an exception in the calling thread (Ctrl-C), which is re-raised once the call is cancelled."""
        if not prompts:
            return []
        call = _Call()
        out: list[Completion | None] = [None] * len(prompts)
        errors: list[BaseException] = []
        todo = list(range(len(prompts)))[::-1]  # popped from the end: sent in the caller's order
        left = [len(prompts)]
        finished = threading.Event()

        def work() -> None:
            while not call.cancelled.is_set():
                with call.lock:
                    if not todo:
                        return
                    i = todo.pop()
                try:
                    c = self._one(prompts[i], sampling, call)
                except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                    with call.lock:
                        errors.append(e)  # the first one is the cause; later ones are "cancelled"
                    call.cancel()
                    finished.set()
                    return
                with call.lock:
                    out[i] = c
                    left[0] -= 1
                    if not left[0]:
                        finished.set()

        try:
            # Daemon threads: a process that is exiting (Ctrl-C) never waits for a request to end.
            for k in range(min(self.max_concurrency, len(prompts))):
                threading.Thread(target=work, name=f"openai-teacher-{k}", daemon=True).start()
            while not finished.wait(0.1):  # short waits: Ctrl-C is seen even when a worker thread took SIGINT
                pass
        except BaseException:
            call.cancel()
            raise
        if errors:
            raise errors[0]
        return out  # type: ignore[return-value]

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

    def _one(self, prompt: Prompt, s: Sampling, call: _Call) -> Completion:
        path, body = self.request_body(prompt, s)
        data = self._post(path, body, call)
        try:
            c = self.to_completion(data, s.stop, chat=path == "/chat/completions", where=self._url(path))
        except TeacherRequestError as e:  # it quotes the body, which may echo the key
            raise TeacherRequestError(redact(str(e), self._api_key)) from None
        self._count(prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens)
        return c

    def _url(self, path: str) -> str:
        """The endpoint as messages show it (redacted, though a base URL with a secret is refused anyway)."""
        return redact_url(f"{self._origin}{self._prefix}{path}{self._query}")

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
            if not isinstance(text, (str, type(None))):
                raise TypeError
            text, hit_stop = cut_at_stop(text or "", [x for x in stops if x])
            finish = "length" if choice.get("finish_reason") == "length" and not hit_stop else "stop"
            usage = data.get("usage") or {}
            return Completion(text=text, finish_reason=finish, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                              completion_tokens=int(usage.get("completion_tokens") or 0))
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise TeacherRequestError(f"{where}: unexpected response shape (no choices[0]"
                                      f"{'.message.content' if chat else '.text'} string, or bad usage): "
                                      f"{str(data)[:200]}") from None

    # -- HTTP with retries --------------------------------------------------------------------------------

    def _post(self, path: str, body: dict, call: _Call) -> Any:
        url = self._url(path)
        payload = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        cancelled = f"{url}: cancelled (another request failed, or the run was interrupted)"
        last = "no attempt made"
        for attempt in range(1, self.max_attempts + 1):
            if call.cancelled.is_set():
                raise TeacherRequestError(cancelled)
            retry_after = None
            self._count(requests=1)
            try:
                status, resp_headers, raw = self._send(self._prefix + path + self._query, payload, headers, call)
            except (OSError, http.client.HTTPException) as e:  # timeouts, refused/reset connections, bad HTTP
                if call.cancelled.is_set():  # our own shutdown of the socket, not the server's fault
                    raise TeacherRequestError(cancelled) from None
                last = redact(f"{type(e).__name__}: {e}", self._api_key)
            else:
                if 200 <= status < 300:
                    try:
                        return json.loads(raw)
                    except ValueError:
                        raise TeacherRequestError(f"{url}: HTTP {status} but the body is not JSON: "
                                                  f"{redact(raw[:200].decode('utf-8', 'replace'), self._api_key)}"
                                                  ) from None
                message = redact(_server_message(raw), self._api_key)
                if status != 429 and status < 500:
                    raise TeacherRequestError(f"{url}: HTTP {status}: {message}")
                last = f"HTTP {status}: {message}"
                retry_after = _retry_after(resp_headers.get("Retry-After"))
            if attempt == self.max_attempts:
                break
            delay = self._delay(attempt, retry_after)
            self._count(retries=1)
            log.warning("%s: %s; retry %d/%d in %.1fs", url, last, attempt, self.max_attempts - 1, delay)
            if call.cancelled.wait(delay):  # a retry wait ends the moment the call is cancelled
                raise TeacherRequestError(cancelled)
        raise TeacherRequestError(f"{url}: gave up after {self.max_attempts} attempts; last: {last}")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (half fixed, half random), or the server's Retry-After (capped)."""
        if retry_after is not None:
            return min(retry_after, self.max_backoff_s)
        d = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return d / 2 + random.uniform(0, d / 2)

    def _send(self, path: str, payload: bytes, headers: dict, call: _Call) -> tuple[int, Any, bytes]:
        conn, reused = self._connection()
        try:
            return self._exchange(conn, path, payload, headers, call)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            if not reused or call.cancelled.is_set():
                raise
            # A pooled keep-alive connection the server had closed: redo once on a fresh one, not counted.
            return self._exchange(self._connection(fresh=True)[0], path, payload, headers, call)

    def _exchange(self, conn: http.client.HTTPConnection, path: str, payload: bytes, headers: dict,
                  call: _Call) -> tuple[int, Any, bytes]:
        """One request and its whole response on `conn`, which the call can cut while it is in flight."""
        with call.lock:
            call.conns.add(conn)
        try:
            if conn.sock is None:
                conn.connect()  # apart from the request, so a call cancelled meanwhile sends nothing
            if call.cancelled.is_set():
                raise ConnectionAbortedError("cancelled")
            conn.request("POST", path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except BaseException:
            conn.close()
            raise
        finally:
            with call.lock:
                call.conns.discard(conn)
        if resp.will_close or call.cancelled.is_set():  # a socket the call may have shut down is not reused
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

"""Serve any of our teachers over a small OpenAI-compatible HTTP API (stdlib `http.server` and threads).

    python -m instructgen.generator.serve --teacher smollm2-135m --port 8000
    gen instructions --teacher openai:http://127.0.0.1:8000/v1@smollm2-135m --num 20 --out runs/x

Endpoints: POST /v1/completions (prompt: a string or a list of strings), POST /v1/chat/completions (messages),
GET /v1/models, GET /health. Non-streaming, n=1. A single worker thread owns the teacher (so a non-thread-safe
model is fine) and forms batches of at most --batch-size prompts from every request waiting, round-robin across
requests, so one request of many prompts cannot starve the others; prompts of unseeded requests that share
their sampling settings are generated together. Which requests share a batch depends on arrival timing, so
with sampling on, outputs are reproducible only as far as the teacher's batching is; a request with a `seed`
is never batched with another request, so it does not depend on other clients. Binds 127.0.0.1 by default;
with --api-key-env VAR the server requires `Authorization: Bearer $VAR`.

Limits (see `Limits`; each a `gen serve` flag): request body size, prompts per request, stop strings per request
and their length, max_tokens, and prompts waiting for the teacher. A request beyond a per-request limit gets
HTTP 400 (413 for the body) with an OpenAI-style JSON error naming the field and the limit; when the queue is
full, 503 with Retry-After. Every client error is a 4xx with a JSON body; a 500 means a server fault and
carries no traceback. Over ~400 lines: request validation, the scheduler and the HTTP layer are one server.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Sequence

from .teachers import Completion, Prompt, Sampling, Teacher

log = logging.getLogger(__name__)

# Request fields we cannot honour: rejected with 400 unless they carry their default value.
UNSUPPORTED = {"stream": (None, False), "n": (None, 1), "best_of": (None, 1), "echo": (None, False),
               "logprobs": (None, False, 0), "suffix": (None, ""), "frequency_penalty": (None, 0, 0.0),
               "logit_bias": (None, {}), "tools": (None, []), "top_logprobs": (None, 0)}
ROLES = ("system", "developer", "user", "assistant", "tool")  # OpenAI's; a chat template may reject others
MAX_SEED = 2**63 - 1  # int64, as OpenAI's API; torch.manual_seed takes up to 2**64 - 1 after our offsets
LISTEN_BACKLOG = 1024  # socketserver's default of 5 resets connections beyond the 5th that arrive at once
IDLE_TIMEOUT_S = 60.0  # a connection that sends nothing for this long (idle keep-alive, stalled body) is closed
RETRY_AFTER_S = 1  # told to clients when the queue is full; OpenAITeacher honours it
DRAIN_BYTES = 64 << 20  # a refused body is read and dropped up to this much: the client gets its answer, no reset


@dataclass(frozen=True)
class Limits:
    """What the server accepts; beyond a per-request limit a request gets 400 naming the field and the limit."""

    max_body_bytes: int = 1 << 20  # 1 MiB: 64 prompts of ~4,000 words; larger bodies get 413
    max_prompts: int = 64  # prompts in one /v1/completions request
    max_stops: int = 16  # OpenAI allows 4; transformers preprocesses the vocabulary per stop set (~1 s for 16)
    max_stop_chars: int = 64  # characters in one stop string
    max_tokens: int = 4096  # the most max_tokens a request may ask for (Self-Instruct uses 1,024)
    max_queue: int = 1024  # prompts waiting for the teacher, all requests together; beyond it 503 + Retry-After

    def check(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.max_queue < self.max_prompts:
            raise ValueError(f"--max-queue ({self.max_queue}) must be at least --max-prompts ({self.max_prompts}), "
                             f"or a full-size request could never be queued")


class RequestError(Exception):
    """A request we answer with an error status and an OpenAI-style JSON error body."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status}}


def _show(v: Any) -> str:
    """A client's value in a message, cut short: a request may hold megabytes in one field."""
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def _number(body: dict, key: str, default: float, lo: float, hi: float, lo_open: bool = False) -> float:
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo < v if lo_open else lo <= v) or v > hi:
        raise RequestError(400, f"'{key}' must be a number in {'(' if lo_open else '['}{lo}, {hi}], got {_show(v)}",
                           param=key)
    return float(v)


def _text(value: str, where: str, param: str) -> str:
    """A string the teacher can encode: a lone surrogate (legal in JSON, not in UTF-8) is the client's error."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(400, f"'{where}' is not valid Unicode (it holds a lone surrogate)", param=param) from None
    return value


def _too_many(what: str, n: int, limit: int, flag: str, param: str) -> RequestError:
    return RequestError(400, f"'{param}' has {n} {what}; this server allows at most {limit} ({flag})", param=param)


def parse_request(body: Any, chat: bool, model_name: str, default_max_tokens: int,
                  limits: Limits = Limits()) -> tuple[list[Prompt], Sampling]:
    """Validate a (chat) completions request body into prompts and Sampling (pure); RequestError on bad input."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str):
        raise RequestError(400, f"'model' must be a string (this server serves {model_name!r}), got {_show(model)}",
                           param="model")
    if model != model_name:
        raise RequestError(404, f"model {_show(model)} does not exist; this server serves {model_name!r}",
                           "model_not_found", param="model")
    for key, allowed in UNSUPPORTED.items():
        if body.get(key) not in allowed:
            raise RequestError(400, f"'{key}'={_show(body.get(key))} is not supported by this server", param=key)
    if chat:
        prompts: list[Prompt] = [_messages(body.get("messages"))]
    else:
        p = body.get("prompt")
        if isinstance(p, str):
            p = [p]
        elif not (isinstance(p, list) and p and all(isinstance(x, str) for x in p)):
            raise RequestError(400, "'prompt' must be a string or a non-empty list of strings (token ids "
                                    "are not supported)", param="prompt")
        if len(p) > limits.max_prompts:
            raise _too_many("prompts", len(p), limits.max_prompts, "--max-prompts", "prompt")
        for i, x in enumerate(p):
            where = "prompt" if len(p) == 1 else f"prompt[{i}]"
            if not x:
                raise RequestError(400, f"'{where}' is empty; there is nothing to complete", param="prompt")
            _text(x, where, "prompt")
        prompts = list(p)
    key = "max_completion_tokens" if chat and body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = body.get(key)
    if max_tokens is None:
        max_tokens = min(default_max_tokens, limits.max_tokens)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise RequestError(400, f"'{key}' must be a positive integer, got {_show(max_tokens)}", param=key)
    if max_tokens > limits.max_tokens:
        raise RequestError(400, f"'{key}' is {_show(max_tokens)}; this server allows at most {limits.max_tokens} "
                                f"(--max-tokens)", param=key)
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    elif not (isinstance(stop, list) and all(isinstance(x, str) for x in stop)):
        raise RequestError(400, f"'stop' must be a string or a list of strings, got {_show(stop)}", param="stop")
    for i, s in enumerate(stop):
        if len(s) > limits.max_stop_chars:
            raise RequestError(400, f"'stop[{i}]' has {len(s)} characters; this server allows at most "
                                    f"{limits.max_stop_chars} (--max-stop-chars)", param="stop")
        _text(s, f"stop[{i}]", "stop")
    stop = tuple(dict.fromkeys(s for s in stop if s))  # what the teacher checks: each distinct one once
    if len(stop) > limits.max_stops:
        raise _too_many("stop strings", len(stop), limits.max_stops, "--max-stops", "stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
        raise RequestError(400, f"'seed' must be an integer in [0, 2**63-1], got {_show(seed)}", param="seed")
    sampling = Sampling(temperature=_number(body, "temperature", 1.0, 0.0, 2.0),  # OpenAI's defaults
                        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True),
                        max_new_tokens=max_tokens,
                        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
                        stop=stop, seed=seed)
    return prompts, sampling


def _messages(msgs: Any) -> list[dict[str, str]]:
    if not isinstance(msgs, list) or not msgs:
        raise RequestError(400, "'messages' must be a non-empty list of {role, content} objects", param="messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise RequestError(400, f"messages[{i}] must be an object whose 'role' is one of {', '.join(ROLES)}",
                               param="messages")
        content = m.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise RequestError(400, f"messages[{i}].content: only text parts are supported", param="messages")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise RequestError(400, f"messages[{i}].content must be a string", param="messages")
        out.append({"role": m["role"], "content": _text(content, f"messages[{i}].content", "messages")})
    if not any(m["content"] for m in out):
        raise RequestError(400, "every message in 'messages' is empty; there is nothing to answer", param="messages")
    return out


def response_body(completions: Sequence[Completion], chat: bool, model_name: str) -> dict[str, Any]:
    """An OpenAI-shaped (chat) completions response (pure apart from id and time)."""
    if chat:
        choices = [{"index": i, "message": {"role": "assistant", "content": c.text}, "finish_reason": c.finish_reason}
                   for i, c in enumerate(completions)]
    else:
        choices = [{"index": i, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None}
                   for i, c in enumerate(completions)]
    prompt = sum(c.prompt_tokens for c in completions)
    gen = sum(c.completion_tokens for c in completions)
    return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
            "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
            "model": model_name, "choices": choices,
            "usage": {"prompt_tokens": prompt, "completion_tokens": gen, "total_tokens": prompt + gen}}


@dataclass(eq=False)  # compared and hashed by identity: two requests may be equal
class _Job:
    """One request: its prompts are handed to the teacher in pieces, `taken` of them so far."""

    prompts: list[Prompt]
    sampling: Sampling
    arrived: float = field(default_factory=time.monotonic)
    taken: int = 0
    answered: int = 0
    results: list = field(default_factory=list)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.results = [None] * len(self.prompts)
        s = self.sampling
        # a seeded request runs alone (its own key), so its samples do not depend on other clients
        self.alone = s.seed is not None
        self.key = self if self.alone else (s.temperature, s.top_p, s.max_new_tokens, s.presence_penalty, s.stop)

    @property
    def left(self) -> int:
        return len(self.prompts) - self.taken


class _Batcher:
    """One worker thread owns the teacher and forms fair batches from every waiting request.

    The request at the head of a round-robin line picks the sampling settings; the batch then takes one prompt
    at a time from each waiting request with the same settings, in line order, up to `max_batch`, and the
    requests served go to the back of the line. So a new request joins the next batch of its settings and
    waits for at most one batch per other setting ahead of it, however many prompts those requests hold. A
    head waits up to `wait_s` after its arrival for more requests to fill the batch.
    """

    def __init__(self, teacher: Teacher, max_batch: int, wait_s: float, max_queue: int = Limits.max_queue):
        self.teacher, self.max_batch, self.wait_s, self.max_queue = teacher, max_batch, wait_s, max_queue
        self.cond = threading.Condition()
        self.line: deque[_Job] = deque()
        self.queued = 0  # prompts not yet handed to the teacher
        self.closed = False
        self.batches: list[int] = []  # prompts per generate call, for tests and stats
        self.thread = threading.Thread(target=self._loop, name="teacher-batcher", daemon=True)
        self.thread.start()

    def submit(self, prompts: list[Prompt], sampling: Sampling) -> list[Completion]:
        job = _Job(list(prompts), sampling)
        with self.cond:
            if self.closed:
                raise RequestError(503, "the server is shutting down", "server_error")
            if self.queued + len(job.prompts) > self.max_queue:
                raise RequestError(503, f"the server is busy ({self.queued} prompts waiting; at most "
                                        f"{self.max_queue}, --max-queue); retry after {RETRY_AFTER_S} s",
                                   "server_busy", headers={"Retry-After": str(RETRY_AFTER_S)})
            self.line.append(job)
            self.queued += len(job.prompts)
            self.cond.notify_all()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.results

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            with self.cond:
                batch = self._next_batch()
            if batch is None:
                return
            self._run(batch)

    def _next_batch(self) -> list[tuple[_Job, int]] | None:
        """Wait for work, then take the next fair batch (under the lock); None once closed."""
        while True:
            while not self.line and not self.closed:
                self.cond.wait()
            if self.closed:
                for job in list(self.line):
                    self._fail(job, RequestError(503, "the server is shutting down", "server_error"))
                self.line.clear()
                return None
            head = self.line[0]
            ready = sum(j.left for j in self.line if j.key == head.key)
            wait = head.arrived + self.wait_s - time.monotonic()
            if ready >= self.max_batch or wait <= 0 or head.alone:
                break
            self.cond.wait(wait)
        members = [j for j in self.line if j.key == head.key]
        batch: list[tuple[_Job, int]] = []
        while len(batch) < self.max_batch and any(j.left for j in members):
            for j in members:
                if j.left and len(batch) < self.max_batch:
                    batch.append((j, j.taken))
                    j.taken += 1
        self.queued -= len(batch)
        served = dict.fromkeys(j for j, _ in batch)  # to the back of the line, in the order they were served
        self.line = deque([j for j in self.line if j not in served] + [j for j in served if j.left])
        return batch

    def _run(self, batch: list[tuple[_Job, int]]) -> None:
        jobs = list(dict.fromkeys(j for j, _ in batch))
        sampling = jobs[0].sampling
        if sampling.seed is not None:  # one job, consecutive prompts: each piece its own seed, as one call would
            sampling = replace(sampling, seed=sampling.seed + batch[0][1])
        prompts = [j.prompts[i] for j, i in batch]
        try:
            outs = self.teacher.generate(prompts, sampling)
            if len(outs) != len(prompts):
                raise RuntimeError(f"the teacher returned {len(outs)} completions for {len(prompts)} prompts")
            self.batches.append(len(prompts))
        except Exception as e:
            if len(jobs) > 1:  # run each request's part alone, so one request's bad input fails only itself
                log.warning("teacher failed on a batch of %d prompts from %d requests (%s: %s); retrying each "
                            "request alone", len(prompts), len(jobs), type(e).__name__, e)
                for j in jobs:
                    self._run([(jj, i) for jj, i in batch if jj is j])
                return
            log.exception("teacher failed on a batch of %d prompts", len(prompts))
            with self.cond:
                self._fail(jobs[0], e)
            return
        for (j, i), out in zip(batch, outs):
            j.results[i] = out
            j.answered += 1
            if j.answered == len(j.prompts) and j.error is None:
                j.done.set()

    def _fail(self, job: _Job, error: BaseException) -> None:
        """Fail a request (under the lock): its prompts not yet taken leave the queue."""
        if job.error is None:
            job.error = error
            self.queued -= job.left
            job.taken = len(job.prompts)
            if job in self.line:
                self.line.remove(job)
            job.done.set()


class _HTTPServer(ThreadingHTTPServer):
    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        e = sys.exc_info()[1]
        if isinstance(e, OSError):  # a client that went away or stalled: not a server fault
            log.debug("%s: connection dropped: %s", client_address, e)
        else:
            log.exception("error while serving %s", client_address)


class TeacherServer:
    """An OpenAI-compatible server for `teacher`; `with TeacherServer(t) as srv: srv.url` -> '.../v1'."""

    def __init__(self, teacher: Teacher, model_name: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 max_batch: int = 16, batch_wait_s: float = 0.02, api_key_env: str | None = None,
                 default_max_tokens: int = 16, chat_default_max_tokens: int = 1024, limits: Limits = Limits()):
        limits.check()
        self.teacher, self.limits = teacher, limits
        default = teacher.name.split(":", 1)[-1]  # transformers:smollm2-135m -> smollm2-135m
        if teacher.name.startswith("openai:"):  # openai:http://host/v1@model -> model
            default = default.rsplit("@", 1)[-1]
        self.model_name = model_name or default
        self.default_max_tokens = default_max_tokens  # OpenAI's completions default
        self.chat_default_max_tokens = chat_default_max_tokens
        self._api_key = None
        if api_key_env:
            self._api_key = os.environ.get(api_key_env)
            if not self._api_key:
                raise ValueError(f"--api-key-env: environment variable {api_key_env} is not set")
        self.httpd = _HTTPServer((host, port), _Handler)  # binds first: a busy port leaves no thread behind
        self.httpd.app = self  # type: ignore[attr-defined]
        self.batcher = _Batcher(teacher, max_batch, batch_wait_s, limits.max_queue)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "TeacherServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="teacher-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
        self.httpd.server_close()
        self.batcher.close()

    def __enter__(self) -> "TeacherServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def authorized(self, header: str | None) -> bool:
        if not self._api_key:
            return True
        return hmac.compare_digest((header or "").encode(), f"Bearer {self._api_key}".encode())

    def handle(self, path: str, body: Any) -> dict[str, Any]:
        chat = path == "/v1/chat/completions"
        prompts, sampling = parse_request(body, chat, self.model_name,
                                          self.chat_default_max_tokens if chat else self.default_max_tokens,
                                          self.limits)
        try:
            outs = self.batcher.submit(prompts, sampling)
        except RequestError:
            raise
        except Exception as e:
            raise RequestError(500, f"teacher failed: {type(e).__name__}: {str(e)[:300]}", "server_error") from None
        return response_body(outs, chat, self.model_name)


def _route(path: str) -> str:
    return path.partition("?")[0][:200]  # never the query string: it may hold a key


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    server_version = "instructgen-serve"
    timeout = IDLE_TIMEOUT_S

    def log_message(self, fmt: str, *args) -> None:  # request lines only (never headers), at debug level
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(data).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(raw)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own refusals (bad request line, oversized headers, unknown method) as JSON too."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # an unparsable request line: answer with a status line anyway
            self.request_version = "HTTP/1.0"
        try:
            phrase = message or HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._send(code, RequestError(code, phrase).body())

    def do_GET(self) -> None:
        app: TeacherServer = self.server.app  # type: ignore[attr-defined]
        if self.path == "/health":
            self._send(200, {"status": "ok"})
        elif self.path == "/v1/models":
            if not app.authorized(self.headers.get("Authorization")):
                e = RequestError(401, "missing or wrong API key", "authentication_error")
                return self._send(e.status, e.body())
            self._send(200, {"object": "list", "data": [{"id": app.model_name, "object": "model",
                                                         "owned_by": "instructgen"}]})
        else:
            self._send(404, RequestError(404, f"no route GET {_route(self.path)}", "not_found").body())

    def do_POST(self) -> None:
        app: TeacherServer = self.server.app  # type: ignore[attr-defined]
        unread = False  # a body left unread: drained after the answer, so the client is not reset
        try:
            length = self.headers.get("Content-Length", "")
            if "Transfer-Encoding" in self.headers or not re.fullmatch(r"[0-9]{1,18}", length.strip()):
                unread = True
                raise RequestError(411, "a Content-Length header is required (chunked bodies are not supported)")
            if int(length) > app.limits.max_body_bytes:
                unread = True
                raise RequestError(413, f"the request body has {int(length)} bytes; this server allows at most "
                                        f"{app.limits.max_body_bytes} (--max-body-bytes)")
            try:
                raw = self.rfile.read(int(length))
            except TimeoutError:
                self.close_connection = True
                raise RequestError(408, f"the request body did not arrive within {IDLE_TIMEOUT_S:.0f} s") from None
            if len(raw) < int(length):
                self.close_connection = True
                raise RequestError(400, f"the request body ended after {len(raw)} of {length} bytes")
            if self.path not in ("/v1/completions", "/v1/chat/completions"):
                raise RequestError(404, f"no route POST {_route(self.path)}", "not_found")
            if not app.authorized(self.headers.get("Authorization")):
                raise RequestError(401, "missing or wrong API key", "authentication_error")
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError) as e:  # RecursionError: nesting too deep for the parser
                raise RequestError(400, f"the request body is not JSON: {str(e)[:200]}") from None
            status, data, headers = 200, app.handle(self.path, body), {}
        except RequestError as e:
            status, data, headers = e.status, e.body(), e.headers
        except Exception:  # a bug of ours: logged here with its traceback, a plain 500 for the client
            log.exception("internal error on POST %s", self.path)
            status, data, headers = 500, RequestError(500, "internal server error", "server_error").body(), {}
        if unread:
            self.close_connection = True
        self._send(status, data, headers)
        if unread:
            self._drain()

    def _drain(self) -> None:
        """Read and drop what the client still sends (up to DRAIN_BYTES or the idle timeout), then close."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            got, deadline = 0, time.monotonic() + IDLE_TIMEOUT_S
            while got < DRAIN_BYTES and time.monotonic() < deadline:
                chunk = self.rfile.read1(1 << 16)
                if not chunk:
                    break
                got += len(chunk)
        except OSError:
            pass


LIMIT_FLAGS = {  # Limits field -> flag help
    "max_body_bytes": "largest request body in bytes (1 MiB); a larger one gets 413",
    "max_prompts": "prompts in one /v1/completions request",
    "max_stops": "stop strings in one request",
    "max_stop_chars": "characters in one stop string",
    "max_tokens": "the most max_tokens (max_completion_tokens) a request may ask for",
    "max_queue": "prompts waiting for the teacher, all requests together; beyond it 503 with Retry-After",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", default="smollm2-135m",
                   help="transformers:MODEL | vllm:MODEL | ... (default smollm2-135m)")
    p.add_argument("--name", help="model name clients send (default: the teacher's model, e.g. smollm2-135m)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--batch-size", type=int, default=16, help="most prompts generated together (default 16)")
    p.add_argument("--api-key-env", help="require `Authorization: Bearer $VAR` (the key is read from VAR)")
    g = p.add_argument_group("limits (a request beyond one gets HTTP 400 naming the field and the limit)")
    for name, text in LIMIT_FLAGS.items():
        default = getattr(Limits, name)
        g.add_argument(f"--{name.replace('_', '-')}", type=int, default=default, help=f"{text} (default {default})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m instructgen.generator.serve",
                                description="Serve a teacher over an OpenAI-compatible HTTP API.")
    add_arguments(p)
    return run(p.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Check the flags, build the teacher, then serve until Ctrl-C; bad input prints one line and returns 2."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ..cli import user_errors
    from .teachers import make_teacher, validate_spec
    prog = f"gen {args.command}" if getattr(args, "command", None) else "serve"
    try:
        limits = Limits(**{name: getattr(args, name) for name in LIMIT_FLAGS})
        limits.check()  # before the teacher loads: a bad flag fails in milliseconds
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be a positive integer, got {args.batch_size}")
        if not 0 <= args.port <= 65535:
            raise ValueError(f"--port must be in [0, 65535], got {args.port}")
        validate_spec(args.teacher)
        if args.api_key_env and not os.environ.get(args.api_key_env):
            raise ValueError(f"--api-key-env: environment variable {args.api_key_env} is not set")
        teacher = make_teacher(args.teacher, batch_size=args.batch_size)
        server = TeacherServer(teacher, args.name, args.host, args.port, max_batch=args.batch_size,
                               api_key_env=args.api_key_env, limits=limits)
    except (*user_errors(), ValueError, OSError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key_env:
        print(f"{prog}: warning: listening on {args.host} without --api-key-env; anyone who can reach it can "
              f"use it", file=sys.stderr)
    print(f"serving {teacher.name} as model '{server.model_name}' on {server.url} (Ctrl-C stops)", file=sys.stderr,
          flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
        server.batcher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Serve any of our teachers over a small OpenAI-compatible HTTP API (stdlib `http.server` and threads).

    python -m instructgen.generator.serve --teacher smollm2-135m --port 8000
    gen instructions --teacher openai:http://127.0.0.1:8000/v1@smollm2-135m --num 20 --out runs/x

Endpoints: POST /v1/completions (prompt: a string or a list of strings), POST /v1/chat/completions (messages),
GET /v1/models, GET /health. Non-streaming, n=1. Requests that arrive together and share their sampling settings
are generated as one batch (a single worker thread owns the teacher, so a non-thread-safe model is fine and
concurrent clients get batched throughput). Which requests share a batch depends on arrival timing, so with
sampling on, outputs are reproducible only as far as the teacher's batching is. Binds 127.0.0.1 by default; with
--api-key-env VAR the server requires `Authorization: Bearer $VAR`.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Sequence

from .teachers import Completion, Prompt, Sampling, Teacher

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024
# Request fields we cannot honour: rejected with 400 unless they carry their default value.
UNSUPPORTED = {"stream": (None, False), "n": (None, 1), "best_of": (None, 1), "echo": (None, False),
               "logprobs": (None, False, 0), "suffix": (None, ""), "frequency_penalty": (None, 0, 0.0),
               "logit_bias": (None, {}), "tools": (None, []), "top_logprobs": (None, 0)}


class RequestError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def _number(body: dict, key: str, default: float, lo: float, hi: float, lo_open: bool = False) -> float:
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo < v if lo_open else lo <= v) or v > hi:
        raise RequestError(400, f"'{key}' must be a number in {'(' if lo_open else '['}{lo}, {hi}], got {v!r}")
    return float(v)


def parse_request(body: Any, chat: bool, model_name: str, default_max_tokens: int) -> tuple[list[Prompt], Sampling]:
    """Validate a (chat) completions request body into prompts and Sampling (pure); RequestError on bad input."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    if body.get("model") != model_name:
        raise RequestError(404, f"model {body.get('model')!r} does not exist; this server serves {model_name!r}",
                           "model_not_found")
    for key, allowed in UNSUPPORTED.items():
        if body.get(key) not in allowed:
            raise RequestError(400, f"'{key}'={body.get(key)!r} is not supported by this server")
    if chat:
        prompts: list[Prompt] = [_messages(body.get("messages"))]
    else:
        p = body.get("prompt")
        if isinstance(p, str):
            prompts = [p]
        elif isinstance(p, list) and p and all(isinstance(x, str) for x in p):
            prompts = list(p)
        else:
            raise RequestError(400, "'prompt' must be a string or a non-empty list of strings (token ids are not "
                                    "supported)")
    max_tokens = body.get("max_completion_tokens") if chat and body.get("max_completion_tokens") is not None \
        else body.get("max_tokens")
    if max_tokens is None:
        max_tokens = default_max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise RequestError(400, f"'max_tokens' must be a positive integer, got {max_tokens!r}")
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    elif not (isinstance(stop, list) and all(isinstance(x, str) for x in stop)):
        raise RequestError(400, f"'stop' must be a string or a list of strings, got {stop!r}")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError(400, f"'seed' must be an integer, got {seed!r}")
    sampling = Sampling(temperature=_number(body, "temperature", 1.0, 0.0, 2.0),  # OpenAI's defaults
                        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True),
                        max_new_tokens=max_tokens,
                        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
                        stop=tuple(s for s in stop if s), seed=seed)
    return prompts, sampling


def _messages(msgs: Any) -> list[dict[str, str]]:
    if not isinstance(msgs, list) or not msgs:
        raise RequestError(400, "'messages' must be a non-empty list of {role, content} objects")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise RequestError(400, f"messages[{i}] must be an object with a string 'role'")
        content = m.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise RequestError(400, f"messages[{i}].content: only text parts are supported")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise RequestError(400, f"messages[{i}].content must be a string")
        out.append({"role": m["role"], "content": content})
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


@dataclass
class _Job:
    prompts: list[Prompt]
    sampling: Sampling
    done: threading.Event = field(default_factory=threading.Event)
    result: list[Completion] | None = None
    error: BaseException | None = None


class _Batcher:
    """One worker thread owns the teacher; jobs queued together with equal sampling become one generate call."""

    def __init__(self, teacher: Teacher, max_batch: int, wait_s: float):
        self.teacher, self.max_batch, self.wait_s = teacher, max_batch, wait_s
        self.q: queue.Queue[_Job | None] = queue.Queue()
        self.batches: list[int] = []  # prompts per generate call, for tests and stats
        self.thread = threading.Thread(target=self._loop, name="teacher-batcher", daemon=True)
        self.thread.start()

    def submit(self, prompts: list[Prompt], sampling: Sampling) -> list[Completion]:
        job = _Job(prompts, sampling)
        self.q.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def close(self) -> None:
        self.q.put(None)
        self.thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            job = self.q.get()
            if job is None:
                return
            jobs, stop = [job], False
            deadline = time.monotonic() + self.wait_s
            while sum(len(j.prompts) for j in jobs) < self.max_batch:
                try:
                    nxt = self.q.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
            groups: dict[tuple, list[_Job]] = {}
            for j in jobs:
                s = j.sampling
                groups.setdefault((s.temperature, s.top_p, s.max_new_tokens, s.presence_penalty, s.stop, s.seed),
                                  []).append(j)
            for group in groups.values():
                self._run(group)
            if stop:
                return

    def _run(self, group: list[_Job]) -> None:
        prompts = [p for j in group for p in j.prompts]
        try:
            outs = self.teacher.generate(prompts, group[0].sampling)
            self.batches.append(len(prompts))
            k = 0
            for j in group:
                j.result, k = outs[k:k + len(j.prompts)], k + len(j.prompts)
        except Exception as e:  # the teacher failed: every request in the batch gets a 500 with the reason
            log.exception("teacher failed on a batch of %d prompts", len(prompts))
            for j in group:
                j.error = e
        for j in group:
            j.done.set()


class TeacherServer:
    """An OpenAI-compatible server for `teacher`; `with TeacherServer(t) as srv: srv.url` -> '.../v1'."""

    def __init__(self, teacher: Teacher, model_name: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 max_batch: int = 16, batch_wait_s: float = 0.02, api_key_env: str | None = None,
                 default_max_tokens: int = 16, chat_default_max_tokens: int = 1024):
        self.teacher = teacher
        self.model_name = model_name or teacher.name.split(":", 1)[-1]
        self.default_max_tokens = default_max_tokens  # OpenAI's completions default
        self.chat_default_max_tokens = chat_default_max_tokens
        self._api_key = None
        if api_key_env:
            self._api_key = os.environ.get(api_key_env)
            if not self._api_key:
                raise ValueError(f"--api-key-env: environment variable {api_key_env} is not set")
        self.batcher = _Batcher(teacher, max_batch, batch_wait_s)
        self.httpd = ThreadingHTTPServer((host, port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.app = self  # type: ignore[attr-defined]
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
                                          self.chat_default_max_tokens if chat else self.default_max_tokens)
        try:
            outs = self.batcher.submit(prompts, sampling)
        except Exception as e:
            raise RequestError(500, f"teacher failed: {type(e).__name__}: {e}", "server_error") from None
        return response_body(outs, chat, self.model_name)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    server_version = "instructgen-serve"

    def log_message(self, fmt: str, *args) -> None:  # request lines only (never headers), at debug level
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, status: int, data: dict[str, Any]) -> None:
        raw = json.dumps(data).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, e: RequestError) -> None:
        self._send(e.status, {"error": {"message": e.message, "type": e.kind, "code": e.status}})

    def do_GET(self) -> None:
        app: TeacherServer = self.server.app  # type: ignore[attr-defined]
        if self.path == "/health":
            self._send(200, {"status": "ok"})
        elif self.path == "/v1/models":
            if not app.authorized(self.headers.get("Authorization")):
                return self._error(RequestError(401, "missing or wrong API key", "authentication_error"))
            self._send(200, {"object": "list", "data": [{"id": app.model_name, "object": "model",
                                                         "owned_by": "instructgen"}]})
        else:
            self._error(RequestError(404, f"no route GET {self.path}", "not_found"))

    def do_POST(self) -> None:
        app: TeacherServer = self.server.app  # type: ignore[attr-defined]
        try:
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self.close_connection = True
                raise RequestError(411, "a Content-Length header is required")
            if int(length) > MAX_BODY_BYTES:
                self.close_connection = True
                raise RequestError(413, f"request body over {MAX_BODY_BYTES} bytes")
            raw = self.rfile.read(int(length))
            if self.path not in ("/v1/completions", "/v1/chat/completions"):
                raise RequestError(404, f"no route POST {self.path}", "not_found")
            if not app.authorized(self.headers.get("Authorization")):
                raise RequestError(401, "missing or wrong API key", "authentication_error")
            try:
                body = json.loads(raw)
            except ValueError as e:
                raise RequestError(400, f"the request body is not JSON: {e}") from None
            self._send(200, app.handle(self.path, body))
        except RequestError as e:
            self._error(e)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", default="smollm2-135m",
                   help="transformers:MODEL | vllm:MODEL | ... (default smollm2-135m)")
    p.add_argument("--name", help="model name clients send (default: the teacher's model, e.g. smollm2-135m)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--batch-size", type=int, default=16, help="most prompts generated together (default 16)")
    p.add_argument("--api-key-env", help="require `Authorization: Bearer $VAR` (the key is read from VAR)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m instructgen.generator.serve",
                                description="Serve a teacher over an OpenAI-compatible HTTP API.")
    add_arguments(p)
    return run(p.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Build the teacher, then serve until Ctrl-C; bad input prints one line and returns 2."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ..cli import user_errors
    from .teachers import make_teacher, validate_spec
    try:
        validate_spec(args.teacher)
        if args.api_key_env and not os.environ.get(args.api_key_env):
            raise ValueError(f"--api-key-env: environment variable {args.api_key_env} is not set")
        teacher = make_teacher(args.teacher, batch_size=args.batch_size)
        server = TeacherServer(teacher, args.name, args.host, args.port, max_batch=args.batch_size,
                               api_key_env=args.api_key_env)
    except (*user_errors(), ValueError, OSError) as e:
        print(f"serve: error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key_env:
        print(f"serve: warning: listening on {args.host} without --api-key-env; anyone who can reach it can "
              f"use it", file=sys.stderr)
    print(f"serving {teacher.name} as model '{server.model_name}' on {server.url} (Ctrl-C stops)", file=sys.stderr)
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

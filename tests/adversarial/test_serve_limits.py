"""`gen serve` under load and bad requests (issue 9, class 8), over real HTTP on 127.0.0.1.

A fake teacher stands in for the model (orchestration only: limits, errors, queueing, fairness); the last tests
run a real `gen serve` process in front of one. Every client error must be a 4xx with an OpenAI-style JSON
error naming the field, never a 500 or a dropped connection; 50 clients at once get 200 or 503, never a reset;
one request of many prompts must not hold back a 1-prompt request.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from instructgen.generator import serve as serve_mod
from instructgen.generator.serve import Limits, TeacherServer
from instructgen.generator.teachers import Completion

GEN = [sys.executable, "-m", "instructgen"]


class SlowTeacher:
    """Answers `<prompt>|<max_new_tokens>`; `per_prompt` seconds per prompt, as a model's batch time grows with
    its size; records each call; `gate` (an Event) holds every call until set; fails on the prompt `poison`."""

    name = "fake:m"

    def __init__(self, per_prompt: float = 0.0, gate: threading.Event | None = None):
        self.per_prompt, self.gate = per_prompt, gate
        self.calls: list[list] = []
        self.lock = threading.Lock()

    def generate(self, prompts, sampling):
        with self.lock:
            self.calls.append(list(prompts))
        if self.gate is not None:
            self.gate.wait(10)
        if "poison" in prompts:
            raise RuntimeError("the model choked on a prompt")
        time.sleep(self.per_prompt * len(prompts))
        texts = [p if isinstance(p, str) else p[-1]["content"] for p in prompts]
        return [Completion(f"{t}|{sampling.max_new_tokens}", "length", 1, sampling.max_new_tokens) for t in texts]


def post(url: str, body, path: str = "/v1/completions", headers: dict | None = None, timeout: float = 20):
    """POST `body` (an object as JSON, or raw bytes); returns (status, headers, parsed JSON body)."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request("POST", path, body=raw, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, dict(resp.headers), json.loads(data)
    finally:
        conn.close()


def assert_error(status, data, want_status, param=None, *texts):
    """An OpenAI-style JSON error with the status, the field named and no traceback."""
    assert status == want_status, data
    err = data["error"]
    assert set(err) >= {"message", "type", "param", "code"} and err["code"] == want_status
    assert "Traceback" not in json.dumps(data)
    if param is not None:
        assert err["param"] == param, err
    for t in texts:
        assert t in err["message"], err


# -- limits: each gives 400 (413 for the body) naming the field and the limit --------------------------------

@pytest.mark.parametrize("body, param, texts", [
    ({"prompt": ["x"] * 10_000}, "prompt", ("10000 prompts", "at most 64", "--max-prompts")),
    ({"prompt": ["x"] * 65}, "prompt", ("65 prompts", "at most 64")),
    ({"prompt": "x", "stop": [f"s{i}" for i in range(1000)]}, "stop", ("1000 stop strings", "at most 16",
                                                                       "--max-stops")),
    ({"prompt": "x", "stop": ["a" * 65]}, "stop", ("stop[0]", "65 characters", "at most 64", "--max-stop-chars")),
    ({"prompt": "x", "max_tokens": 4097}, "max_tokens", ("4097", "at most 4096", "--max-tokens")),
    ({"prompt": "x", "max_tokens": 10**18}, "max_tokens", ("at most 4096",)),
])
def test_each_limit_gives_400_naming_the_field_and_the_limit(body, param, texts):
    t = SlowTeacher()
    with TeacherServer(t) as srv:
        t0 = time.monotonic()
        status, _, data = post(srv.url, {"model": "m", **body})
        assert time.monotonic() - t0 < 5  # 1,000 stop strings took 40 s for a 2-token answer
        assert_error(status, data, 400, param, *texts)
    assert t.calls == []


def test_chat_max_completion_tokens_is_capped_too():
    with TeacherServer(SlowTeacher()) as srv:
        status, _, data = post(srv.url, {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                         "max_completion_tokens": 5000}, path="/v1/chat/completions")
    assert_error(status, data, 400, "max_completion_tokens", "at most 4096")


def test_at_the_limits_a_request_is_served():
    t = SlowTeacher()
    with TeacherServer(t, max_batch=64) as srv:
        stops = [f"{i:02d}" + "x" * 62 for i in range(16)]
        status, _, data = post(srv.url, {"model": "m", "prompt": ["p"] * 64, "stop": stops, "max_tokens": 4096})
    assert status == 200 and len(data["choices"]) == 64
    assert t.calls == [["p"] * 64]


def test_limits_are_settable():
    lim = Limits(max_body_bytes=2000, max_prompts=2, max_stops=1, max_stop_chars=3, max_tokens=10, max_queue=2)
    with TeacherServer(SlowTeacher(), limits=lim) as srv:
        for body, param, text in [({"prompt": ["a", "b", "c"]}, "prompt", "at most 2"),
                                  ({"prompt": "a", "stop": ["x", "y"]}, "stop", "at most 1"),
                                  ({"prompt": "a", "stop": ["xxxx"]}, "stop", "at most 3"),
                                  ({"prompt": "a", "max_tokens": 11}, "max_tokens", "at most 10")]:
            assert_error(*post(srv.url, {"model": "m", **body})[::2], 400, param, text)
        assert_error(*post(srv.url, {"model": "m", "prompt": "a" * 2000})[::2], 413, None, "at most 2000",
                     "--max-body-bytes")
        status, _, data = post(srv.url, {"model": "m", "prompt": ["a", "b"], "stop": ["xyz"]})  # no max_tokens:
        assert status == 200 and data["choices"][0]["text"] == "a|10"  # the default is capped, not refused


def test_an_oversized_body_gets_413_as_json_not_a_reset():
    t = SlowTeacher()
    with TeacherServer(t) as srv:
        big = json.dumps({"model": "m", "prompt": "x" * (2 << 20)}).encode()  # 2 MiB, over the 1 MiB default
        status, headers, data = post(srv.url, big)
        assert_error(status, data, 413, None, f"{len(big)} bytes", "at most 1048576", "--max-body-bytes")
        assert post(srv.url, {"model": "m", "prompt": "ok"})[0] == 200  # still serving
    assert t.calls == [["ok"]]


# -- client errors: 4xx with a JSON body, never 500 --------------------------------------------------------

BAD = [
    ({"prompt": ""}, "prompt", "'prompt' is empty"),
    ({"prompt": ["a", ""]}, "prompt", "'prompt[1]' is empty"),
    ({"prompt": 5}, "prompt", "'prompt' must be a string"),
    ({"prompt": []}, "prompt", "'prompt' must be"),
    ({}, "prompt", "'prompt' must be"),
    ({"prompt": "\ud800"}, "prompt", "lone surrogate"),
    ({"prompt": "x", "n": "2"}, "n", "'n'='2'"),
    ({"prompt": "x", "n": 2.5}, "n", "'n'=2.5"),
    ({"prompt": "x", "temperature": "hot"}, "temperature", "'temperature' must be a number"),
    ({"prompt": "x", "top_p": [1]}, "top_p", "'top_p' must be a number"),
    ({"prompt": "x", "seed": 2**64}, "seed", "'seed' must be an integer in [0, 2**63-1]"),
    ({"prompt": "x", "seed": 10**300}, "seed", "'seed' must be an integer"),
    ({"prompt": "x", "seed": -1}, "seed", "'seed' must be an integer"),
    ({"prompt": "x", "seed": 1.5}, "seed", "'seed' must be an integer"),
    ({"prompt": "x", "seed": "7"}, "seed", "'seed' must be an integer"),
    ({"prompt": "x", "max_tokens": "5"}, "max_tokens", "'max_tokens' must be a positive integer"),
    ({"prompt": "x", "max_tokens": -1}, "max_tokens", "'max_tokens' must be a positive integer"),
    ({"prompt": "x", "stop": [1]}, "stop", "'stop' must be a string or a list of strings"),
    ({"prompt": "x", "stop": {"a": 1}}, "stop", "'stop' must be"),
    ({"prompt": "x", "stop": "\udfff"}, "stop", "lone surrogate"),
]
BAD_CHAT = [
    ({"messages": []}, "'messages' must be a non-empty list"),
    ({"messages": "hi"}, "'messages' must be a non-empty list"),
    ({"messages": [{"role": "user", "content": ""}]}, "every message in 'messages' is empty"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0] must be an object whose 'role'"),
    ({"messages": [{"role": "user"}]}, "messages[0].content must be a string"),
    ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content must be a string"),
    ({"messages": [1]}, "messages[0] must be an object"),
    ({"messages": [{"role": "user", "content": "\ud800"}]}, "lone surrogate"),
]


def test_every_client_error_is_a_4xx_with_the_field_named_and_the_server_goes_on():
    t = SlowTeacher()
    with TeacherServer(t) as srv:
        for body, param, text in BAD:
            assert_error(*post(srv.url, {"model": "m", **body})[::2], 400, param, text)
        for body, text in BAD_CHAT:
            assert_error(*post(srv.url, {"model": "m", **body}, "/v1/chat/completions")[::2], 400, "messages", text)
        assert_error(*post(srv.url, {"prompt": "x"})[::2], 400, "model", "'model' must be a string")
        assert_error(*post(srv.url, {"model": 7, "prompt": "x"})[::2], 400, "model")
        assert_error(*post(srv.url, {"model": "gpt-x", "prompt": "x"})[::2], 404, "model", "does not exist")
        for raw, text in [(b"{", "not JSON"), (b"\xff\xfe{}", "not JSON"), (b"", "not JSON"),
                          (b"[" * 200_000, "not JSON"),  # nesting too deep for the parser: was a dropped connection
                          (b'{"model": "m", "prompt": "x", "temperature": NaN}', "'temperature' must be a number"),
                          (b"[]", "must be a JSON object")]:
            assert_error(*post(srv.url, raw)[::2], 400, None, text)
        assert post(srv.url, {"model": "m", "prompt": "fine"})[0] == 200
    assert t.calls == [["fine"]]  # no bad request reached the teacher


def raw_exchange(url: str, data: bytes, half_close: bool = True) -> bytes:
    """Send raw bytes on one socket and read the whole answer."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


@pytest.mark.parametrize("request_bytes, status", [
    (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n", 411),  # no Content-Length
    (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411),
    (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n", 411),
    (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"model\"", 400),  # body cut short
    (b"DELETE /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (b"GARBAGE\r\n\r\n", 400),
])
def test_malformed_http_gets_a_json_error(request_bytes, status):
    with TeacherServer(SlowTeacher()) as srv:
        answer = raw_exchange(srv.url, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()) or head.startswith(f"HTTP/1.0 {status} ".encode()), answer
    assert json.loads(body)["error"]["code"] == status


# -- server faults: 500 with a reason, no traceback; one request's failure is not another's -------------------

def test_a_teacher_fault_fails_only_the_request_that_caused_it():
    t = SlowTeacher()
    with TeacherServer(t, max_batch=8, batch_wait_s=1.0) as srv:
        results = {}

        def go(key, prompt):
            results[key] = post(srv.url, {"model": "m", "prompt": prompt})

        threads = [threading.Thread(target=go, args=(k, p)) for k, p in [("bad", "poison"), ("good", "fine")]]
        for th in threads:
            th.start()
        for th in threads:
            th.join(20)
    assert len(t.calls[0]) == 2  # batched together, then retried alone
    status, _, data = results["good"]
    assert status == 200 and data["choices"][0]["text"] == "fine|16"
    assert_error(results["bad"][0], results["bad"][2], 500, None,
                 "teacher failed: RuntimeError: the model choked on a prompt")


def test_a_bug_in_the_server_is_a_plain_500_without_a_traceback(monkeypatch):
    def broken(*a, **kw):
        raise KeyError("secret internal detail")
    monkeypatch.setattr(serve_mod, "response_body", broken)
    with TeacherServer(SlowTeacher()) as srv:
        status, _, data = post(srv.url, {"model": "m", "prompt": "x"})
        assert_error(status, data, 500, None, "internal server error")
        assert "secret" not in json.dumps(data) and "KeyError" not in json.dumps(data)
        assert post(srv.url, {"model": "m", "prompt": "x"})[0] == 500  # and it keeps answering


# -- load: no resets, a bounded queue, fairness ---------------------------------------------------------------

def hammer(url: str, n: int, prompts_each: int = 1) -> list:
    """n clients connect at the same instant, each on its own connection; their statuses or exceptions."""
    out: list = []
    barrier = threading.Barrier(n)

    def go(i):
        barrier.wait()
        try:
            out.append(post(url, {"model": "m", "prompt": [f"c{i}"] * prompts_each}, timeout=30))
        except Exception as e:  # ConnectionResetError on the landed code
            out.append(e)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    return out


def test_fifty_concurrent_clients_all_get_200_no_reset():
    with TeacherServer(SlowTeacher(per_prompt=0.002)) as srv:
        results = hammer(srv.url, 50)
    assert Counter(r if isinstance(r, Exception) else r[0] for r in results) == {200: 50}


def test_a_full_queue_answers_503_with_retry_after_never_a_reset():
    lim = Limits(max_prompts=4, max_queue=8)
    with TeacherServer(SlowTeacher(per_prompt=0.01), max_batch=4, limits=lim) as srv:
        results = hammer(srv.url, 50, prompts_each=4)
    assert not [r for r in results if isinstance(r, Exception)]
    statuses = Counter(r[0] for r in results)
    assert set(statuses) == {200, 503} and statuses[200] >= 2
    for status, headers, data in results:
        if status == 503:
            assert headers["Retry-After"] == "1"
            assert_error(status, data, 503, None, "busy", "--max-queue")


def test_a_full_queue_is_retried_by_our_own_client():
    from instructgen.generator.openai_teacher import OpenAITeacher
    from instructgen.generator.teachers import Sampling
    gate = threading.Event()
    t = SlowTeacher(gate=gate)
    with TeacherServer(t, max_batch=1, limits=Limits(max_prompts=1, max_queue=1)) as srv:
        first = threading.Thread(target=post, args=(srv.url, {"model": "m", "prompt": "held"}))
        first.start()
        while not t.calls:
            time.sleep(0.01)
        second = threading.Thread(target=post, args=(srv.url, {"model": "m", "prompt": "queued"}))
        second.start()
        while srv.batcher.queued < 1:
            time.sleep(0.01)
        status, headers, _ = post(srv.url, {"model": "m", "prompt": "third"})
        assert status == 503 and headers["Retry-After"] == "1"
        threading.Timer(0.3, gate.set).start()
        [c] = OpenAITeacher(srv.url, "m", max_attempts=10, max_backoff_s=1).generate(["third"], Sampling())
        first.join(10)
        second.join(10)
    assert c.text == "third|1024"


@pytest.mark.parametrize("big_sampling", [{}, {"temperature": 0.5}], ids=["same-sampling", "other-sampling"])
def test_a_request_of_many_prompts_does_not_starve_a_small_one(big_sampling):
    t = SlowTeacher(per_prompt=0.01)  # a 64-prompt request: 16 batches of 4, ~0.7 s
    finished: list[str] = []
    with TeacherServer(t, max_batch=4) as srv:
        def go(name, prompts, extra):
            status, _, _ = post(srv.url, {"model": "m", "prompt": prompts, **extra})
            finished.append(f"{name}:{status}")

        big = threading.Thread(target=go, args=("big", [f"b{i}" for i in range(64)], big_sampling))
        big.start()
        while not t.calls:  # the big request is being generated
            time.sleep(0.005)
        small = threading.Thread(target=go, args=("small", ["s"], {}))
        small.start()
        small.join(20)
        big.join(20)
    assert finished == ["small:200", "big:200"]
    call = next(i for i, c in enumerate(t.calls) if "s" in c)
    assert call <= 2  # it waited for at most the batch running and one more of the big request
    assert all(len(c) <= 4 for c in t.calls) and sum(len(c) for c in t.calls) == 65


def test_a_seeded_request_runs_alone_and_its_pieces_get_distinct_seeds():
    seen = []

    class SeedTeacher(SlowTeacher):
        def generate(self, prompts, sampling):
            seen.append((list(prompts), sampling.seed))
            return super().generate(prompts, sampling)

    with TeacherServer(SeedTeacher(), max_batch=2, batch_wait_s=0.5) as srv:
        out = {}
        threads = [threading.Thread(target=lambda: out.setdefault("a", post(srv.url, {"model": "m", "seed": 5,
                                                                             "prompt": ["a0", "a1", "a2"]}))),
                   threading.Thread(target=lambda: out.setdefault("b", post(srv.url, {"model": "m",
                                                                             "prompt": ["b0"]})))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(20)
    assert out["a"][0] == out["b"][0] == 200
    assert sorted(seen) == [(["a0", "a1"], 5), (["a2"], 7), (["b0"], None)]


# -- a real `gen serve` process ---------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, text", [
    (["--max-prompts", "0"], "--max-prompts must be a positive integer, got 0"),
    (["--max-body-bytes", "-1"], "--max-body-bytes must be a positive integer"),
    (["--max-queue", "8"], "--max-queue (8) must be at least --max-prompts (64)"),
    (["--batch-size", "0"], "--batch-size must be a positive integer"),
    (["--port", "70000"], "--port must be in [0, 65535]"),
])
def test_bad_limit_flags_fail_at_once(flags, text):
    r = subprocess.run([*GEN, "serve", *flags], capture_output=True, text=True, timeout=30)
    [line] = r.stderr.strip().splitlines()  # one line, no traceback
    assert r.returncode == 2 and line.startswith(f"gen serve: error: {text}"), r.stderr


def test_help_documents_every_limit_and_its_default():
    r = subprocess.run([*GEN, "serve", "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    for flag, default in [("--max-body-bytes", "1048576"), ("--max-prompts", "64"), ("--max-stops", "16"),
                          ("--max-stop-chars", "64"), ("--max-tokens", "4096"), ("--max-queue", "1024")]:
        assert re.search(re.escape(flag) + r".*?\(default " + default, text), flag


def test_a_real_gen_serve_process_applies_its_flags_and_survives_50_clients():
    """`gen serve` in its own process, in front of a fake teacher reached over HTTP (no model is loaded)."""
    with TeacherServer(SlowTeacher(), model_name="fake") as upstream:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        proc = subprocess.Popen([*GEN, "serve", "--teacher", f"openai:{upstream.url}@fake", "--port", "0",
                                 "--max-prompts", "2", "--max-stops", "1"], stderr=subprocess.PIPE, text=True, env=env)
        try:
            line = proc.stderr.readline()
            m = re.search(r"on (http://127\.0\.0\.1:\d+/v1)", line)
            assert m, line
            url = m.group(1)
            assert_error(*post(url, {"model": "fake", "prompt": ["a", "b", "c"]})[::2], 400, "prompt",
                         "at most 2 (--max-prompts)")
            assert_error(*post(url, {"model": "fake", "prompt": "a", "stop": ["x", "y"]})[::2], 400, "stop",
                         "at most 1 (--max-stops)")
            assert_error(*post(url, {"model": "fake", "prompt": ""})[::2], 400, "prompt", "is empty")
            assert_error(*post(url, {"model": "fake", "prompt": "a", "seed": 2**70})[::2], 400, "seed")
            status, _, data = post(url, {"model": "fake", "prompt": ["a", "b"], "max_tokens": 3})
            assert status == 200 and [c["text"] for c in data["choices"]] == ["a|3", "b|3"]
            results = []
            barrier = threading.Barrier(50)

            def go(i):
                barrier.wait()
                try:
                    results.append(post(url, {"model": "fake", "prompt": f"c{i}"}, timeout=30)[0])
                except Exception as e:
                    results.append(e)

            threads = [threading.Thread(target=go, args=(i,)) for i in range(50)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(60)
            assert Counter(results) == {200: 50}
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                rc = proc.wait(10)
            finally:
                proc.kill()
            err = proc.stderr.read()
    assert rc == 0 and "Traceback" not in err, err

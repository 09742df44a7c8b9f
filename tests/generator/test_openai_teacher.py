"""The openai teacher against real HTTP servers on 127.0.0.1: a fault-injecting one here (retries, backoff,
Retry-After, bounded concurrency, 4xx, the API key, cancelling on Ctrl-C, also of a real `gen instructions`
process), and serve.py with the embedded model in test_serve.py. URL secrets: tests/adversarial/."""

from __future__ import annotations

import _thread
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from instructgen.generator.http_client import retry_after_s as _retry_after
from instructgen.generator.openai_teacher import OpenAITeacher, TeacherRequestError, parse_openai_spec
from instructgen.generator.teachers import Sampling, TeacherSpecError, make_teacher, validate_spec

from fake_http import LocalServer, QuietHandler

SECRET = "sk-test-4f9a1c0e-never-print-me"
GREEDY = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=8, presence_penalty=0.0)


class FaultServer(LocalServer):
    """A scripted OpenAI-compatible server. `script` is consumed one action per request, in arrival order:
    ("status", code, headers, body_dict) | ("hang", seconds) | ("gone", seconds) | ("ok",); when it runs out
    every request is "ok". An "ok" answer is `answer(prompt)` (default: an echo of the prompt, or of the last
    message) after `hold(prompt)` seconds. "gone" answers nothing and notes in `gone` when the client hung up."""

    def __init__(self, script=(), hold=lambda prompt: 0.0, answer=lambda prompt: f"echo:{prompt}"):
        self.script, self.hold, self.answer = list(script), hold, answer
        self.lock = threading.Lock()
        self.requests: list[dict] = []  # time, path, authorization, body, client port
        self.gone: list[float] = []  # when a client waiting on a "gone" request closed its connection
        self.in_flight = self.max_in_flight = 0
        srv = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.json_body()
                with srv.lock:
                    srv.requests.append({"t": time.monotonic(), "path": self.path, "body": body,
                                         "auth": self.headers.get("Authorization"), "port": self.client_address[1]})
                    action = srv.script.pop(0) if srv.script else ("ok",)
                    srv.in_flight += 1
                    srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
                try:
                    self.act(action, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # a client that timed out has gone
                finally:
                    with srv.lock:
                        srv.in_flight -= 1

            def act(self, action, body):
                if action[0] == "gone":  # wait for the client to hang up (cancelled) or `seconds` to pass
                    end = time.monotonic() + action[1]
                    while time.monotonic() < end:
                        if select.select([self.connection], [], [], 0.02)[0]:
                            if not self.connection.recv(1, socket.MSG_PEEK):
                                with srv.lock:
                                    srv.gone.append(time.monotonic())
                                break
                    self.close_connection = True
                    return None
                if action[0] == "hang":
                    time.sleep(action[1])
                    self.close_connection = True
                    return self.reply(200, {}, {"choices": [{"text": "too late", "finish_reason": "stop"}]})
                if action[0] == "status":
                    return self.reply(action[1], action[2], action[3])
                prompt = body.get("prompt") or body["messages"][-1]["content"]
                time.sleep(srv.hold(prompt))
                chat = self.path.split("?")[0].endswith("/chat/completions")
                text = srv.answer(prompt)
                choice = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
                if body.get("logprobs"):
                    choice["logprobs"] = fake_logprobs(text, body.get("top_logprobs") if chat else body["logprobs"],
                                                       chat)
                self.reply(200, {}, {"choices": [dict(choice, index=0, finish_reason="stop")],
                                     "usage": {"prompt_tokens": 3, "completion_tokens": 2}})

            def reply(self, code, headers, data):
                raw = json.dumps(data).encode()
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        super().__init__(Handler)


def fake_logprobs(text: str, k: int, chat: bool) -> dict:
    """The logprobs a server sends for `text` split into 4-character tokens: the generated token at -0.25 and
    k-1 alternatives `alt1`, `alt2`, ... at -1, -2, ... (OpenAI's chat and completions shapes)."""
    tokens = [text[i:i + 4] for i in range(0, len(text), 4)]
    alts = lambda: [(f"alt{j}", -float(j)) for j in range(1, k)]
    if chat:
        return {"content": [{"token": t, "logprob": -0.25, "bytes": list(t.encode()),
                             "top_logprobs": [{"token": t, "logprob": -0.25}] + [{"token": a, "logprob": lp}
                                                                                   for a, lp in alts()]}
                            for t in tokens]}
    return {"tokens": tokens, "token_logprobs": [-0.25] * len(tokens),
            "top_logprobs": [dict([(t, -0.25)] + alts()) for t in tokens], "text_offset": list(range(0, len(text), 4))}


def teacher(url, **kw) -> OpenAITeacher:
    kw = {"max_attempts": 6, "backoff_s": 0.1, "timeout_s": 0.5, **kw}
    return OpenAITeacher(url, "m", **kw)


# -- spec parsing and the pure request/response mapping ---------------------------------------------------

def test_spec_forms():
    assert parse_openai_spec("http://127.0.0.1:8000/v1@smollm2") == ("http://127.0.0.1:8000/v1", "smollm2")
    assert parse_openai_spec("openai:https://api.example.com/v1/@org/model:7b") == (
        "https://api.example.com/v1", "org/model:7b")
    t = make_teacher("openai:http://127.0.0.1:9/v1@tiny")
    assert (t.base_url, t.model, t.name) == ("http://127.0.0.1:9/v1", "tiny", "openai:http://127.0.0.1:9/v1@tiny")
    validate_spec("openai:http://localhost:8000/v1@x")


@pytest.mark.parametrize("spec, why", [
    ("openai:http://127.0.0.1:8000/v1", "expected BASE_URL@MODEL"),
    ("openai:http://127.0.0.1:8000/v1@", "expected BASE_URL@MODEL"),
    ("openai:127.0.0.1:8000@m", "not an http(s) URL"),
    ("openai:ftp://host/v1@m", "not an http(s) URL"),
    ("openai:http://user:sk-123@host/v1@m", "credentials in the URL"),
    ("openai:http://host:99999/v1@m", "bad port"),
    ("openai:http://host/v1#frag@m", "no #fragment"),
    ("openai:http://host/v1?api_key=sk-123@m", "a secret in the URL's query (api_key=...)"),
])
def test_bad_specs_show_the_accepted_form(spec, why):
    with pytest.raises(TeacherSpecError) as e:
        validate_spec(spec)
    assert why in str(e.value) and "openai:BASE_URL@MODEL" in str(e.value)
    assert "sk-123" not in str(e.value)


def test_request_body_maps_sampling_and_caps_stops():
    t = OpenAITeacher("http://h/v1", "m")
    s = Sampling(temperature=0.7, top_p=0.5, max_new_tokens=64, presence_penalty=2.0,
                 stop=("\n\n", "\n16", "16.", "16 .", "###"), seed=7)
    path, body = t.request_body("1. a\n2.", s)
    assert path == "/completions"
    assert body == {"model": "m", "prompt": "1. a\n2.", "max_tokens": 64, "temperature": 0.7, "top_p": 0.5,
                    "presence_penalty": 2.0, "stop": ["\n\n", "\n16", "16.", "16 ."], "seed": 7}
    path, body = t.request_body([{"role": "user", "content": "hi"}], GREEDY)
    assert path == "/chat/completions"
    assert body == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8,
                    "temperature": 0.0, "top_p": 1.0}


def test_to_completion_stop_cut_finish_reason_and_missing_usage():
    stops = ("\n\n", "a", "b", "c", "###")  # "###" is beyond the 4 the API takes: cut here
    c = OpenAITeacher.to_completion({"choices": [{"text": "one\ntwo###three", "finish_reason": "length"}]},
                                    stops, chat=False)
    assert (c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens) == ("one\ntwo", "stop", 0, 0)
    c = OpenAITeacher.to_completion({"choices": [{"message": {"content": "xyz"}, "finish_reason": "length"}],
                                     "usage": {"prompt_tokens": 11, "completion_tokens": 4}}, (), chat=True)
    assert (c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens) == ("xyz", "length", 11, 4)
    with pytest.raises(TeacherRequestError, match="unexpected response shape"):
        OpenAITeacher.to_completion({"choices": []}, (), chat=False)


def test_request_body_asks_for_logprobs_in_each_endpoints_form():
    t = OpenAITeacher("http://h/v1", "m")
    s = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=1, presence_penalty=0.0, logprobs=5)
    assert t.request_body("p", s)[1]["logprobs"] == 5 and "top_logprobs" not in t.request_body("p", s)[1]
    body = t.request_body([{"role": "user", "content": "x"}], s)[1]
    assert (body["logprobs"], body["top_logprobs"]) == (True, 5)
    assert "logprobs" not in t.request_body("p", GREEDY)[1]  # not asked: not sent (servers may refuse the key)


def test_to_completion_reads_both_logprob_shapes_and_cuts_them_at_a_client_side_stop():
    chat = {"choices": [{"message": {"content": "Output (1)###x"}, "finish_reason": "stop",
                         "logprobs": fake_logprobs("Output (1)###x", 2, chat=True)}]}
    c = OpenAITeacher.to_completion(chat, ("a", "b", "c", "d", "###"), chat=True, logprobs=True)
    assert c.text == "Output (1)"
    # tokens "Outp", "ut (", "1)##" start before the cut at 10; "#x" starts after it
    assert c.top_logprobs == [{"Outp": -0.25, "alt1": -1.0}, {"ut (": -0.25, "alt1": -1.0},
                              {"1)##": -0.25, "alt1": -1.0}]
    comp = {"choices": [{"text": "12345678", "finish_reason": "length",
                         "logprobs": {"tokens": ["1234", "5678"], "token_logprobs": [-0.5, -0.1],
                                      "top_logprobs": [{"9999": -0.2}, {"5678": -0.1, "0000": -3.0}]}}]}
    c = OpenAITeacher.to_completion(comp, (), chat=False, logprobs=True)
    # the generated token is always there, also when the server's top-k left it out
    assert c.top_logprobs == [{"9999": -0.2, "1234": -0.5}, {"5678": -0.1, "0000": -3.0}]
    assert c.finish_reason == "length"
    assert OpenAITeacher.to_completion(comp, (), chat=False).top_logprobs is None  # not asked: not read
    no_lp = {"choices": [{"text": "x", "finish_reason": "stop", "logprobs": None}]}
    assert OpenAITeacher.to_completion(no_lp, (), chat=False, logprobs=True).top_logprobs is None
    with pytest.raises(TeacherRequestError, match="unexpected response shape"):
        OpenAITeacher.to_completion({"choices": [{"text": "x", "logprobs": {"tokens": None}}]}, (), chat=False,
                                    logprobs=True)


def test_logprobs_over_http_for_chat_and_completions(caplog):
    with FaultServer(answer=lambda p: "Output (2)") as srv:
        t = teacher(srv.url)
        s = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=4, presence_penalty=0.0, logprobs=3)
        chat, raw = t.generate([[{"role": "user", "content": "which?"}], "which?"], s)
    for c in (chat, raw):
        assert c.text == "Output (2)" and len(c.top_logprobs) == 3  # "Outp", "ut (", "2)"
        assert c.top_logprobs[2] == {"2)": -0.25, "alt1": -1.0, "alt2": -2.0}
    by_path = {r["path"]: r["body"] for r in srv.requests}  # sent concurrently: in either order
    assert by_path["/v1/chat/completions"]["top_logprobs"] == 3 and by_path["/v1/completions"]["logprobs"] == 3


def test_on_tokens_runs_in_the_callers_thread_once_per_request():
    seen = []
    with FaultServer(hold=lambda p: 0.15 * int(p[1:])) as srv:
        t = teacher(srv.url, max_concurrency=4, timeout_s=5)
        t.generate([f"p{i}" for i in range(6)], GREEDY,
                   on_tokens=lambda n: seen.append((n, threading.current_thread() is threading.main_thread(),
                                                    len(srv.requests))))
    assert [n for n, _, _ in seen] == [2] * 6  # the fake answers 2 completion tokens a request
    assert all(main for _, main, _ in seen)
    assert seen[0][2] < 6  # the first call came while requests were still being sent, not after the batch


def test_an_exception_in_on_tokens_cancels_the_call():
    with FaultServer(hold=lambda p: 0.3) as srv:
        t = teacher(srv.url, max_concurrency=2)

        def boom(n):
            raise ValueError("progress bar broke")
        with pytest.raises(ValueError, match="progress bar broke"):
            t.generate([f"p{i}" for i in range(10)], GREEDY, on_tokens=boom)
        time.sleep(0.5)
    assert len(srv.requests) <= 4


def test_supports_and_close():
    with FaultServer() as srv:
        t = make_teacher(f"openai:{srv.url}@m")
        assert t.supports == {"raw", "chat", "logprobs"}
        t.generate(["a"], GREEDY)
        pooled = list(t.client._pool)
        assert len(pooled) == 1 and pooled[0].sock is not None
        t.close()
        t.close()  # idempotent
        assert pooled[0].sock is None and t.client._pool == []


def test_rps_spaces_request_starts_across_threads():
    with FaultServer() as srv:
        t = teacher(srv.url, max_concurrency=4, rps=10)
        t0 = time.monotonic()
        t.generate([f"p{i}" for i in range(6)], GREEDY)
        took = time.monotonic() - t0
    starts = sorted(r["t"] for r in srv.requests)
    # 1/rps apart whatever the concurrency (arrival times at the server jitter by a few ms)
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 0.07 and starts[-1] - starts[0] >= 0.48
    assert took >= 0.5  # 6 starts at 0, 0.1, ..., 0.5
    with pytest.raises(TeacherSpecError, match="rps"):
        OpenAITeacher("http://127.0.0.1:9/v1", "m", rps=-1)


def test_retry_after_forms():
    assert _retry_after("2") == 2.0 and _retry_after("0.5") == 0.5 and _retry_after(None) is None
    assert _retry_after("soon") is None
    assert 0 <= _retry_after(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))) <= 31


# -- real HTTP: faults, retries, concurrency, keys --------------------------------------------------------

def test_retries_429_500_503_and_a_hang_then_succeeds(caplog):
    caplog.set_level(logging.DEBUG)
    script = [("status", 429, {"Retry-After": "1"}, {"error": {"message": "slow down"}}),
              ("status", 500, {}, {"error": {"message": "boom"}}),
              ("status", 503, {}, {"error": {"message": "overloaded"}}),
              ("hang", 1.5)]
    with FaultServer(script) as srv:
        t = teacher(srv.url)
        [c] = t.generate(["hello"], GREEDY)
    assert (c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens) == ("echo:hello", "stop", 3, 2)
    assert len(srv.requests) == 5 and t.stats["retries"] == 4
    gaps = [b["t"] - a["t"] for a, b in zip(srv.requests, srv.requests[1:])]
    assert gaps[0] >= 0.95  # Retry-After: 1 honoured
    assert gaps[1] >= 0.1 and gaps[2] >= 0.2  # backoff 0.1 * 2^(k-1), half of it fixed, half jitter
    assert gaps[3] >= 0.5 + 0.4  # the hang: the client's 0.5 s timeout, then backoff of at least 0.4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4
    for w, what in zip(warnings, ["HTTP 429: slow down", "HTTP 500: boom", "HTTP 503: overloaded", "TimeoutError"]):
        assert what in w and srv.url in w


def test_gives_up_after_max_attempts_naming_url_and_last_status():
    with FaultServer([("status", 503, {}, {"error": {"message": "overloaded"}})] * 10) as srv:
        with pytest.raises(TeacherRequestError) as e:
            teacher(srv.url, max_attempts=3, backoff_s=0.01).generate(["x"], GREEDY)
    assert len(srv.requests) == 3
    msg = str(e.value)
    assert f"{srv.url}/completions" in msg and "3 attempts" in msg and "HTTP 503: overloaded" in msg


def test_connection_refused_is_retried_then_named():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TeacherRequestError) as e:
        teacher(f"http://127.0.0.1:{port}/v1", max_attempts=2, backoff_s=0.01).generate(["x"], GREEDY)
    assert f"127.0.0.1:{port}/v1/completions" in str(e.value) and "ConnectionRefusedError" in str(e.value)


def test_400_fails_at_once_with_the_server_message_and_cancels_the_rest():
    script = [("status", 400, {}, {"error": {"message": "'stop' may hold at most 4 strings"}})]
    with FaultServer(script, hold=lambda p: 0.2) as srv:
        t = teacher(srv.url, max_concurrency=2)
        with pytest.raises(TeacherRequestError) as e:
            t.generate([f"p{i}" for i in range(20)], GREEDY)
        time.sleep(0.3)  # let an in-flight request land before counting
    assert "HTTP 400: 'stop' may hold at most 4 strings" in str(e.value)
    assert t.stats["retries"] == 0
    assert len(srv.requests) <= 4  # the 18 queued prompts were never sent


def test_bounded_concurrency_and_callers_order():
    hold = lambda p: 0.1 + 0.05 * (int(p[1:]) % 3)  # uneven latencies: answers arrive out of order
    with FaultServer(hold=hold) as srv:
        t = teacher(srv.url, max_concurrency=3)
        prompts = [f"p{i}" for i in range(12)] + [[{"role": "user", "content": "p12"}]]
        out = t.generate(prompts, GREEDY)
    assert [c.text for c in out] == [f"echo:p{i}" for i in range(13)]
    assert srv.max_in_flight == 3
    assert [r["path"] for r in srv.requests].count("/v1/chat/completions") == 1


def test_connections_are_kept_alive():
    with FaultServer() as srv:
        t = teacher(srv.url, max_concurrency=1)
        t.generate(["a", "b", "c"], GREEDY)
        t.generate(["d"], GREEDY)
    assert len(srv.requests) == 4 and len({r["port"] for r in srv.requests}) == 1


def test_api_key_reaches_the_server_and_never_our_logs_or_errors(monkeypatch, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("MY_PROVIDER_KEY", SECRET)
    echo_key = {"error": {"message": f"Incorrect API key provided: {SECRET}"}}
    script = [("status", 503, {}, echo_key), ("ok",), ("status", 401, {}, echo_key)]
    with FaultServer(script) as srv:
        t = teacher(srv.url, api_key_env="MY_PROVIDER_KEY", backoff_s=0.01)
        [c] = t.generate(["a"], GREEDY)
        with pytest.raises(TeacherRequestError) as e:
            t.generate(["b"], GREEDY)
    assert c.text == "echo:a"
    assert [r["auth"] for r in srv.requests] == [f"Bearer {SECRET}"] * 3
    assert "HTTP 401: Incorrect API key provided: ***" in str(e.value)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP 503" in logged  # the retry was logged, with the server's message redacted
    out, err = capfd.readouterr()
    for text in (str(e.value), repr(e.value), logged, out, err, repr(t), t.name):
        assert SECRET not in text


def test_key_from_openai_api_key_by_default_and_none_without(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with FaultServer() as srv:
        teacher(srv.url).generate(["a"], GREEDY)
        monkeypatch.delenv("OPENAI_API_KEY")
        teacher(srv.url).generate(["b"], GREEDY)
    assert [r["auth"] for r in srv.requests] == [f"Bearer {SECRET}", None]


def test_missing_named_key_env_is_a_spec_error(monkeypatch):
    monkeypatch.delenv("NOT_SET_KEY", raising=False)
    with pytest.raises(TeacherSpecError, match="NOT_SET_KEY is not set"):
        OpenAITeacher("http://127.0.0.1:1/v1", "m", api_key_env="NOT_SET_KEY")


def test_a_query_such_as_api_version_is_kept_on_every_request():
    with FaultServer() as srv:
        t = make_teacher(f"openai:{srv.url}/?api-version=2024-02-01@m")
        t.generate(["a", [{"role": "user", "content": "b"}]], GREEDY)
    assert t.name == f"openai:{srv.url}?api-version=2024-02-01@m"
    assert sorted(r["path"] for r in srv.requests) == ["/v1/chat/completions?api-version=2024-02-01",
                                                       "/v1/completions?api-version=2024-02-01"]


def test_a_base_url_with_credentials_is_refused_when_built_directly():
    for url in ("http://user:sk-123@127.0.0.1:9/v1", "http://127.0.0.1:9/v1?access_token=sk-123"):
        with pytest.raises(TeacherSpecError) as e:
            OpenAITeacher(url, "m")
        assert "sk-123" not in str(e.value) and "$OPENAI_API_KEY" in str(e.value)


def test_a_bad_response_echoing_the_key_is_redacted(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with FaultServer([("status", 200, {}, {"detail": f"key {SECRET} ok", "part": SECRET[:14]})]) as srv:
        with pytest.raises(TeacherRequestError) as e:
            teacher(srv.url).generate(["a"], GREEDY)
    assert "unexpected response shape" in str(e.value)
    assert SECRET not in str(e.value) and SECRET[:14] not in str(e.value)


# -- cancelling: Ctrl-C stops the call at once -------------------------------------------------------------

def _interrupt_after(seconds: float) -> None:
    threading.Timer(seconds, _thread.interrupt_main).start()  # KeyboardInterrupt in the main thread, as Ctrl-C


def test_ctrl_c_cancels_in_flight_requests_and_queued_prompts():
    with FaultServer([("gone", 30)] * 3) as srv:
        t = teacher(srv.url, max_concurrency=3, timeout_s=60)
        _interrupt_after(0.5)
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            t.generate([f"p{i}" for i in range(10)], GREEDY)
        assert time.monotonic() - t0 < 1.5
        deadline = time.monotonic() + 3
        while len(srv.gone) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
    assert len(srv.requests) == 3  # the 7 queued prompts were never sent
    assert len(srv.gone) == 3 and max(srv.gone) - t0 < 1.5  # every in-flight request was cut, not waited out


def test_ctrl_c_stops_the_retries():
    with FaultServer([("status", 503, {}, {"error": {"message": "busy"}})] * 50) as srv:
        t = teacher(srv.url, max_concurrency=2, backoff_s=0.4, max_attempts=20)
        _interrupt_after(0.5)
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            t.generate(["a", "b"], GREEDY)
        assert time.monotonic() - t0 < 1.0
        sent = len(srv.requests)
        time.sleep(1.5)
    assert len(srv.requests) == sent  # no retry after the interrupt


# -- the same through a real `gen instructions` process and SIGINT ------------------------------------------

WORDS = ("amber basil cedar delta ember fjord garnet harbor indigo juniper kestrel lagoon meadow nectar "
         "orchid pebble quartz raven saffron tundra umber velvet willow xenon yarrow zephyr").split()


def novel_instruction(prompt) -> str:
    """A completion that the Self-Instruct filters keep: five words no other request gets."""
    with NOVEL_LOCK:
        NOVEL[0] += 1
        n = NOVEL[0]
    words = [WORDS[(n * 5 + k) % len(WORDS)] + str(n) for k in range(5)]
    return " Describe how " + " ".join(words) + " fit together.\n"


NOVEL, NOVEL_LOCK = [0], threading.Lock()


def gen_instructions(url: str, out, num: int = 6) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    return subprocess.Popen([sys.executable, "-m", "instructgen", "instructions", "--teacher", f"openai:{url}@m",
                             "--num", str(num), "--batch-size", "2", "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(env, HF_HUB_OFFLINE="1"))


def wait_for(cond, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def interrupt(p: subprocess.Popen) -> tuple[float, int, str]:
    """SIGINT, then (seconds to exit, exit code, stderr); a process still running after 10 s is killed."""
    p.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    try:
        _, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    return time.monotonic() - t0, p.returncode, err


def log_lines(out) -> list[str]:
    return (out / "log.jsonl").read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("stall", [("gone", 60), ("status", 503, {}, {"error": {"message": "overloaded"}})],
                         ids=["slow", "503"])
def test_sigint_during_a_gen_instructions_run_exits_at_once_and_resumes(tmp_path, stall):
    out = tmp_path / "run"
    # batch 0 (2 prompts) is answered; then every request stalls (hangs, or 503 and is retried) until resumed
    with FaultServer([("ok",), ("ok",)] + [stall] * 40, answer=novel_instruction) as srv:
        p = gen_instructions(srv.url, out)
        wait_for(lambda: (out / "log.jsonl").exists() and log_lines(out) and len(srv.requests) >= 4 + 2 * (
            stall[0] == "status"))  # batch 1 in flight (and, for 503, retried once)
        kept = log_lines(out)
        seconds, rc, err = interrupt(p)
        sent = len(srv.requests)
        if stall[0] == "gone":
            wait_for(lambda: len(srv.gone) == 2, 3)  # both in-flight requests were cut, not left to run
        time.sleep(1.5)
        assert len(srv.requests) == sent  # no retry, no new batch after Ctrl-C
        assert seconds < 3 and rc == 130, (seconds, rc, err)
        assert "gen instructions: interrupted; re-run the same command to resume." in err
        assert "Traceback" not in err
        assert log_lines(out) == kept and not (out / "completed").exists()  # batch 0 kept, nothing else
        srv.script.clear()  # the server recovers: the same command resumes after batch 0
        before = len(srv.requests)
        p = gen_instructions(srv.url, out)
        _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert log_lines(out)[:len(kept)] == kept and (out / "completed").exists()
    assert len((out / "instructions.jsonl").read_text().splitlines()) == 6
    assert len(srv.requests) - before == 4  # batches 1 and 2 only: batch 0 was not asked again

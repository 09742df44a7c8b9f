"""serve.py over real HTTP on 127.0.0.1: request validation, batching and errors with a fake teacher
(orchestration only), then the embedded model served and called through both endpoints by the openai teacher,
and `gen instructions --teacher openai:...` end to end."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time

import pytest

from instructgen.generator.openai_teacher import OpenAITeacher, TeacherRequestError
from instructgen.generator.serve import Limits, RequestError, TeacherServer, _Batcher, main, parse_request
from instructgen.generator.teachers import Completion, Sampling


class EchoTeacher:
    """Orchestration stand-in: answers `<prompt>|<max_new_tokens>` and records each generate call."""

    name = "echo:fake-model"

    def __init__(self, fail: str | None = None):
        self.calls: list[tuple[list, Sampling]] = []
        self.fail = fail

    def generate(self, prompts, sampling):
        self.calls.append((list(prompts), sampling))
        if self.fail:
            raise RuntimeError(self.fail)
        time.sleep(0.05)
        texts = [p if isinstance(p, str) else p[-1]["content"] for p in prompts]
        return [Completion(f"{t}|{sampling.max_new_tokens}", "length", len(t), sampling.max_new_tokens)
                for t in texts]


def raw(url: str, method: str, path: str, body=None, headers=None) -> tuple[int, dict]:
    host, port = url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers or {})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    return resp.status, data


# -- pure request parsing ---------------------------------------------------------------------------------

def test_parse_request_defaults_and_mapping():
    prompts, s = parse_request({"model": "m", "prompt": "hi"}, chat=False, model_name="m", default_max_tokens=16)
    assert prompts == ["hi"]
    assert s == Sampling(temperature=1.0, top_p=1.0, max_new_tokens=16, presence_penalty=0.0, stop=(), seed=None)
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                                    {"type": "text", "text": "b"}]}],
            "max_completion_tokens": 5, "max_tokens": 99, "temperature": 0, "top_p": 0.5,
            "presence_penalty": 2, "stop": "\n", "seed": 3, "n": 1, "stream": False}
    prompts, s = parse_request(body, chat=True, model_name="m", default_max_tokens=16)
    assert prompts == [[{"role": "user", "content": "ab"}]]
    assert s == Sampling(temperature=0.0, top_p=0.5, max_new_tokens=5, presence_penalty=2.0, stop=("\n",), seed=3)


@pytest.mark.parametrize("body, status, text", [
    ({"model": "other", "prompt": "x"}, 404, "does not exist; this server serves 'm'"),
    ({"model": "m", "prompt": "x", "stream": True}, 400, "'stream'=True is not supported"),
    ({"model": "m", "prompt": "x", "n": 2}, 400, "'n'=2 is not supported"),
    ({"model": "m", "prompt": [1, 2]}, 400, "'prompt' must be a string"),
    ({"model": "m", "prompt": "x", "temperature": 3}, 400, "'temperature' must be a number in [0.0, 2.0]"),
    ({"model": "m", "prompt": "x", "top_p": 0}, 400, "'top_p' must be a number in (0.0, 1.0]"),
    ({"model": "m", "prompt": "x", "max_tokens": 0}, 400, "'max_tokens' must be a positive integer"),
    ({"model": "m", "prompt": "x", "stop": [1]}, 400, "'stop' must be a string or a list of strings"),
    ({"model": "m", "prompt": "x", "seed": "1"}, 400, "'seed' must be an integer"),
    ({"model": "m", "prompt": "x", "seed": 2**63}, 400, "'seed' must be an integer in [0, 2**63-1]"),
    ({"model": "m", "prompt": "x", "seed": -1}, 400, "'seed' must be an integer in [0, 2**63-1]"),
    ({"model": "m", "prompt": ""}, 400, "'prompt' is empty"),
    ({"model": "m", "prompt": ["x", ""]}, 400, "'prompt[1]' is empty"),
    ({"model": "m", "prompt": ["x"] * 65}, 400, "'prompt' has 65 prompts; this server allows at most 64"),
    ({"model": "m", "prompt": "x", "stop": list("abcdefghijklmnopq")}, 400, "'stop' has 17 stop strings"),
    ({"model": "m", "prompt": "x", "stop": ["s" * 65]}, 400, "'stop[0]' has 65 characters"),
    ({"model": "m", "prompt": "x", "max_tokens": 4097}, 400, "'max_tokens' is 4097; this server allows at most 4096"),
    ({"prompt": "x"}, 400, "'model' must be a string"),
    ([], 400, "must be a JSON object"),
])
def test_parse_request_rejects_bad_input(body, status, text):
    with pytest.raises(RequestError) as e:
        parse_request(body, chat=False, model_name="m", default_max_tokens=16)
    assert e.value.status == status and text in e.value.message


def test_parse_request_names_the_field_and_applies_custom_limits():
    lim = Limits(max_prompts=2, max_stops=1, max_stop_chars=2, max_tokens=8, max_queue=2)
    with pytest.raises(RequestError) as e:
        parse_request({"model": "m", "prompt": ["a", "b", "c"]}, False, "m", 16, lim)
    assert e.value.param == "prompt" and "at most 2 (--max-prompts)" in e.value.message
    assert e.value.body()["error"] == {"message": e.value.message, "type": "invalid_request_error",
                                       "param": "prompt", "code": 400}
    _, s = parse_request({"model": "m", "prompt": "a", "stop": ["\n", "\n"]}, False, "m", 16, lim)
    assert s.max_new_tokens == 8 and s.stop == ("\n",)  # the default is capped; duplicate stops count once


@pytest.mark.parametrize("limits, text", [(Limits(max_prompts=0), "--max-prompts must be a positive integer"),
                                          (Limits(max_tokens=True), "--max-tokens must be a positive integer"),
                                          (Limits(max_queue=10), "--max-queue (10) must be at least --max-prompts")])
def test_limits_check_names_the_flag(limits, text):
    with pytest.raises(ValueError, match=re.escape(text)):
        limits.check()


@pytest.mark.parametrize("messages", [None, [], [{"content": "x"}], [{"role": "user", "content": 3}],
                                      [{"role": "user", "content": [{"type": "image_url"}]}],
                                      [{"role": "narrator", "content": "x"}], [{"role": "user", "content": ""}]])
def test_parse_request_rejects_bad_messages(messages):
    with pytest.raises(RequestError, match="messages"):
        parse_request({"model": "m", "messages": messages}, chat=True, model_name="m", default_max_tokens=16)


# -- real HTTP, fake teacher: batching, grouping, errors, auth --------------------------------------------

def test_concurrent_requests_are_batched_by_sampling_and_answered_in_order():
    t = EchoTeacher()
    with TeacherServer(t, max_batch=4, batch_wait_s=0.5) as srv:
        assert srv.model_name == "fake-model"
        client = OpenAITeacher.from_spec(f"{srv.url}@fake-model", max_concurrency=8)
        results = {}

        def go(key, prompts, max_new):
            results[key] = client.generate(prompts, Sampling(max_new_tokens=max_new))

        threads = [threading.Thread(target=go, args=("a", [f"a{i}" for i in range(6)], 8)),
                   threading.Thread(target=go, args=("b", [[{"role": "user", "content": "b0"}], "b1"], 5))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
    assert [c.text for c in results["a"]] == [f"a{i}|8" for i in range(6)]
    assert [c.text for c in results["b"]] == ["b0|5", "b1|5"]
    assert all((c.finish_reason, c.prompt_tokens, c.completion_tokens) == ("length", 2, 8) for c in results["a"])
    assert len(t.calls) < 8  # 8 requests, fewer generate calls
    assert all(len(prompts) <= 4 for prompts, _ in t.calls)
    for prompts, s in t.calls:  # a batch never mixes sampling settings
        names = [p if isinstance(p, str) else p[-1]["content"] for p in prompts]
        assert all(n[0] == ("a" if s.max_new_tokens == 8 else "b") for n in names)

def test_batcher_round_robins_so_no_request_waits_behind_a_big_one():
    gate, started = threading.Event(), threading.Event()

    class Gated(EchoTeacher):
        def generate(self, prompts, sampling):
            started.set()
            gate.wait(10)
            return super().generate(prompts, sampling)

    t = Gated()
    b = _Batcher(t, max_batch=2, wait_s=0.0)
    out = {}

    def go(name, n, temperature):
        out[name] = b.submit([f"{name}{i}" for i in range(n)], Sampling(temperature=temperature, max_new_tokens=1))

    threads = [threading.Thread(target=go, args=("a", 6, 0.5))]
    threads[0].start()
    assert started.wait(10)  # a0, a1 are being generated
    for name, n, temp in [("b", 1, 1.0), ("c", 3, 0.5)]:
        queued = b.queued
        threads.append(threading.Thread(target=go, args=(name, n, temp)))
        threads[-1].start()
        while b.queued == queued:
            time.sleep(0.005)
    gate.set()
    for th in threads:
        th.join(10)
    b.close()
    assert [p for p, _ in t.calls] == [["a0", "a1"], ["a2", "c0"], ["b0"], ["a3", "c1"], ["a4", "c2"], ["a5"]]
    assert [c.text for c in out["a"]] == [f"a{i}|1" for i in range(6)] and out["b"][0].text == "b0|1"
    assert b.queued == 0 and b.batches == [2, 2, 1, 2, 2, 1]


def test_teacher_failure_is_a_500_with_the_reason():
    with TeacherServer(EchoTeacher(fail="CUDA out of memory")) as srv:
        client = OpenAITeacher(srv.url, "fake-model", max_attempts=2, backoff_s=0.01)
        with pytest.raises(TeacherRequestError) as e:
            client.generate(["x"], Sampling())
    assert "2 attempts" in str(e.value) and "HTTP 500: teacher failed: RuntimeError: CUDA out of memory" in str(e.value)


def test_wrong_model_fails_at_once():
    t = EchoTeacher()
    with TeacherServer(t) as srv:
        with pytest.raises(TeacherRequestError, match="HTTP 404: model 'gpt-x' does not exist"):
            OpenAITeacher(srv.url, "gpt-x").generate(["x"], Sampling())
    assert t.calls == []


def test_api_key_list_prompts_models_and_health(monkeypatch):
    monkeypatch.setenv("SERVE_KEY", "k-123")
    with TeacherServer(EchoTeacher(), model_name="echo", api_key_env="SERVE_KEY") as srv:
        assert raw(srv.url, "GET", "/health") == (200, {"status": "ok"})
        status, data = raw(srv.url, "GET", "/v1/models")
        assert status == 401 and data["error"]["type"] == "authentication_error"
        auth = {"Authorization": "Bearer k-123"}
        status, data = raw(srv.url, "GET", "/v1/models", headers=auth)
        assert status == 200 and [m["id"] for m in data["data"]] == ["echo"]
        status, data = raw(srv.url, "POST", "/v1/completions", {"model": "echo", "prompt": "x"},
                           headers={"Authorization": "Bearer wrong"})
        assert status == 401
        status, data = raw(srv.url, "POST", "/v1/completions",
                           {"model": "echo", "prompt": ["p", "q"], "max_tokens": 3}, headers=auth)
        assert status == 200 and data["object"] == "text_completion"
        assert [(c["index"], c["text"], c["finish_reason"]) for c in data["choices"]] == [(0, "p|3", "length"),
                                                                                          (1, "q|3", "length")]
        assert data["usage"] == {"prompt_tokens": 2, "completion_tokens": 6, "total_tokens": 8}
        status, data = raw(srv.url, "POST", "/v1/nothing", {}, headers=auth)
        assert status == 404
        monkeypatch.setenv("OPENAI_API_KEY", "k-123")
        [c] = OpenAITeacher(srv.url, "echo").generate([[{"role": "user", "content": "hey"}]], Sampling())
        assert c.text == "hey|1024"


def test_serve_cli_rejects_a_bad_teacher_spec(capsys):
    assert main(["--teacher", "nosuchbackend:x", "--port", "0"]) == 2
    assert "unknown teacher backend 'nosuchbackend'" in capsys.readouterr().err


# -- the embedded model, served and called over HTTP ------------------------------------------------------

PROMPTS = ["Come up with a series of tasks:\n1. Name three fruits.\n2. Write a haiku about rain.\n3.",
           [{"role": "user", "content": "Give one tip for learning to cook."}]]


def test_embedded_model_through_both_endpoints_matches_direct_generation(embedded_teacher):
    s = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=8, presence_penalty=0.0, stop=("\n",))
    direct = embedded_teacher.generate(PROMPTS, s)
    with TeacherServer(embedded_teacher, max_batch=2, batch_wait_s=5.0) as srv:  # batch as direct did
        assert srv.model_name == "smollm2-135m"
        client = OpenAITeacher.from_spec(f"openai:{srv.url}@smollm2-135m")
        served = client.generate(PROMPTS, s)
        assert srv.batcher.batches == [2]  # the two concurrent requests were one generate call
    assert served == direct  # text, finish reason and token counts, through /completions and /chat/completions
    assert all(c.text.strip() and c.completion_tokens > 0 and c.prompt_tokens > 5 for c in served)


def test_gen_instructions_end_to_end_over_http(embedded_teacher, tmp_path):
    from instructgen.cli import main as gen
    from instructgen.records import read_tasks

    # Alpaca's rule for a length-cut completion (drop only its last item) so a short --max-new-tokens can keep some
    (tmp_path / "cfg.yaml").write_text("drop_truncated: last_item\n")
    with TeacherServer(embedded_teacher, model_name="smol") as srv:
        spec = f"openai:{srv.url}@smol"
        argv = ["instructions", "--teacher", spec, "--num", "3", "--max-new-tokens", "24", "--batch-size", "4",
                "--config", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "run"), "--quiet"]
        assert gen(argv) == 0
        calls = len(srv.batcher.batches)
        assert gen(argv) == 0  # complete: a no-op
        assert len(srv.batcher.batches) == calls
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    kept = read_tasks(tmp_path / "run" / "instructions.jsonl")
    assert summary["kept"] == len(kept) == 3 and summary["teacher"] == spec
    assert summary["completion_tokens"] > 0 and summary["prompt_tokens"] > 0
    assert (tmp_path / "run" / "completed").exists()
    for t in kept:
        assert t.provenance["teacher"] == spec and len(t.instruction.split()) >= 4
        assert t.provenance["sampling"]["max_new_tokens"] == 24

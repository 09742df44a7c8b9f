"""One teacher over several OpenAI-compatible endpoints (openai:URL,URL@MODEL): the spec and its refusals,
round-robin and least-loaded spreading counted per server, a dead endpoint skipped with its requests answered by
the others, all of them dead as one line, and `gen instructions` making the same records over two servers as
over one (also after kill -9 and a resume), with the budget stopping at the same request. Real HTTP servers on
127.0.0.1 (test_openai_teacher.FaultServer) answering deterministically from the prompt."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from instructgen.config import generation_config
from instructgen.generator.bootstrap import generate_instructions
from instructgen.generator.openai_teacher import TeacherRequestError, parse_openai_endpoints
from instructgen.generator.teachers import (Budget, BudgetReached, Sampling, TeacherSpecError, make_teacher,
                                            refuse_secrets, validate_options, validate_spec)
from instructgen.records import read_tasks

sys.path.insert(0, str(Path(__file__).parent))
from test_openai_teacher import FaultServer  # noqa: E402  (the scripted OpenAI-compatible server)

GREEDY = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=8, presence_penalty=0.0)
SECRET = "Zq8-hunter2-SECRET-77x"
WORDS = "amber basil cedar delta ember fjord garnet harbor indigo juniper kestrel lagoon meadow".split()


def from_prompt(prompt) -> str:
    """What every server answers: a Self-Instruct continuation fixed by the prompt alone (five words no other
    prompt gets, so the filters keep it), whichever server is asked."""
    h = hashlib.sha1(str(prompt).encode()).hexdigest()
    return " Describe how " + " ".join(f"{WORDS[int(h[k], 16) % len(WORDS)]}{h[k:k + 6]}" for k in range(5)) + \
        " fit together.\n"


def closed_port() -> str:
    """A base URL where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def pool(*urls, **kw):
    kw = {"max_attempts": 2, "backoff_s": 0.01, "timeout_s": 5, **kw}
    return make_teacher("openai:" + ",".join(urls) + "@m", **kw)


# -- the spec ---------------------------------------------------------------------------------------------

def test_several_endpoints_in_one_spec():
    assert parse_openai_endpoints("openai:http://a:8000/v1,https://b.example.com/v1/@org/m:7b") == (
        ["http://a:8000/v1", "https://b.example.com/v1"], "org/m:7b")
    assert parse_openai_endpoints("http://a:1/v1@m") == (["http://a:1/v1"], "m")  # one is the old form
    validate_spec("openai:http://a:1/v1,http://b:2/v1,http://c:3/v1@m")
    t = make_teacher("openai:http://127.0.0.1:9/v1,http://127.0.0.1:10/v1?api-version=1@m")
    assert t.name == "openai:http://127.0.0.1:9/v1,http://127.0.0.1:10/v1?api-version=1@m"
    assert [c.base_url for c in t.clients] == ["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1?api-version=1"]
    assert all(c.rate is t.client.rate for c in t.clients)  # rps is the teacher's, over every endpoint
    t.max_attempts = 1  # the judge's probe lowers it on every endpoint
    assert [c.max_attempts for c in t.clients] == [1, 1]


@pytest.mark.parametrize("spec, why", [
    ("openai:http://a/v1@m,http://b/v1@m", "an '@' in an endpoint before the last"),
    ("openai:http://a/v1@m,http://b/v1@m", "one @MODEL ends the spec"),
    ("openai:http://a/v1,http://a/v1/@m", "listed twice"),
    ("openai:http://a/v1,ftp://b/v1@m", "not an http(s) URL"),
    ("openai:http://a/v1,@m", "not an http(s) URL"),
])
def test_bad_endpoint_lists_are_refused_naming_the_form(spec, why):
    with pytest.raises(TeacherSpecError) as e:
        validate_spec(spec)
    assert why in str(e.value) and "BASE_URL,BASE_URL@MODEL" in str(e.value)


@pytest.mark.parametrize("spec", [
    "openai:http://a/v1,http://user:{s}@b/v1@m",  # credentials on the second endpoint
    "openai:http://{s}@a/v1,http://b/v1@m",  # a token as the first one's user
    "openai:http://a/v1,https//user:{s}@b/v1@m",  # a mistyped scheme after the comma
    "openai:http://a/v1?api_key={s},http://b/v1@m",  # a secret in the first one's query
    "openai:http://a/v1,http://b/v1?token={s}@m",
])
def test_a_secret_on_any_endpoint_is_refused_unshown(spec):
    for check in (refuse_secrets, validate_spec, make_teacher):  # config validation, stage validation, build
        with pytest.raises(TeacherSpecError) as e:
            check(spec.format(s=SECRET))
        assert SECRET not in str(e.value) and "$OPENAI_API_KEY" in str(e.value), str(e.value)


def test_balance_and_cooldown_options_are_checked_before_anything_loads():
    spec = "openai:http://a/v1,http://b/v1@m"
    validate_options(spec, {"balance": "least_loaded", "cooldown_s": 5})
    with pytest.raises(TeacherSpecError, match=r"^teacher_options balance: 'fastest' is not one of round_robin, "
                                               r"least_loaded$"):
        validate_options(spec, {"balance": "fastest"})
    with pytest.raises(TeacherSpecError, match="teacher_options cooldown_s: -1"):
        validate_options(spec, {"cooldown_s": -1})


# -- spreading the requests -------------------------------------------------------------------------------

def test_round_robin_is_a_strict_rotation_and_answers_come_back_in_prompt_order():
    with FaultServer() as a, FaultServer() as b, FaultServer(hold=lambda p: 0.05) as c:
        t = pool(a.url, b.url, c.url, max_concurrency=2)
        out = t.generate([f"p{i}" for i in range(12)], GREEDY)
        out += t.generate([f"q{i}" for i in range(3)], GREEDY)  # the rotation goes on across calls
    assert [x.text for x in out] == [f"echo:p{i}" for i in range(12)] + [f"echo:q{i}" for i in range(3)]
    assert [len(s.requests) for s in (a, b, c)] == [5, 5, 5]  # the slow one gets its turn all the same
    assert {u: e["sent"] for u, e in t.stats["endpoints"].items()} == {a.url: 5, b.url: 5, c.url: 5}
    assert t.stats["requests"] == 15 and t.stats["completion_tokens"] == 30
    assert (t.usage.requests, t.usage.prompt_tokens) == (15, 45)  # the meter counts every endpoint


@pytest.mark.parametrize("balance", ["least_loaded", "round_robin"])
def test_least_loaded_sends_more_to_the_fast_server(balance):
    with FaultServer() as fast, FaultServer(hold=lambda p: 0.5) as slow:
        t = pool(fast.url, slow.url, max_concurrency=1, balance=balance)
        out = t.generate([f"p{i}" for i in range(12)], GREEDY)
    assert [x.text for x in out] == [f"echo:p{i}" for i in range(12)]
    n_fast, n_slow = len(fast.requests), len(slow.requests)
    assert n_fast + n_slow == 12
    if balance == "round_robin":
        assert n_fast == n_slow == 6
    else:  # the slow one holds its first request while the fast one answers the rest
        assert n_slow >= 1 and n_fast >= 3 * n_slow, (n_fast, n_slow)


def test_dead_endpoints_are_skipped_said_once_and_their_requests_answered_by_the_others(caplog):
    caplog.set_level(logging.WARNING)
    refused = closed_port()
    busy = [("status", 503, {}, {"error": {"message": "overloaded"}})] * 100
    with FaultServer() as ok, FaultServer(busy) as failing:
        t = pool(refused, ok.url, failing.url, max_concurrency=2)
        out = t.generate([f"p{i}" for i in range(9)], GREEDY)
        asked = len(failing.requests)
        assert asked <= 2 * t.pool.sent[2]  # at most its 2 attempts per request sent there, then moved
        out += t.generate([f"q{i}" for i in range(6)], GREEDY)
    assert [x.text for x in out] == [f"echo:p{i}" for i in range(9)] + [f"echo:q{i}" for i in range(6)]
    assert len(ok.requests) == 15  # every prompt answered by the live server, each once
    assert len(failing.requests) == asked  # skipped while it cools down
    down = [r.getMessage() for r in caplog.records if "is down" in r.getMessage()]
    assert len(down) == 2, down  # once per dead endpoint, not per request
    assert any(refused in d and "ConnectionRefusedError" in d for d in down)
    assert any(failing.url in d and "HTTP 503: overloaded" in d for d in down)


def test_the_api_key_is_sent_to_every_endpoint_and_never_printed(monkeypatch, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    echo = [("status", 503, {}, {"error": {"message": f"bad key {SECRET}"}})] * 10
    with FaultServer(echo) as a, FaultServer(echo) as b:
        with pytest.raises(TeacherRequestError) as e:
            pool(a.url, b.url).generate(["p0"], GREEDY)
    assert {r["auth"] for r in a.requests + b.requests} == {f"Bearer {SECRET}"}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "is down" in logged and "bad key ***" in str(e.value)
    for text in (str(e.value), logged, *capfd.readouterr()):
        assert SECRET not in text


def test_an_endpoint_is_asked_again_after_its_cooldown():
    with FaultServer() as a, FaultServer([("status", 503, {}, {"error": {"message": "restarting"}})] * 2) as b:
        t = pool(a.url, b.url, max_concurrency=1, cooldown_s=0.3)
        texts = [t.generate([p], GREEDY)[0].text for p in ("p0", "p1", "p2")]  # one at a time: a fixed order
        assert (len(a.requests), len(b.requests)) == (3, 2)  # b failed p1 twice: down, p1 and p2 went to a
        time.sleep(0.4)
        texts += [t.generate([p], GREEDY)[0].text for p in ("p3", "p4", "p5")]
    assert texts == [f"echo:p{i}" for i in range(6)]
    assert [r["body"]["prompt"] for r in b.requests] == ["p1", "p1", "p3", "p5"]  # back in the rotation


def test_a_request_error_is_not_moved_to_another_endpoint():
    with FaultServer([("status", 400, {}, {"error": {"message": "bad stop"}})]) as a, FaultServer() as b:
        with pytest.raises(TeacherRequestError, match="HTTP 400: bad stop"):
            pool(a.url, b.url, max_concurrency=1).generate(["p0"], GREEDY)
    assert (len(a.requests), len(b.requests)) == (1, 0)  # another server would refuse it the same way


def test_all_endpoints_down_is_one_line_naming_each(tmp_path):
    dead = [closed_port(), closed_port()]
    with pytest.raises(TeacherRequestError) as e:
        pool(*dead).generate(["p0", "p1"], GREEDY)
    msg = str(e.value)
    assert msg.startswith("all 2 endpoints failed: ") and "\n" not in msg
    assert all(f"{u}/completions: ConnectionRefusedError" in msg for u in dead)
    r = subprocess.run([sys.executable, "-m", "instructgen", "instructions", "--teacher", "openai:" + ",".join(dead)
                        + "@m", "--num", "2", "--batch-size", "2", "--out", str(tmp_path / "r"), "--quiet"],
                       capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=60)
    errors = [ln for ln in r.stderr.splitlines() if ": error: " in ln]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(errors) == 1 and errors[0].startswith("gen instructions: error: all 2 endpoints failed: ")


# -- gen instructions over several endpoints ----------------------------------------------------------------

def gcfg(urls, **kw):
    return generation_config(dict(dict(num=8, batch_size=4, teacher="openai:" + ",".join(urls) + "@m"), **kw))


def comparable(path) -> list[dict]:
    """The records without what says which server answered or when (provenance teacher, created_at)."""
    rows = []
    for t in read_tasks(path):
        d = t.to_dict()
        d["provenance"] = {k: v for k, v in d["provenance"].items() if k not in ("teacher", "created_at")}
        rows.append(d)
    return rows


@pytest.fixture
def no_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def test_gen_instructions_makes_the_same_records_over_two_endpoints_as_over_one(tmp_path, no_key):
    uneven = lambda p: 0.002 * (int(hashlib.sha1(p.encode()).hexdigest()[:2], 16) % 20)  # answers out of order
    with FaultServer(answer=from_prompt) as one:
        generate_instructions(gcfg([one.url]), tmp_path / "one", quiet=True)
    with FaultServer(answer=from_prompt, hold=uneven) as a, FaultServer(answer=from_prompt) as b:
        s = generate_instructions(gcfg([a.url, b.url], teacher_options={"balance": "least_loaded"}),
                                  tmp_path / "two", quiet=True)
    assert len(a.requests) > 0 and len(b.requests) > 0 and len(a.requests) + len(b.requests) == len(one.requests)
    assert s["kept"] == 8 and s["teacher"] == f"openai:{a.url},{b.url}@m"
    for name in ("log.jsonl", "instructions.jsonl"):
        assert comparable(tmp_path / "two" / name) == comparable(tmp_path / "one" / name), name
    assert len(comparable(tmp_path / "one" / "instructions.jsonl")) == 8


def test_the_budget_stops_at_the_same_request_over_two_endpoints(tmp_path, no_key):
    counts = []
    for n in (1, 2):
        servers = [FaultServer(answer=from_prompt) for _ in range(n)]
        for s in servers:
            s.__enter__()
        try:  # 5 tokens a request (3 + 2): batch 0 spends 20 < 30, batch 1 reaches it, batch 2 is not asked
            with pytest.raises(BudgetReached, match="40 tokens reached --max-tokens 30"):
                generate_instructions(gcfg([s.url for s in servers], num=12, max_tokens=30), tmp_path / f"b{n}",
                                      quiet=True)
        finally:
            for s in servers:
                s.__exit__()
        counts.append(sum(len(s.requests) for s in servers))
        if n == 2:
            assert all(len(s.requests) == 4 for s in servers)
    assert counts == [8, 8]
    t = make_teacher("openai:http://127.0.0.1:9/v1,http://127.0.0.1:10/v1@m", budget=Budget(max_tokens=1))
    t.charge(prompt_tokens=1)
    with pytest.raises(BudgetReached):  # refused before any endpoint is asked
        t.generate(["p"], GREEDY)


def test_kill_9_and_resume_over_two_endpoints_loses_and_duplicates_nothing(tmp_path, no_key):
    with FaultServer(answer=from_prompt) as one:
        generate_instructions(gcfg([one.url]), tmp_path / "ref", quiet=True)
    out = tmp_path / "run"
    with FaultServer(answer=from_prompt, hold=lambda p: 0.15) as a, FaultServer(answer=from_prompt) as b:
        argv = [sys.executable, "-m", "instructgen", "instructions", "--teacher", f"openai:{a.url},{b.url}@m",
                "--num", "8", "--batch-size", "4", "--out", str(out), "--quiet"]
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"} | {"HF_HUB_OFFLINE": "1"}
        p = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        # batch 0 is written and batch 1 is in flight (more requests than batch 0's four)
        while not ((out / "log.jsonl").exists() and (out / "log.jsonl").read_text().strip()
                   and len(a.requests) + len(b.requests) > 4):
            assert time.monotonic() < deadline and p.poll() is None, "the run ended before it could be killed"
            time.sleep(0.01)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert not (out / "completed").exists()
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    ids = [t["id"] for t in comparable(out / "log.jsonl")]
    assert len(ids) == len(set(ids))  # no record twice
    for name in ("log.jsonl", "instructions.jsonl"):
        assert comparable(out / name) == comparable(tmp_path / "ref" / name), name
    assert json.loads((out / "summary.json").read_text())["kept"] == 8 and (out / "completed").exists()

"""Budgets and cost accounting against a real HTTP server on 127.0.0.1: the counts are the server's `usage`,
exact; a spent budget stops before the next call, never in the middle of one; rps spaces requests."""

from __future__ import annotations

import json
import threading

import pytest

from instructgen.generator.teachers import Budget, BudgetReached, Sampling, TeacherSpecError, make_teacher

from fake_http import LocalServer, QuietHandler

GREEDY = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=8, presence_penalty=0.0)


class UsageServer(LocalServer):
    """OpenAI-compatible: every answer is "ok", with usage prompt_tokens = len(prompt) and completion_tokens = 3,
    so a test knows every count in advance. `requests` lists the prompts in arrival order."""

    def __init__(self):
        self.requests: list[str] = []
        self.lock = threading.Lock()
        srv = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.json_body()
                prompt = body.get("prompt") or body["messages"][-1]["content"]
                with srv.lock:
                    srv.requests.append(prompt)
                choice = ({"message": {"role": "assistant", "content": "ok"}} if "messages" in body
                          else {"text": "ok"})
                raw = json.dumps({"choices": [dict(choice, index=0, finish_reason="stop")],
                                  "usage": {"prompt_tokens": len(prompt), "completion_tokens": 3}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        super().__init__(Handler)


def test_cost_accounting_is_exact():
    budget = Budget(input_per_million=2.5, output_per_million=10.0)
    with UsageServer() as srv:
        t = make_teacher(f"openai:{srv.url}@m", budget=budget)
        t.generate(["abcd", "abcdefgh"], GREEDY)  # 4 + 8 prompt tokens, 3 + 3 completion tokens
        t.generate([[{"role": "user", "content": "xy"}]], GREEDY)  # 2 + 3
    u = t.usage
    assert (u.prompt_tokens, u.completion_tokens, u.requests, u.tokens) == (14, 9, 3, 23)
    assert u.cost == pytest.approx((14 * 2.5 + 9 * 10.0) / 1e6, abs=1e-15)
    assert u.to_dict() == {"prompt_tokens": 14, "completion_tokens": 9, "requests": 3, "cost": 0.000125}
    assert t.stats["prompt_tokens"] == 14 and t.stats["requests"] == 3  # the backend's own count agrees


def test_max_tokens_stops_before_the_next_call_and_keeps_what_finished():
    # each call: 2 prompts of 5 characters -> 2 * (5 + 3) = 16 tokens. After 3 calls, 48 >= 40: the 4th refuses.
    with UsageServer() as srv:
        t = make_teacher(f"openai:{srv.url}@m", budget=Budget(max_tokens=40))
        done = []
        with pytest.raises(BudgetReached) as e:
            for k in range(10):
                done.append(t.generate([f"p{k}abc", f"q{k}abc"], GREEDY))
    assert len(done) == 3 and len(srv.requests) == 6  # the third call started at 32 < 40 and finished whole
    assert t.usage.tokens == 48
    assert "48 tokens reached the budget (max_tokens 40)" in str(e.value)
    assert "resumes" in str(e.value)


def test_max_cost_stops_and_a_larger_budget_goes_on():
    # a call of one 6-character prompt: 6 * 1 + 3 * 4 = 18 micro-dollars; max_cost 50e-6 allows 3 calls
    with UsageServer() as srv:
        t = make_teacher(f"openai:{srv.url}@m",
                         budget=Budget(input_per_million=1.0, output_per_million=4.0, max_cost=50e-6))
        calls = 0
        with pytest.raises(BudgetReached, match=r"cost 5\.4e-05 reached the budget \(max_cost 5e-05\)"):
            while True:
                t.generate(["abcdef"], GREEDY)
                calls += 1
        assert calls == 3 and len(srv.requests) == 3
        t.budget = Budget(input_per_million=1.0, output_per_million=4.0, max_cost=70e-6)  # raised: one more (54 < 70, then 72)
        t.generate(["abcdef"], GREEDY)
        with pytest.raises(BudgetReached):
            t.generate(["abcdef"], GREEDY)
    assert len(srv.requests) == 4 and t.usage.requests == 4


def test_no_budget_never_stops():
    with UsageServer() as srv:
        t = make_teacher(f"openai:{srv.url}@m")
        for _ in range(5):
            t.generate(["x" * 100], GREEDY)
    assert t.usage.requests == 5 and t.usage.cost == 0.0


@pytest.mark.parametrize("field, value", [("max_cost", -1.0), ("max_tokens", "many"), ("input_per_million", True)])
def test_a_bad_budget_is_a_spec_error(field, value):
    with pytest.raises(TeacherSpecError, match=f"budget {field}"):
        Budget(**{field: value})


def test_charge_counts_a_resumed_runs_earlier_usage_against_the_budget():
    with UsageServer() as srv:
        t = make_teacher(f"openai:{srv.url}@m", budget=Budget(output_per_million=1.0, max_tokens=100))
        t.charge(prompt_tokens=90, completion_tokens=5, requests=4)  # replayed from the run's log
        assert t.usage.cost == pytest.approx(5e-6)
        t.generate(["abc"], GREEDY)  # 95 < 100: runs, then 101
        with pytest.raises(BudgetReached, match="101 tokens"):
            t.generate(["abc"], GREEDY)
    assert len(srv.requests) == 1 and t.usage.requests == 5

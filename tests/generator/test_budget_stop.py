"""Budgets, caller side, end to end against a local OpenAI-compatible server: --max-cost / --max-tokens stop after
the last finished batch with the exact cost counted, nothing half-written; the same command with a larger
budget resumes and finishes, asking only for what was missing; the CLI says it in one line (exit 3)."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from instructgen.config import generation_config
from instructgen.generator.bootstrap import generate_instructions
from instructgen.generator.instances import generate_instances, instances_config
from instructgen.generator.teachers import BudgetReached
from instructgen.records import read_tasks

sys.path.insert(0, str(Path(__file__).parent.parent))
from fake_http import LocalServer, QuietHandler  # noqa: E402

PROMPT_TOKENS, COMPLETION_TOKENS = 100, 20  # what the server reports for every request
PRICE_IN, PRICE_OUT = 1.0, 2.0  # per million tokens
PER_REQUEST = (PROMPT_TOKENS * PRICE_IN + COMPLETION_TOKENS * PRICE_OUT) / 1e6  # 0.00014
WORDS = "amber basil cedar delta ember fjord garnet harbor indigo juniper kestrel lagoon meadow".split()


class ScriptedServer(LocalServer):
    """/v1/completions and /v1/chat/completions: a Self-Instruct continuation no other request gets (so each
    request keeps one instruction), or an instance-style answer; fixed usage."""

    def __init__(self):
        self.requests: list[dict] = []
        lock, server = threading.Lock(), self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.json_body()
                with lock:
                    server.requests.append(body)
                    n = len(server.requests)
                text = (" Describe how " + " ".join(f"{w}{n}" for w in WORDS[n % 7: n % 7 + 5]) + " fit together.\n"
                        if "Come up with a series of tasks" in str(body.get("prompt")) else
                        " Input: two numbers\nOutput: their sum\n")
                chat = self.path.endswith("/chat/completions")
                choice = ({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
                data = json.dumps({"choices": [dict(choice, index=0, finish_reason="stop")],
                                   "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS}})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data.encode())

        super().__init__(Handler)


@pytest.fixture
def server(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with ScriptedServer() as s:
        yield s


def gcfg(url, **kw):
    return generation_config(dict(dict(num=6, batch_size=2, teacher=f"openai:{url}@m", price_input_per_m=PRICE_IN,
                                       price_output_per_m=PRICE_OUT), **kw))


# batch 0 spends 2 requests (0.00028, 240 tokens): under both limits; batch 1 reaches them; batch 2 is not asked
@pytest.mark.parametrize("limit", [dict(max_cost=0.0005), dict(max_tokens=250)], ids=["max_cost", "max_tokens"])
def test_budget_stops_after_the_last_finished_batch_and_a_larger_one_resumes(tmp_path, server, limit):
    out = tmp_path / "run"
    with pytest.raises(BudgetReached, match="--max-cost|--max-tokens") as e:
        generate_instructions(gcfg(server.url, **limit), out, quiet=True)
    assert "kept 4/6" in str(e.value) and "larger budget resumes" in str(e.value)
    assert len(server.requests) == 4  # two batches, then stopped before the third call
    log = read_tasks(out / "log.jsonl")
    assert {t.meta["batch"] for t in log} == {0, 1} and not (out / "completed").exists()
    assert not (out / "instructions.jsonl").exists()
    # the same budget again: refused before any request (the log's tokens count against it)
    with pytest.raises(BudgetReached):
        generate_instructions(gcfg(server.url, **limit), out, quiet=True)
    assert len(server.requests) == 4
    bigger = {k: v * 10 for k, v in limit.items()}
    s = generate_instructions(gcfg(server.url, **bigger), out, quiet=True)
    assert len(server.requests) == 6 and s["kept"] == 6 and (out / "completed").exists()
    assert s["prompt_tokens"] == 6 * PROMPT_TOKENS and s["completion_tokens"] == 6 * COMPLETION_TOKENS
    assert s["cost"] == pytest.approx(6 * PER_REQUEST, abs=1e-9)
    assert "max_cost" not in json.loads((out / "config.json").read_text())["config"]  # not the run's identity


def test_instances_budget_stop_and_resume(tmp_path, server):
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("".join(f"Add the two numbers in example {i} and explain.\n" for i in range(6)))
    flags = dict(teacher=f"openai:{server.url}@m", batch_size=2, assume_classification="no",
                 price_input_per_m=PRICE_IN, price_output_per_m=PRICE_OUT)
    with pytest.raises(BudgetReached, match="2/6 tasks done"):
        generate_instances(instances_config(dict(flags, max_cost=PER_REQUEST * 1.5)), tasks, tmp_path / "i",
                           quiet=True)
    assert len(server.requests) == 2
    s = generate_instances(instances_config(dict(flags, max_cost=1.0)), tasks, tmp_path / "i", quiet=True)
    assert len(server.requests) == 6 and s["kept"] + s["rejected"] == 6
    assert s["cost"] == pytest.approx(6 * PER_REQUEST, abs=1e-9)


def test_the_cli_prints_one_line_exits_3_and_resumes(tmp_path, server):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "instructgen", "instructions", "--teacher", f"openai:{server.url}@m", "--num", "6",
           "--batch-size", "2", "--out", str(out), "--price-input-per-m", "1", "--price-output-per-m", "2"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("OPENAI_API_KEY", None)
    p = subprocess.run(cmd + ["--max-cost", "0.0005"], capture_output=True, text=True, env=env, timeout=120)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 3, p.stderr
    assert lines[0].startswith("gen instructions: estimate: a batch is ~")  # the estimate, before any call
    assert "at most ~" in lines[0] and "prices 1/2 per M" in lines[0]
    budget = [ln for ln in lines if "budget reached" in ln]
    assert len(budget) == 1 and budget[0].startswith("gen instructions: budget reached: cost 0.00056")
    assert "Traceback" not in p.stderr
    p = subprocess.run(cmd + ["--max-cost", "0.01"], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert len(read_tasks(out / "instructions.jsonl")) == 6 and len(server.requests) == 6

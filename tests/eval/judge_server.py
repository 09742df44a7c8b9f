"""A scripted OpenAI-compatible judge on 127.0.0.1 for tests/eval/test_judge.py: a real threaded http.server
answering /v1/chat/completions and /v1/completions. It reads the two outputs from the judge prompt (the
"## Output (1)" / "## Output (2)" sections of the packaged judge templates) and replies with `policy(first,
second)`, the judge's raw text, so a test scripts a judge by what it does with the order it is shown. Every
request is recorded (path and JSON body) so a test can count them."""

from __future__ import annotations

import re
import threading
from typing import Callable

from fake_http import LocalServer, QuietHandler

_SHOWN = re.compile(r"## Output \(1\)\n(?P<first>.*?)\n\n## Output \(2\)\n(?P<second>.*?)\n\n", re.S)


# Judges, as policies: (output shown first, output shown second) -> the judge's reply.
def first_shown(first: str, second: str) -> str:
    """Total position bias: always the output shown first, whatever it says."""
    return "Output (1)"


def longer(first: str, second: str) -> str:
    """Length bias: the longer output, a tie when they are as long (in the verbose form judges like)."""
    if len(first) == len(second):
        return "Tie"
    return "**Output (1)** is better." if len(first) > len(second) else "Output (2)\n\nIt is more detailed."


def always_tie(first: str, second: str) -> str:
    return "Tie."


class JudgeServer(LocalServer):
    """`with JudgeServer(policy) as s:` serves at `s.url` (`openai:{s.url}@m` is a teacher spec). `fail(prompt)`
    returning an HTTP status makes that request fail with it (e.g. 400 to crash a run mid-way)."""

    def __init__(self, policy: Callable[[str, str], str] = first_shown,
                 fail: Callable[[str], int | None] = lambda prompt: None):
        self.policy, self.fail = policy, fail
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        srv = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.json_body()
                path = self.path.split("?")[0]
                with srv.lock:
                    srv.requests.append({"path": path, "body": body})
                chat = path.endswith("/v1/chat/completions")
                if not chat and not path.endswith("/v1/completions"):
                    return self.reply(404, {"error": {"message": f"no route {path}"}})
                prompt = body["messages"][-1]["content"] if chat else body["prompt"]
                status = srv.fail(prompt)
                if status:
                    return self.reply(status, {"error": {"message": "scripted failure"}})
                m = _SHOWN.search(prompt)
                text = srv.policy(m["first"], m["second"]) if m else "I cannot find two outputs."
                choice = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
                self.reply(200, {"choices": [dict(choice, index=0, finish_reason="stop")],
                                 "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 3}})

        super().__init__(Handler, poll_interval=0.02)

    @property
    def n_requests(self) -> int:
        with self.lock:
            return len(self.requests)


"""Progress a log can show: off a terminal, a line every N seconds with counts, tokens/s, ETA and cost, also
while one teacher call runs; on a terminal, the bar's token count moves within a call (on_tokens)."""

import io
import re
import sys
import threading
import time
from pathlib import Path

from instructgen.config import generation_config
from instructgen.generator.bootstrap import generate_instructions
from instructgen.progress import Progress

sys.path.insert(0, str(Path(__file__).parent))
from fake_teacher import FakeTeacher  # noqa: E402


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_log_lines_every_interval_with_counts_rate_eta_and_cost():
    out = io.StringIO()
    p = Progress(10, "instructions", unit="instr", stream=out, interval=0.05)
    assert p.log  # a StringIO is not a terminal
    p.on_tokens(300)
    p.update(2)
    p.set(kept=2, rejected=5, cost=0.0123)
    time.sleep(0.3)
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3  # several ticks, and the last line at close
    last = lines[-1]
    assert last.startswith("instructions: 2/10 instr (20%), 300 tokens, ")
    assert re.search(r"\d+\.\d tok/s", last) and "ETA " in last and "ETA ?" not in last
    assert "kept 2, rejected 5, cost 0.0123" in last


def test_eta_from_this_sessions_rate_only():
    out = io.StringIO()
    p = Progress(10, "instructions", initial=8, stream=out, interval=60)
    assert "ETA ?" in p.line()  # resumed work says nothing about speed
    p.update(1)
    assert "9/10" in p.line() and "ETA " in p.line() and "ETA ?" not in p.line()
    p.close()
    assert out.getvalue().count("\n") == 1  # only the closing line: the interval never came


def test_quiet_prints_nothing():
    out = io.StringIO()
    p = Progress(5, "x", stream=out, interval=0.01, quiet=True)
    p.update(1)
    time.sleep(0.05)
    p.close()
    assert out.getvalue() == ""


def test_on_tokens_is_thread_safe():
    p = Progress(None, "x", stream=io.StringIO(), interval=60)
    threads = [threading.Thread(target=lambda: [p.on_tokens(1) for _ in range(2000)]) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert p.tokens == 8000
    p.close()


def test_on_a_terminal_the_bar_shows_tokens_before_the_batch_ends():
    out = Tty()
    p = Progress(10, "instructions", unit="instr", stream=out)
    assert not p.log
    p.on_tokens(5)  # the first postfix refresh is not throttled
    assert "tokens=5" in out.getvalue() and "0/10" in out.getvalue()
    p.close()


class StreamingTeacher(FakeTeacher):
    """The fake teacher, reporting tokens while it 'generates' (as the real backends do via on_tokens)."""

    def generate(self, prompts, sampling, on_tokens=None):
        for _ in range(4):
            time.sleep(0.1)
            if on_tokens:
                on_tokens(7)
        return super().generate(prompts, sampling)


def test_gen_instructions_off_a_terminal_logs_lines_within_a_call(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("INSTRUCTGEN_PROGRESS_SECONDS", "0.15")
    c = generation_config(dict(num=6, batch_size=3, teacher="fake", price_input_per_m=1.0, price_output_per_m=1.0))
    generate_instructions(c, tmp_path / "r", teacher=StreamingTeacher(), quiet=False)
    err = capsys.readouterr().err
    assert err.startswith("gen instructions: estimate: a batch is ~")
    lines = [ln for ln in err.splitlines() if ln.startswith("instructions: ")]
    assert len(lines) >= 2
    # a line during the first call: tokens counted, nothing kept yet
    assert any(re.match(r"instructions: 0/6 instr \(0%\), [1-9]\d* tokens", ln) for ln in lines)
    assert lines[-1].startswith("instructions: 6/6 instr (100%)") and "cost " in lines[-1]

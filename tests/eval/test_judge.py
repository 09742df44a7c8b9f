"""The pairwise judge: the pinned judge prompts, verdict parsing (real-looking and garbage), and the protocol
(both orders, ties, unparseable verdicts, resume, an unreachable judge) against a real HTTP server on 127.0.0.1
(judge_server.py) whose scripted judges decide by what is shown first."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from instructgen.eval.judge import (JUDGE_SAMPLING, check_judge, judge_pairwise, load_judge_template,
                                    parse_verdict, render_judge_prompt, summarize)
from instructgen.generator.openai_teacher import TeacherRequestError
from instructgen.generator.teachers import make_teacher
from instructgen.templates import TemplateError

sys.path.insert(0, str(Path(__file__).parent))
from judge_server import JudgeServer, always_tie, first_shown, longer  # noqa: E402

HEAD = ("Which of the two outputs below follows the instruction better? Judge whether each output does what the "
        "instruction asks, and is correct, helpful and complete. A longer output is not better for being longer, "
        "and the order in which the outputs are shown says nothing about their quality.\n\n")
ROW = {"id": "t1", "instruction": "Add the numbers.", "input": "2, 3", "output_a": "5", "output_b": "The sum is 6."}


def judge_for(server: JudgeServer, **kw):
    return make_teacher(f"openai:{server.url}@m", **kw)


def rows(pairs):
    return [{"id": f"p{i}", "instruction": f"Task {i}.", "input": "", "output_a": a, "output_b": b}
            for i, (a, b) in enumerate(pairs)]


# -- pinned prompts -----------------------------------------------------------------------------------------------

def test_chat_judge_prompt_is_pinned_in_both_orders():
    t = load_judge_template()
    assert t.name == "judge_pairwise.chat" and load_judge_template("judge_pairwise").path == t.path
    tail = "\n\nReply with exactly one of: Output (1), Output (2), Tie"
    assert render_judge_prompt(t, ROW, "ab") == [{"role": "user", "content": (
        HEAD + "## Instruction\nAdd the numbers.\n\n## Input\n2, 3\n\n"
        "## Output (1)\n5\n\n## Output (2)\nThe sum is 6." + tail)}]
    assert render_judge_prompt(t, dict(ROW, input=""), "ba") == [{"role": "user", "content": (
        HEAD + "## Instruction\nAdd the numbers.\n\n"
        "## Output (1)\nThe sum is 6.\n\n## Output (2)\n5" + tail)}]


def test_completion_judge_prompt_is_pinned():
    t = load_judge_template("judge_pairwise.completion")
    assert render_judge_prompt(t, ROW, "ba") == (
        HEAD + "## Instruction\nAdd the numbers.\n\n## Input\n2, 3\n\n"
        "## Output (1)\nThe sum is 6.\n\n## Output (2)\n5\n\n"
        "## Verdict (one of: Output (1), Output (2), Tie)\nBetter output:")


def test_a_user_template_must_render_strictly_and_show_both_outputs(tmp_path):
    hidden = tmp_path / "hidden.chat.jinja2"
    hidden.write_text("{{ instruction }}\nOutput (1): {{ output_1 }}\nWhich is good?\n")
    with pytest.raises(TemplateError, match=r"hidden.chat.jinja2: a judge template must show output_2"):
        load_judge_template(hidden)
    undefined = tmp_path / "undefined.chat.jinja2"
    undefined.write_text("{{ instruction }} {{ output_1 }} {{ output_2 }} {{ reference }}\n")
    with JudgeServer() as s:
        with pytest.raises(TemplateError, match="'reference' is undefined"):
            judge_pairwise(judge_for(s), rows([("x", "y")]), template=undefined, quiet=True)
        with pytest.raises(TemplateError, match="'reference' is undefined"):
            check_judge(judge_for(s), template=undefined)
        assert s.n_requests == 0, "a template error must cost no judge call"


# -- parsing ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, verdict", [
    ("Output (1)", "first"), ("Output (2)", "second"), ("Tie", "tie"), ("tie.", "tie"),
    ("**Output (2)**", "second"), ("  Output (1)\n", "first"), ("Output 2", "second"), ("(1)", "first"),
    ("2", "second"), ("Output (b)", "second"), ("The first output is better.", "first"),
    ("[[A]]", "first"), ("[[B]]", "second"), ("[[C]]", "tie"),  # MT-Bench's format
    ("Verdict: Tie", "tie"), ("Verdict: a tie", "tie"), ("Better output: Output (2)", "second"),
    ("The answer is: (2)", "second"), ("It's a tie.", "tie"), ("Neither is better.", "tie"),
    ("Output (1) and Output (2) are equally good.", "tie"),
    ("Output (2) is better than Output (1) because it shows the sum.", "second"),
    ("I prefer Output (1).", "first"),
    ("Output (1)\n\nExplanation: Output (2) gets the sum wrong.", "first"),
    ("After comparing both, my verdict is [[B]].", "second"),
    ("<think>Output (2) looks longer.</think>Output (1)", "first"),
    (" Output (2)\n## Instruction\nName a colour.", "second"),  # a base model running on after the verdict
])
def test_parse_verdict_real_looking(text, verdict):
    assert parse_verdict(text) == verdict


@pytest.mark.parametrize("text", [
    "", "   ", "I like turtles.", "Output (3)", "1 2", "Both.", "Output (1) or Output (2)? Hard to say.",
    "Reply with exactly one of: Output (1), Output (2), Tie",  # an echo of the options
    "output a list of numbers", "\x00\x01\ufffd", "Output (1" * 50, None, 42,
])
def test_parse_verdict_garbage_is_none(text):
    assert parse_verdict(text) is None


# -- the protocol against a real server -----------------------------------------------------------------------------

def test_total_position_bias_cancels_out():
    pairs = [("5", "The sum is 6."), ("Paris", "Lyon"), ("red", "blue"), ("a b c", "c b a"), ("yes", "no")]
    with JudgeServer(first_shown) as s:
        judgements, summary = judge_pairwise(judge_for(s), rows(pairs), quiet=True)
    assert [(j["order"], j["verdict"], j["winner"]) for j in judgements[:2]] == [("ab", "first", "a"),
                                                                                 ("ba", "first", "b")]
    assert summary["win_rate"] == 0.5 and summary["ci95"] == [0.5, 0.5]
    assert summary["position_consistency"] == 0.0 and summary["first_shown_rate"] == 1.0
    assert (summary["wins"], summary["losses"], summary["ties"], summary["unparseable"]) == (0, 0, 5, 0)
    assert (summary["n_pairs"], summary["n_judged"], summary["n_judgements"]) == (5, 5, 10)
    assert summary["template"] == "judge_pairwise.chat" and summary["judge"] == f"openai:{s.url}@m"
    # every pair in both orders, each once, with the judge's own greedy decoding
    shown_first = [r["body"]["messages"][0]["content"].split("## Output (1)\n")[1].split("\n")[0] for r in s.requests]
    assert sorted(shown_first) == sorted([a for a, _ in pairs] + [b for _, b in pairs])
    assert {r["path"] for r in s.requests} == {"/v1/chat/completions"}
    for r in s.requests:
        assert r["body"]["temperature"] == 0.0 and r["body"]["top_p"] == 1.0
        assert r["body"]["max_tokens"] == JUDGE_SAMPLING.max_new_tokens == 32
        assert "presence_penalty" not in r["body"] and "stop" not in r["body"]


def test_length_biased_judge_and_the_lengths_reported():
    pairs = [("a long answer here", "short"), ("four words long here", "two words"), ("x", "much longer reply"),
             ("the longest answer of all", "tiny"), ("ok", "a longer one"), ("medium size", "m")]
    with JudgeServer(longer) as s:
        judgements, summary = judge_pairwise(judge_for(s), rows(pairs), quiet=True, batch_size=3)
    assert s.n_requests == 12
    assert summary["win_rate"] == round(4 / 6, 4) and (summary["wins"], summary["losses"]) == (4, 2)
    assert summary["position_consistency"] == 1.0 and summary["longer_won"] == 1.0
    lo, hi = summary["ci95"]
    assert 0.0 <= lo < summary["win_rate"] < hi <= 1.0
    assert summary["mean_length_a"] == {"chars": round(sum(len(a) for a, _ in pairs) / 6, 4),
                                        "words": round(sum(len(a.split()) for a, _ in pairs) / 6, 4)}
    assert summary["mean_length_b"]["words"] == round(sum(len(b.split()) for _, b in pairs) / 6, 4)
    assert summarize(rows(pairs), judgements, judge=summary["judge"]) == summary, "the interval is seeded"


def test_ties_and_a_pair_that_wins_one_order_and_ties_the_other():
    with JudgeServer(always_tie) as s:
        _, summary = judge_pairwise(judge_for(s), rows([("a", "b"), ("c", "d")]), quiet=True)
    assert (summary["win_rate"], summary["ties"], summary["position_consistency"]) == (0.5, 2, 1.0)
    assert summary["first_shown_rate"] is None  # no verdict picked a side

    def notices_quality_only_when_first(first, second):  # GOOD shown first wins; shown second, a tie
        return "Output (1)" if "GOOD" in first else "Tie"
    pairs = [("GOOD answer", "plain"), ("plain", "GOOD answer"), ("plain", "plain too")]
    with JudgeServer(notices_quality_only_when_first) as s:
        judgements, summary = judge_pairwise(judge_for(s), rows(pairs), quiet=True)
    assert [j["winner"] for j in judgements] == ["a", "tie", "tie", "b", "tie", "tie"]
    # pair scores 0.75 (a win), 0.25 (a loss), 0.5 (a tie)
    assert (summary["wins"], summary["losses"], summary["ties"], summary["win_rate"]) == (1, 1, 1, 0.5)
    assert summary["position_consistency"] == round(1 / 3, 4)


def test_garbage_verdicts_are_counted_never_a_crash():
    def garbles_on_marker(first, second):
        return "As an AI, I cannot judge." if "GARBLE" in first else "Output (1)"
    # pair 0: its "ab" order is garbage -> left out; pair 1: both orders garbage; pair 2: scored (0.5)
    pairs = [("GARBLE a", "b"), ("GARBLE x", "GARBLE y"), ("fine", "also fine")]
    with JudgeServer(garbles_on_marker) as s:
        judgements, summary = judge_pairwise(judge_for(s), rows(pairs), quiet=True)
    assert [j["verdict"] for j in judgements] == [None, "first", None, None, "first", "first"]
    assert judgements[0]["raw"] == "As an AI, I cannot judge." and judgements[0]["winner"] is None
    assert (summary["unparseable"], summary["n_judged"], summary["n_pairs"]) == (3, 1, 3)
    assert summary["win_rate"] == 0.5

    for garbage in ("", "{{not json}}", "Output (1) or (2)?"):
        with JudgeServer(lambda first, second: garbage) as s:
            _, summary = judge_pairwise(judge_for(s), rows([("a", "b"), ("c", "d")]), quiet=True)
        assert summary["unparseable"] == 4 and summary["n_judged"] == 0
        assert summary["win_rate"] is None and summary["ci95"] is None and summary["position_consistency"] is None


def test_resume_after_a_crash_redoes_no_finished_call():
    pairs = [(f"answer {i}", f"reply {i} longer") for i in range(6)]
    pairs[3] = ("BOOM", "reply 3")
    broken = {"on": True}
    saved: list[list[dict]] = []
    with JudgeServer(longer, fail=lambda prompt: 400 if broken["on"] and "BOOM" in prompt else None) as s:
        judge = judge_for(s, max_concurrency=1)  # one request at a time: no late request muddles the counts
        with pytest.raises(TeacherRequestError, match="HTTP 400"):  # batch 2 of 3 (asks 4-7) holds pair 3
            judge_pairwise(judge, rows(pairs), on_judged=lambda new: saved.append(new), quiet=True, batch_size=4)
        assert [len(b) for b in saved] == [4], "the finished batch was handed over before the crash"
        assert s.n_requests == 7  # asks 0-5, then ask 6 (pair 3, order ab) fails and the call stops
        done = {(j["id"], j["order"]): j for batch in saved for j in batch}
        broken["on"] = False
        before = s.n_requests
        judgements, summary = judge_pairwise(judge, rows(pairs), done=done, on_judged=saved.append, quiet=True,
                                             batch_size=4)
        assert s.n_requests - before == 8, "only the 8 unfinished judge calls are made"
        assert judgements[:4] == list(done.values())
        everything = {(j["id"], j["order"]): j for j in judgements}
        before = s.n_requests
        again, summary2 = judge_pairwise(judge, rows(pairs), done=everything, on_judged=saved.append, quiet=True)
        assert s.n_requests == before, "a finished run makes zero requests"
        assert again == judgements and summary2 == summary
        # a changed answer is a new prompt: only its pair is judged again
        changed = rows(pairs)
        changed[5]["output_a"] = "a different, much longer answer for pair five"
        before = s.n_requests
        judgements3, _ = judge_pairwise(judge, changed, done=everything, quiet=True)
        assert s.n_requests - before == 2 and [j["winner"] for j in judgements3[10:]] == ["a", "a"]


def test_completion_template_goes_to_completions():
    with JudgeServer(longer) as s:
        judge = judge_for(s)
        check_judge(judge, template="judge_pairwise.completion")
        _, summary = judge_pairwise(judge, rows([("much longer", "short")]), template="judge_pairwise.completion",
                                    quiet=True)
    assert {r["path"] for r in s.requests} == {"/v1/completions"}
    assert summary["win_rate"] == 1.0 and summary["template"] == "judge_pairwise.completion"


def test_duplicate_ids_are_refused_before_any_call():
    with JudgeServer() as s:
        with pytest.raises(ValueError, match="row id 'p0' appears more than once"):
            judge_pairwise(judge_for(s), rows([("a", "b")]) * 2, quiet=True)
        assert s.n_requests == 0


# -- check_judge ----------------------------------------------------------------------------------------------------

def test_check_judge_makes_one_tiny_greedy_call():
    with JudgeServer() as s:
        check_judge(judge_for(s))
    assert len(s.requests) == 1
    body = s.requests[0]["body"]
    assert body["max_tokens"] == 1 and body["temperature"] == 0.0 and s.requests[0]["path"] == "/v1/chat/completions"


def test_an_unreachable_judge_fails_in_check_judge_with_one_line():
    with socket.socket() as sock:  # a port that was free a moment ago and now has nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    judge = make_teacher(f"openai:http://127.0.0.1:{port}/v1@judge-model")  # the default 6 attempts
    t0 = time.monotonic()
    with pytest.raises(TeacherRequestError) as e:
        check_judge(judge)
    msg = str(e.value)
    assert time.monotonic() - t0 < 5, "a judge that is down must fail at once, not after minutes of backoff"
    assert "\n" not in msg and msg.startswith(f"judge openai:http://127.0.0.1:{port}/v1@judge-model is not usable:")
    assert "Connection refused" in msg or "ConnectionRefused" in msg
    assert judge.max_attempts == 6, "the teacher's own retry policy is restored for the real run"


def test_a_judge_that_answers_errors_fails_in_check_judge_with_one_line():
    with JudgeServer() as s:
        wrong_path = make_teacher(f"openai:{s.url.removesuffix('/v1')}/api@m")
        with pytest.raises(TeacherRequestError, match=r"^judge openai:.*/api@m is not usable: .*HTTP 404: no route"):
            check_judge(wrong_path)
    with JudgeServer(fail=lambda prompt: 503) as s:
        with pytest.raises(TeacherRequestError, match=r"gave up after 2 attempts; last: HTTP 503: scripted failure$"):
            check_judge(judge_for(s, backoff_s=0.01))
        assert s.n_requests == 2

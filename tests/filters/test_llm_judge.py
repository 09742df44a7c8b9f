"""LLM judge: the pinned AlpaGasus-style prompt; rating parsing on real-looking and garbage replies; DEITA's
expected rating from token log-probabilities; the protocol against a local OpenAI-compatible server (chat and
completions, with and without logprobs); unparseable ratings counted; a resumed run redoes no finished call."""

from __future__ import annotations

import json
import math
import re
import threading

import pytest
from fake_http import LocalServer, QuietHandler

from instructgen.filters.llm_judge import (JOURNAL, LLMJudgeFilter, expected_rating, load_quality_template,
                                           parse_rating, render_quality_prompt)
from instructgen.generator.openai_teacher import TeacherRequestError
from instructgen.records import Instance, Task
from instructgen.templates import TemplateError

# -- the prompt ---------------------------------------------------------------------------------------------------


def test_chat_prompt_is_pinned():
    t = load_quality_template()
    assert render_quality_prompt(t, "Add the numbers.", "2 3", "5") == [{"role": "user", "content": (
        "We would like to request your feedback on the performance of AI assistant in response to the instruction "
        "and the given input displayed following.\n\n### Instruction:\nAdd the numbers.\n\n### Input:\n2 3\n\n"
        "### Response:\n5\n\nPlease rate according to the accuracy of the response to the instruction and the "
        "input. Each assistant receives a score on a scale of 0 to 5, where a higher score indicates higher level "
        "of the accuracy. Please first output a single line containing the value indicating the score, written as "
        "\"Score: X\". In the subsequent line, please provide a brief explanation of your evaluation, avoiding any "
        "potential bias.")}]


def test_completion_prompt_ends_where_the_score_begins_and_empty_input_is_left_out():
    t = load_quality_template("judge_quality.completion")
    p = render_quality_prompt(t, "Name a color.", "", "Blue.")
    assert isinstance(p, str) and p.endswith("\n\nScore:") and "### Input" not in p
    assert "### Instruction:\nName a color.\n\n### Response:\nBlue.\n\n" in p


def test_a_template_that_hides_the_output_is_refused(tmp_path):
    bad = tmp_path / "bad.chat.jinja2"
    bad.write_text("Rate: {{ instruction }} {{ input }}")
    with pytest.raises(TemplateError, match="must show output"):
        load_quality_template(str(bad))


# -- parsing ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,score,rationale", [
    ("Score: 4\nThe answer is correct but terse.", 4.0, "The answer is correct but terse."),
    ("**Score:** 4.5 - mostly right", 4.5, "mostly right"),
    (" 3\nIt misses a step.", 3.0, "It misses a step."),  # the completion template's continuation
    ("4.5/5\nAccurate.", 4.5, "Accurate."),
    ("Rating = [[2]]", 2.0, ""),
    ("I would rate it 4 out of 5. Clear and correct.", 4.0, "Clear and correct."),
    ("Score (0-5): 1\nWrong answer.", 1.0, "Wrong answer."),
    ("On a scale of 0 to 5, I rate it 0. The answer is unrelated.", 0.0, "The answer is unrelated."),
    ("Score: 5", 5.0, ""),
])
def test_parse_real_looking_ratings(text, score, rationale):
    assert parse_rating(text) == (score, rationale)


@pytest.mark.parametrize("text", ["", "The response is good.", "Score: N/A", "Score: 7", "Score: 8/10", "45",
                                  "2023 was a good year", "Score:", None])
def test_garbage_is_unparseable_not_an_error(text):
    score, rationale = parse_rating(text)
    assert score is None and rationale == (text or "").strip()


def test_expected_rating_is_the_softmax_mean_over_rating_tokens_at_the_score():
    text = "Score: 4\nGood."
    tops = [{"Score": -0.01, "Rating": -5.0}, {":": 0.0}, {" 4": math.log(0.6), " 5": math.log(0.3),
                                                             "4": math.log(0.05), " three": math.log(0.05)},
            {"\n": 0.0}, {"Good": -0.1}, {".": 0.0}]
    # " 4" and "4" are one rating; " three" is not a rating token; renormalised over {4: 0.65, 5: 0.3}
    assert expected_rating(text, tops) == pytest.approx((4 * 0.65 + 5 * 0.3) / 0.95)
    assert expected_rating(text, None) is None
    assert expected_rating("Good.", tops) is None  # no rating written: no position to read
    assert expected_rating(text, [{"Sc": 0.0}, {"ore": 0.0}]) is None  # the tokens do not spell the text


# -- the protocol, against a local OpenAI-compatible server -------------------------------------------------------

_SECTION = re.compile(r"### Response:\n(?P<output>.*?)\n\nPlease rate", re.S)
_TOKENS = re.compile(r"\s*\d|\s*[^\s\d]+|\s+")


class RatingServer(LocalServer):
    """Answers /v1/chat/completions and /v1/completions with `policy(output) -> (text, {rating: prob})`: the text,
    and the probabilities at the first digit when the request asks for logprobs. `fail(output)` -> HTTP status
    fails that request. Every request body is recorded."""

    def __init__(self, policy, fail=lambda output: None):
        self.policy, self.fail, self.lock, self.requests = policy, fail, threading.Lock(), []
        srv = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.json_body()
                chat = self.path.endswith("/chat/completions")
                prompt = body["messages"][-1]["content"] if chat else body["prompt"]
                with srv.lock:
                    srv.requests.append(body)
                output = _SECTION.search(prompt)["output"]
                status = srv.fail(output)
                if status:
                    return self.reply(status, {"error": {"message": "scripted failure"}})
                text, probs = srv.policy(output)
                choice = {"index": 0, "finish_reason": "stop"}
                choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
                k = body.get("top_logprobs") if chat else body.get("logprobs")
                if k:
                    choice["logprobs"] = logprobs(text, probs, chat)
                self.reply(200, {"choices": [choice], "usage": {"prompt_tokens": 10, "completion_tokens": 5}})

        super().__init__(Handler, poll_interval=0.02)


def logprobs(text: str, probs: dict[int, float], chat: bool) -> dict:
    toks = _TOKENS.findall(text)
    rows = []
    for t in toks:
        if t.strip().isdigit() and probs:
            top = {f" {s}": math.log(p) for s, p in probs.items()}
        else:
            top = {t: 0.0}
        rows.append((t, top.get(t, max(top.values())), top))
    if chat:
        return {"content": [{"token": t, "logprob": lp, "top_logprobs": [{"token": k, "logprob": v}
                                                                          for k, v in top.items()]}
                            for t, lp, top in rows]}
    return {"tokens": [t for t, _, _ in rows], "token_logprobs": [lp for _, lp, _ in rows],
            "top_logprobs": [top for _, _, top in rows]}


def by_output(output: str):
    """A judge that likes correct arithmetic: "5" is right (torn between 4 and 5), "6" is wrong, "???" gets a
    reply with no score in it."""
    if output == "5":
        return "Score: 4\nCorrect, but terse.", {4: 0.5, 5: 0.5}
    if output == "???":
        return "I cannot rate this.", {}
    return "Score: 1\nThe sum is wrong.", {1: 0.8, 0: 0.2}


def tasks() -> list[Task]:
    rows = [("Add 2 and 3.", "5"), ("Add 2 and 3.", "6"), ("Add 2 and 3.", "???"), ("Add 1 and 4.", "5")]
    return [Task(f"t{i}", ins, [Instance("", out)]) for i, (ins, out) in enumerate(rows)]


def run(server, tmp_path, **kw):
    f = LLMJudgeFilter.of(judge=f"openai:{server.url}@judge", **kw)
    f.prepare({"cache_dir": tmp_path})
    return f, f.apply(tasks())


def test_protocol_with_logprobs_gives_the_expected_rating(tmp_path):
    with RatingServer(by_output) as s:
        f, got = run(s, tmp_path, min_score=2.0)
    body = s.requests[0]
    assert body["temperature"] == 0.0 and body["max_tokens"] == 64  # the judge's own decoding
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    assert "messages" in body  # the chat template goes to /chat/completions
    right, wrong, garbage, right2 = got
    assert right.scores == {"judge_score": 4.0, "judge_expected": pytest.approx(4.5), "judge_rating": 4.5}
    assert right.meta["judge"] == [{"score": 4.0, "expected": 4.5, "rationale": "Correct, but terse."}]
    assert right.kept and right2.kept and right.meta["rank"]["llm_judge"] in (1, 2)
    assert wrong.scores["judge_expected"] == pytest.approx(0.8) and wrong.verdict.reason == "judge<2"
    assert garbage.verdict.reason == "judge_unparseable" and "judge_rating" not in garbage.scores
    assert garbage.meta["judge"][0]["rationale"] == "I cannot rate this."
    assert f.details["unparseable"] == 1 and f.details["judged"] == 4


def test_completion_template_and_no_logprobs_use_the_written_score(tmp_path):
    with RatingServer(by_output) as s:
        f, got = run(s, tmp_path, template="judge_quality.completion", logprobs=0, min_score=None, keep_top=2,
                     on_unparseable="keep")
    assert all("prompt" in b and "logprobs" not in b for b in s.requests)  # /completions, none asked
    assert [t.scores.get("judge_rating") for t in got] == [4.0, 1.0, None, 4.0]
    assert "judge_expected" not in got[0].scores
    # keep_top=2 keeps the two rated 4; the unparseable one has no rank and is not selected
    assert [t.kept for t in got] == [True, False, False, True]
    assert got[1].verdict.reason == "below_top_2:judge_rating" and "rank" not in got[2].meta


def test_resume_redoes_no_finished_call(tmp_path):
    with RatingServer(by_output, fail=lambda output: 400 if output == "???" else None) as s:
        with pytest.raises(TeacherRequestError):
            run(s, tmp_path, batch_size=2)  # batch 1 (t0, t1) is journaled; batch 2 (t2, t3) fails
        first = len(s.requests)
        s.fail = lambda output: None
        f, got = run(s, tmp_path, batch_size=2)
        again = len(s.requests) - first
        g, _ = run(s, tmp_path, batch_size=2, min_score=3.0)  # a new threshold: no call at all
    assert again == 2 and f.details == {**f.details, "judged": 2, "reused": 2}
    assert len(s.requests) - first == 2 and g.details["judged"] == 0 and g.details["reused"] == 4
    assert len((tmp_path / JOURNAL).read_text().splitlines()) == 4
    assert got[0].scores["judge_rating"] == pytest.approx(4.5)


def test_a_different_template_is_not_reused(tmp_path):
    with RatingServer(by_output) as s:
        run(s, tmp_path)
        n = len(s.requests)
        run(s, tmp_path, template="judge_quality.completion")
    assert len(s.requests) - n == 4  # every triplet is asked again under the other template


def test_bad_options_fail_at_build_time():
    with pytest.raises(ValueError, match="min_score"):
        LLMJudgeFilter.of(min_score=9)
    with pytest.raises(ValueError, match="on_unparseable"):
        LLMJudgeFilter.of(on_unparseable="maybe")


def test_gen_curate_resumes_a_crashed_judge_step_without_asking_again(tmp_path, monkeypatch):
    from instructgen.filters import chain
    from instructgen.filters.stage import curate
    from instructgen.records import write_jsonl
    monkeypatch.setitem(chain.FILTERS, "llm_judge", LLMJudgeFilter)  # until chain.py registers it
    data = tmp_path / "in.jsonl"
    write_jsonl(data, tasks())
    out = tmp_path / "out"
    with RatingServer(by_output, fail=lambda output: 400 if output == "???" else None) as s:
        cfg = {"filters": [{"filter": "llm_judge", "judge": f"openai:{s.url}@judge", "batch_size": 2,
                            "min_score": 2.0}]}
        with pytest.raises(TeacherRequestError):
            curate(data, out, cfg, quiet=True)
        first = len(s.requests)
        s.fail = lambda output: None
        stats = curate(data, out, cfg, quiet=True)
    assert len(s.requests) - first == 2  # only the batch that crashed is asked again
    st = stats["filters"][0]
    assert st["dropped"] == {"judge<2": 1, "judge_unparseable": 1} and st["details"]["unparseable"] == 1
    kept = [json.loads(x) for x in (out / "kept.jsonl").read_text().splitlines()]
    assert [k["id"] for k in kept] == ["t0", "t3"] and kept[0]["scores"]["judge_rating"] == pytest.approx(4.5)
    assert kept[0]["meta"]["judge"][0]["rationale"] == "Correct, but terse."

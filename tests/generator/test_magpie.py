"""Magpie: the pre-query templates pinned, the parsers on real and garbage completions, the orchestration with a
scripted teacher (counts, reasons, resume after a crash and after kill -9) and a run on the embedded model."""

import hashlib
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from instructgen.config import generation_config
from instructgen.generator.bootstrap import generate_instructions
from instructgen.generator.magpie import parse_query, parse_response, pre_query_from_chat_template
from instructgen.generator.teachers import Completion
from instructgen.records import read_tasks
from instructgen.templates import TemplateError, load_template

SMOLLM2_PRE = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
               "<|im_start|>user\n")
# SmolLM2-135M-Instruct's chat template, as its tokenizer ships it
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


# ------------------------------------------------------------------------------------------- pinned prompts

def test_pre_query_templates_are_pinned():
    t = load_template("magpie_smollm2.completion")
    assert t.render(query=None) == SMOLLM2_PRE
    assert t.render(query="Name two rivers in Spain.") == (
        SMOLLM2_PRE + "Name two rivers in Spain.<|im_end|>\n<|im_start|>assistant\n")
    assert load_template("magpie_chatml.completion").render(query=None) == "<|im_start|>user\n"
    assert load_template("magpie_llama3.completion").render(query=None) == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n")
    assert load_template("magpie_llama3.completion").render(query="Hi?") == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_packaged_template_matches_the_chat_template_it_was_cut_from():
    pre, after = pre_query_from_chat_template(SMOLLM2_CHAT_TEMPLATE)
    t = load_template("magpie_smollm2.completion")
    assert pre == t.render(query=None)
    assert pre + "Q" + after == t.render(query="Q")


def test_packaged_template_matches_the_embedded_models_own_chat_template():
    """The converted embedded model's chat template, read from its folder (no model load)."""
    from instructgen.models import resolve
    folder = Path(resolve("smollm2-135m")[0])
    f = folder / "chat_template.jinja"
    source = f.read_text() if f.exists() else json.loads((folder / "tokenizer_config.json").read_text())["chat_template"]
    pre, after = pre_query_from_chat_template(source)
    assert pre + "Q" + after == load_template("magpie_smollm2.completion").render(query="Q")


def test_chat_template_without_the_message_is_refused():
    with pytest.raises(TemplateError, match="does not render"):
        pre_query_from_chat_template("{{ bos_token }}hello")


# ------------------------------------------------------------------------------------------- pure parsing

@pytest.mark.parametrize("text, query", [
    ("What are three good habits for a first-year student?<|im_end|>", "What are three good habits for a first-year student?"),
    ("  Rewrite this sentence in the passive voice: The cat chased the mouse.\n", "Rewrite this sentence in the passive voice: The cat chased the mouse."),
    ("Plan a menu.\nIt should be vegetarian.<|im_end|>\n<|im_start|>assistant\nSure", "Plan a menu.\nIt should be vegetarian."),
    ("", None), ("   \n ", None), ("<|im_end|>", None), ("user:", None), ("assistant\n", None),
])
def test_parse_query_real_and_garbage(text, query):
    assert parse_query(text, ["<|im_end|>", "<|im_start|>"]) == query


def test_parse_response():
    assert parse_response(" Paris.<|im_end|>junk", ["<|im_end|>"]) == "Paris."
    assert parse_response(" \n", ["<|im_end|>"]) is None


# ------------------------------------------------------------------------------------------- orchestration

VERBS = ["Explain", "Describe", "Compare", "Summarize", "List", "Suggest", "Evaluate", "Outline"]
WORDS = ("bicycle interest sourdough moon tea chess solar jazz volcano library origami immune river budget "
         "garden poem winter market violin glacier rocket vaccine harbor desert forest lantern tiger orbit "
         "protein canal fossil thunder pepper island castle engine coral saddle ballet mirror").split()


def scripted_query(rng: random.Random, n: int) -> str:
    if n % 11 == 0:
        return "Draw a picture of a " + rng.choice(WORDS) + " near the sea."  # blacklisted: draw, picture
    return f"{rng.choice(VERBS)} " + " ".join(rng.sample(WORDS, 6)) + "."


class MagpieTeacher:
    """A scripted stand-in (orchestration only), stateless across calls so a resumed run sees what an
    uninterrupted one saw: a varied query for a pre-query prompt (row 3 repeats row 2's, some empty, some cut by
    length, some blacklisted), an answer otherwise (some empty)."""

    name = "fake:magpie"
    supports = frozenset({"raw", "chat"})

    def __init__(self, sleep: float = 0.0, crash_on: int = 0):
        self.calls, self.queries, self.answers, self.sleep, self.crash_on = 0, 0, 0, sleep, crash_on

    def generate(self, prompts, sampling):
        self.calls += 1
        if self.crash_on and self.calls == self.crash_on:
            raise RuntimeError("boom")
        out = []
        for i, p in enumerate(prompts):
            assert isinstance(p, str)
            h = int(hashlib.sha1(f"{sampling.seed}:{2 if i == 3 else i}:{p}".encode()).hexdigest()[:8], 16)
            if p.endswith("<|im_start|>user\n"):
                self.queries += 1
                q = scripted_query(random.Random(h), h)
                if h % 5 == 1:
                    out.append(Completion("<|im_end|>", "stop", 30, 1))
                elif h % 7 == 1:
                    out.append(Completion(q, "length", 30, 64))
                else:
                    out.append(Completion(q + "<|im_end|>", "stop", 30, len(q.split())))
            else:
                self.answers += 1
                body = "" if h % 9 == 1 else f"Here is a careful answer about {p[-60:-30]!r}."
                out.append(Completion(body, "stop", 50, 12))
        if self.sleep:
            time.sleep(self.sleep)
        return out


def mcfg(num=10, **kw):
    return generation_config(dict(dict(preset="magpie", num=num, batch_size=4, teacher="fake"), **kw))


def test_magpie_run_counts_every_query_and_reason(tmp_path):
    teacher = MagpieTeacher()
    s = generate_instructions(mcfg(10), tmp_path / "r", teacher=teacher, quiet=True)
    kept = read_tasks(tmp_path / "r" / "instructions.jsonl")
    rejected = read_tasks(tmp_path / "r" / "rejected.jsonl")
    assert len(kept) == 10 == s["kept"] and s["seeds"] == 0
    assert len(rejected) == s["rejected"] == sum(s["rejected_by_reason"].values())
    for reason in ("unparseable", "truncated_completion", "blacklist:draw", "empty_response"):
        assert s["rejected_by_reason"].get(reason, 0) > 0, reason
    assert any(r.startswith("rouge_l>") for r in s["rejected_by_reason"])  # the same queries come back
    for t in kept:
        assert t.provenance["recipe"] == "magpie" and t.provenance["operation"] == "query"
        assert t.instances and t.instances[0].output.startswith("Here is a careful answer")
        assert t.provenance["response"]["sampling"]["temperature"] == 0.0
    # every completion's tokens are counted once: queries (30 prompt tokens each) and answers (50 each)
    assert s["prompt_tokens"] == 30 * teacher.queries + 50 * teacher.answers


def test_magpie_needs_a_completion_template(tmp_path):
    with pytest.raises(TemplateError, match="plain-completion"):
        generate_instructions(mcfg(template="self_instruct.chat"), tmp_path / "r", teacher=MagpieTeacher(),
                              quiet=True)
    assert not (tmp_path / "r").exists()


def test_magpie_resume_after_crash_matches_uninterrupted_run(tmp_path):
    generate_instructions(mcfg(12), tmp_path / "ref", teacher=MagpieTeacher(), quiet=True)
    with pytest.raises(RuntimeError, match="boom"):
        generate_instructions(mcfg(12), tmp_path / "r", teacher=MagpieTeacher(crash_on=4), quiet=True)
    assert not (tmp_path / "r" / "completed").exists()
    generate_instructions(mcfg(12), tmp_path / "r", teacher=MagpieTeacher(), quiet=True)
    ref = read_tasks(tmp_path / "ref" / "instructions.jsonl")
    got = read_tasks(tmp_path / "r" / "instructions.jsonl")
    assert [(t.id, t.instruction, t.instances) for t in got] == [(t.id, t.instruction, t.instances) for t in ref]


def test_magpie_kill_9_resume_loses_and_duplicates_nothing(tmp_path):
    num = 10
    subprocess.run([sys.executable, __file__, str(tmp_path / "ref"), str(num), "0"], check=True)
    out = tmp_path / "run"
    from kill_resume import run_killed  # tests/ is on sys.path (tests/conftest.py); not in the child
    kills = run_killed([sys.executable, __file__, str(out), str(num), "0.3"], out, seed=7)
    assert kills >= 1, "the run finished before it could be killed; the test proves nothing"
    ids = [json.loads(line)["id"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids))
    got = read_tasks(out / "instructions.jsonl")
    assert [t.instruction for t in got] == [t.instruction for t in read_tasks(tmp_path / "ref" / "instructions.jsonl")]


def test_magpie_over_an_openai_completions_server_sends_raw_prompts(tmp_path, monkeypatch):
    """The raw path over HTTP: the pre-query goes to /v1/completions as the prompt itself, and the answer
    prompt is the same conversation continued."""
    sys.path.insert(0, str(Path(__file__).parent.parent))
    from fake_http import LocalServer, QuietHandler
    seen = []

    class Handler(QuietHandler):
        def do_POST(self):
            body = self.json_body()
            seen.append((self.path, body.get("prompt")))
            text = ("Suggest four names for a small mountain bakery.<|im_end|>" if body["prompt"].endswith("user\n")
                    else "Summit Loaf, Crumb Peak, Alpine Oven and High Rise.")
            data = json.dumps({"choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                               "usage": {"prompt_tokens": 9, "completion_tokens": 5}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with LocalServer(Handler) as srv:
        s = generate_instructions(mcfg(1, batch_size=1, teacher=f"openai:{srv.url}@m"), tmp_path / "r", quiet=True)
    assert s["kept"] == 1
    assert seen == [("/v1/completions", SMOLLM2_PRE),
                    ("/v1/completions", SMOLLM2_PRE + "Suggest four names for a small mountain bakery.<|im_end|>\n"
                                        "<|im_start|>assistant\n")]
    t = read_tasks(tmp_path / "r" / "instructions.jsonl")[0]
    assert t.instances[0].output == "Summit Loaf, Crumb Peak, Alpine Oven and High Rise."


# ------------------------------------------------------------------------------------------- real teacher

@pytest.mark.slow  # 89-110 s measured on the shared 2-core machine (one torch thread)
def test_embedded_model_writes_magpie_queries_and_answers(tmp_path, embedded_teacher):
    """One batch on SmolLM2-135M-Instruct: it continues its own pre-query (raw ChatML prompt) with user queries;
    every query is kept or dropped with a reason, and queries that passed the rules were answered."""
    c = mcfg(8, teacher="smollm2-135m", batch_size=4, max_new_tokens=40, response_max_new_tokens=40, max_batches=1)
    try:
        generate_instructions(c, tmp_path / "r", teacher=embedded_teacher, quiet=True)
    except RuntimeError as e:  # 8 kept in one batch of 4 is impossible: the run stops after its one call
        assert "made 1 teacher calls" in str(e)
    log = read_tasks(tmp_path / "r" / "log.jsonl")
    assert len(log) == 4 and all(t.kept or t.verdict.reason for t in log)
    queries = [t for t in log if t.verdict.reason not in ("unparseable",)]
    assert queries and all("<|im_" not in t.instruction for t in queries)
    assert any(len(t.instruction.split()) >= 4 for t in queries)  # words, not a stray token
    for t in log:
        if "response" in t.provenance:
            assert t.provenance["response"]["completion_tokens"] > 0
        if t.kept:
            assert t.instances[0].output


if __name__ == "__main__":  # the kill -9 test's subprocess: a real run with the scripted teacher
    generate_instructions(mcfg(int(sys.argv[2])), sys.argv[1], teacher=MagpieTeacher(sleep=float(sys.argv[3])),
                          quiet=True)

"""Evol-Instruct: the evolving and elimination prompts pinned, the parsers and the elimination rules on real and
garbage text, the rounds with a scripted teacher (the pool, provenance, every reason counted, resume after a
crash and after kill -9) and a run on the embedded model."""

import hashlib
import json
import random
import subprocess
import sys
import time

import pytest

from instructgen.config import ConfigError, EVOL_OPERATIONS, generation_config
from instructgen.generator.bootstrap import PACKAGED_SEEDS, generate_instructions
from instructgen.generator.evol import (elimination_reason, parse_equal, parse_evolved, render_evolve,
                                        seed_text)
from instructgen.generator.teachers import Completion
from instructgen.records import Instance, Task, read_seed_tasks, read_tasks
from instructgen.templates import load_template

TEMPLATES = [load_template("evol_depth.chat"), load_template("evol_breadth.chat"), load_template("evol_equal.chat")]

DEPTH_HEAD = (
    "I want you act as a Prompt Rewriter.\n"
    "Your objective is to rewrite a given prompt into a more complex version to make those famous AI systems "
    "(e.g., chatgpt and GPT4) a bit harder to handle.\n"
    "But the rewritten prompt must be reasonable and must be understood and responded by humans.\n"
    "Your rewriting cannot omit the non-text parts such as the table and code in #The Given Prompt#:. Also, "
    "please do not omit the input in #The Given Prompt#.\n"
    "You SHOULD complicate the given prompt using the following method:\n")
DEPTH_TAIL = (
    "\nYou should try your best not to make the #Rewritten Prompt# become verbose, #Rewritten Prompt# can only "
    "add 10 to 20 words into #The Given Prompt#.\n"
    "'#The Given Prompt#', '#Rewritten Prompt#', 'given prompt' and 'rewritten prompt' are not allowed to appear "
    "in #Rewritten Prompt#\n"
    "#The Given Prompt#:\nName three fruits.\n#Rewritten Prompt#:")
METHODS = {  # WizardLM Evol-Instruct/depth.py, verbatim (the stray quote after the first is the authors')
    "constraints": "Please add one more constraints/requirements into #The Given Prompt#'",
    "deepen": "If #The Given Prompt# contains inquiries about certain issues, the depth and breadth of the "
              "inquiry can be increased.",
    "concretize": "Please replace general concepts with more specific concepts.",
    "reasoning": "If #The Given Prompt# can be solved with just a few simple thinking processes, you can rewrite "
                 "it to explicitly request multiple-step reasoning.",
    "complicate_input": "Please add a piece of structured input data (such as a table, JSON, code or a formula) "
                        "that #The Given Prompt# must work on.",
}


# ------------------------------------------------------------------------------------------- pinned prompts

@pytest.mark.parametrize("operation", sorted(METHODS))
def test_in_depth_prompts_are_pinned(operation):
    assert render_evolve(TEMPLATES, operation, "Name three fruits.") == [
        {"role": "user", "content": DEPTH_HEAD + METHODS[operation] + DEPTH_TAIL}]


def test_in_breadth_prompt_is_pinned():
    assert render_evolve(TEMPLATES, "breadth", "Name three fruits.")[0]["content"] == (
        "I want you act as a Prompt Creator.\n"
        "Your goal is to draw inspiration from the #Given Prompt# to create a brand new prompt.\n"
        "This new prompt should belong to the same domain as the #Given Prompt# but be even more rare.\n"
        "The LENGTH and complexity of the #Created Prompt# should be similar to that of the #Given Prompt#.\n"
        "The #Created Prompt# must be reasonable and must be understood and responded by humans.\n"
        "'#Given Prompt#', '#Created Prompt#', 'given prompt' and 'created prompt' are not allowed to appear in "
        "#Created Prompt#\n"
        "#Given Prompt#:\nName three fruits.\n#Created Prompt#:")


def test_elimination_prompt_is_pinned():
    assert TEMPLATES[2].render(first="Name three fruits.", second="Name three tropical fruits.")[0]["content"] == (
        "Here are two Instructions to ChatGPT AI, do you think they are equal to each other, which meet the "
        "following requirements:\n1. They have same constraints and requirments.\n"
        "2. They have same depth and breadth of the inquiry.\n"
        "The First Prompt: Name three fruits.\nThe Second Prompt: Name three tropical fruits.\n"
        "Your Judgement (Just answer: Equal or Not Equal. No need to explain the reason.):")


def test_seed_text_joins_instruction_and_input():
    t = Task(id="s", instruction="Sort the numbers.", instances=[Instance("3, 1, 2", "1, 2, 3")])
    assert seed_text(t) == "Sort the numbers.\n3, 1, 2"
    assert seed_text(Task(id="s", instruction=" Name a color. ")) == "Name a color."


def test_unknown_operation_is_refused_by_config():
    with pytest.raises(ConfigError, match="evol_operations"):
        generation_config(dict(preset="evol", evol_operations=["constraints", "shorten"]))
    assert set(generation_config(dict(preset="evol")).evol_operations) == set(EVOL_OPERATIONS)


# ------------------------------------------------------------------------------------------- pure parsing

@pytest.mark.parametrize("text, equal", [
    ("Not Equal", False), ("Equal", True), (" equal.", True), ("NOT EQUAL - the second adds a constraint", False),
    ("They are different.", False), ("Equal or Not Equal", True), ("", None), ("Sure! Here is", None),
])
def test_parse_equal(text, equal):
    assert parse_equal(text) is equal


def test_parse_evolved():
    assert parse_evolved("  Name three tropical fruits and their origin.\n") == "Name three tropical fruits and their origin."
    assert parse_evolved(" \n ") is None


LONG = " ".join(["The answer explains each step with care"] * 12)  # 84 words


@pytest.mark.parametrize("evolved, response, equal, reason", [
    ("Name three tropical fruits grown in Asia.", "Mango, rambutan and durian.", False, None),
    ("Name three tropical fruits grown in Asia.", "Mango, rambutan and durian.", None, None),  # unclear: kept
    ("Name three tropical fruits grown in Asia.", "Mango.", True, "no_information_gain"),
    ("Name three fruits. #Rewritten Prompt#: Name four.", "Apple.", False, "copied_prompt_words"),
    ("Here is the rewritten prompt: name fruits from Asia", "Apple.", False, "copied_prompt_words"),
    ("Name three tropical fruits grown in Asia.", "Sorry, I cannot help with that.", False, "response_sorry_short"),
    ("Name three tropical fruits grown in Asia.", "sorry " + LONG, False, None),  # 80 words or more: kept
    ("Name three tropical fruits grown in Asia.", "The, and of it ... is!", False, "response_only_stopwords"),
    ("Name three tropical fruits grown in Asia.", None, False, "empty_response"),
])
def test_elimination_rules(evolved, response, equal, reason):
    assert elimination_reason(evolved, response, equal) == reason


# ------------------------------------------------------------------------------------------- orchestration

ADDITIONS = ["using exactly three bullet points", "and justify each choice with a source",
             "for a reader who is nine years old", "in under fifty words", "while comparing two regions",
             "including a worked numerical example", "with a table of advantages and drawbacks"]


class EvolTeacher:
    """A scripted stand-in (orchestration only), stateless: a rewrite adds a phrase to the given prompt (now and
    then copying the prompt's words, or coming back empty), in-breadth invents a task, the judge says Equal for
    some, and some answers are apologies or stop words."""

    name = "fake:evol"
    supports = frozenset({"raw", "chat"})

    def __init__(self, sleep: float = 0.0, crash_on: int = 0):
        self.calls, self.prompts, self.sleep, self.crash_on = 0, [], sleep, crash_on

    def generate(self, prompts, sampling):
        self.calls += 1
        if self.crash_on and self.calls == self.crash_on:
            raise RuntimeError("boom")
        out = []
        for p in prompts:
            text = p[0]["content"]
            self.prompts.append(text)
            h = int(hashlib.sha1(f"{sampling.seed}:{text}".encode()).hexdigest()[:8], 16)
            rng = random.Random(h)
            if text.startswith("I want you act as a Prompt Rewriter"):
                given = text.split("#The Given Prompt#:\n", 1)[1].rsplit("\n#Rewritten Prompt#:", 1)[0]
                body = ("" if h % 13 == 1 else f"#Rewritten Prompt#: {given}" if h % 11 == 1
                        else f"{given.splitlines()[0].rstrip('.')} {rng.choice(ADDITIONS)}, {rng.choice(ADDITIONS)}.")
            elif text.startswith("I want you act as a Prompt Creator"):
                body = f"Describe a rare {rng.choice(['bird', 'mineral', 'dialect', 'festival'])} of {rng.choice(['Peru', 'Norway', 'Laos', 'Chad'])} {rng.choice(ADDITIONS)}."
            elif text.startswith("Here are two Instructions"):
                body = "Equal" if h % 6 == 1 else "Not Equal"
            else:
                body = ("Sorry, I cannot do that." if h % 7 == 1 else "the and of it ." if h % 8 == 1
                        else "A complete, careful answer to: " + text[:60])
            out.append(Completion(body, "stop", 40, max(1, len(body.split()))))
        if self.sleep:
            time.sleep(self.sleep)
        return out


def ecfg(num=20, **kw):
    return generation_config(dict(dict(preset="evol", num=num, batch_size=8, teacher="fake",
                                       seeds=str(SEEDS)), **kw))


SEEDS = None  # set by the fixture below: 16 packaged seeds, so a round is two batches


@pytest.fixture(autouse=True)
def small_seed_file(tmp_path_factory):
    global SEEDS
    if SEEDS is None:
        d = tmp_path_factory.mktemp("seeds")
        SEEDS = d / "seeds.jsonl"
        lines = PACKAGED_SEEDS.read_text().splitlines()[:16]
        SEEDS.write_text("\n".join(lines) + "\n")


def test_evol_rounds_pool_provenance_and_reasons(tmp_path):
    teacher = EvolTeacher()
    s = generate_instructions(ecfg(num=1000, rounds=3), tmp_path / "r", teacher=teacher, quiet=True)
    kept = read_tasks(tmp_path / "r" / "instructions.jsonl")
    rejected = read_tasks(tmp_path / "r" / "rejected.jsonl")
    assert s["kept"] == len(kept) < 1000 and s["batches"] == 3 * 2  # every round done, then it completes
    assert len(kept) + len(rejected) == 3 * 16  # one evolution per seed and round
    assert len(rejected) == s["rejected"] == sum(s["rejected_by_reason"].values())
    for reason in ("no_information_gain", "copied_prompt_words", "response_sorry_short", "response_only_stopwords",
                   "unparseable"):
        assert s["rejected_by_reason"].get(reason, 0) > 0, reason
    by_id = {t.id: t for t in kept}
    seeds = {t.id: t for t in read_seed_tasks(SEEDS)}
    assert {t.provenance["round"] for t in kept} == {1, 2, 3}
    for t in kept:
        p = t.provenance
        assert p["recipe"] == "evol" and p["operation"] in EVOL_OPERATIONS and t.instances[0].output
        parent = by_id.get(p["parent"]) or seeds[p["parent"]]
        if p["round"] > 1 and p["parent"] in by_id:
            assert by_id[p["parent"]].provenance["round"] < p["round"] and parent.provenance["slot"] == p["slot"]
        if p["operation"] != "breadth":  # in-depth rewrites build on the parent's text
            assert (parent.instruction.rstrip(".")[:20] in t.instruction)
    # a failed evolution leaves its parent in the pool: the next round's prompt for that slot shows the parent
    failed = [t for t in rejected if t.provenance["round"] == 1 and t.provenance["slot"] == 0]
    if failed:
        nxt = [t for t in kept + rejected if t.provenance["round"] == 2 and t.provenance["slot"] == 0]
        assert nxt and nxt[0].provenance["parent"] == failed[0].provenance["parent"]


def test_evol_stops_at_num(tmp_path):
    s = generate_instructions(ecfg(num=5), tmp_path / "r", teacher=EvolTeacher(), quiet=True)
    assert s["kept"] == 5 == len(read_tasks(tmp_path / "r" / "instructions.jsonl"))


def test_evol_resume_after_crash_matches_uninterrupted_run(tmp_path):
    generate_instructions(ecfg(num=30), tmp_path / "ref", teacher=EvolTeacher(), quiet=True)
    with pytest.raises(RuntimeError, match="boom"):  # call 8 is the second call of batch 3 (round 2)
        generate_instructions(ecfg(num=30), tmp_path / "r", teacher=EvolTeacher(crash_on=8), quiet=True)
    generate_instructions(ecfg(num=30), tmp_path / "r", teacher=EvolTeacher(), quiet=True)
    ref = read_tasks(tmp_path / "ref" / "instructions.jsonl")
    got = read_tasks(tmp_path / "r" / "instructions.jsonl")
    assert [(t.id, t.instruction, t.provenance["parent"]) for t in got] == \
        [(t.id, t.instruction, t.provenance["parent"]) for t in ref]


def test_evol_kill_9_resume_loses_and_duplicates_nothing(tmp_path):
    num = 20
    subprocess.run([sys.executable, __file__, str(tmp_path / "ref"), str(num), "0", str(SEEDS)], check=True)
    out = tmp_path / "run"
    from kill_resume import run_killed  # tests/ is on sys.path (tests/conftest.py); not in the child
    kills = run_killed([sys.executable, __file__, str(out), str(num), "0.25", str(SEEDS)], out, seed=3)
    assert kills >= 1, "the run finished before it could be killed; the test proves nothing"
    ids = [json.loads(line)["id"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids))
    assert [t.instruction for t in read_tasks(out / "instructions.jsonl")] == \
        [t.instruction for t in read_tasks(tmp_path / "ref" / "instructions.jsonl")]


# ------------------------------------------------------------------------------------------- real teacher

@pytest.mark.slow  # 89-110 s measured on the shared 2-core machine (one torch thread)
def test_embedded_model_evolves_and_eliminates(tmp_path, embedded_teacher):
    """One round over 4 seeds on SmolLM2-135M-Instruct (chat prompts): every evolution is kept or dropped with a
    reason, and those that passed the rules were answered and judged."""
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("\n".join(PACKAGED_SEEDS.read_text().splitlines()[:4]) + "\n")
    c = ecfg(num=4, rounds=1, batch_size=4, teacher="smollm2-135m", seeds=str(seeds), max_new_tokens=40,
             response_max_new_tokens=40)
    s = generate_instructions(c, tmp_path / "r", teacher=embedded_teacher, quiet=True)
    records = read_tasks(tmp_path / "r" / "log.jsonl")
    assert len(records) == 4 and s["kept"] + s["rejected"] == 4 and s["completion_tokens"] > 0
    assert all(t.provenance["round"] == 1 and t.provenance["parent"].startswith("seed_task_") for t in records)
    for t in records:
        if "equal" in t.provenance:
            assert t.provenance["response"]["completion_tokens"] > 0 and "answer" in t.provenance["equal"]


if __name__ == "__main__":  # the kill -9 test's subprocess: a real run with the scripted teacher
    SEEDS = sys.argv[4]
    generate_instructions(ecfg(int(sys.argv[2])), sys.argv[1], teacher=EvolTeacher(sleep=float(sys.argv[3])),
                          quiet=True)

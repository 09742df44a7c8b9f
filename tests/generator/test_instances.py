"""gen instances: pinned prompts, pure parsers and filters on real-looking completions, orchestration with a fake
teacher (resume, kill -9, refusals), and an end-to-end run on the embedded teacher (seeds -> instructions ->
instances -> export messages)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from instructgen.cli import main as cli_main
from instructgen.config import ConfigError
from instructgen.generator.instances import (InstancesConfig, filter_instances, generate_instances,
                                             instances_config, parse_classification_answer, parse_input_first,
                                             parse_output_first)
from instructgen.records import Instance, RecordError, Task, read_tasks, write_jsonl
from instructgen.rundir import RunDirError
from instructgen.templates import load_template

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from instances_fake import FakeInstanceTeacher  # noqa: E402

# ------------------------------------------------------------------------------------ pinned prompts
# A prompt change must show up here as a diff.

CLASSIFICATION_PROMPT = """\
Some tasks ask for one label picked from a small, fixed set of categories (for example positive or negative,
true or false, or one topic out of a list): those are classification tasks. Tasks whose answer is free text, a
number, a list or a rewritten text are not. Say Yes or No for each task.

Task: Tell whether the customer review below is positive, negative or neutral.
Classification: Yes

Task: Write a short poem about the first snow of winter.
Classification: No

Task: Summarize the paragraph in one sentence.
Classification: No

Task: Decide if the two sentences mean the same thing.
Classification: Yes

Task: Translate the sentence into Spanish.
Classification: No

Task: Given a news headline, say which section of a newspaper it belongs in: sports, politics, business or science.
Classification: Yes

Task: Give three tips for staying focused while working from home.
Classification: No

Task: Is the following email a phishing attempt?
Classification: Yes

Task: Solve the equation for x: 3x + 7 = 22.
Classification: No

Task: Rewrite the sentence in the passive voice.
Classification: No

Task: Label the tweet as sarcastic or sincere.
Classification: Yes

Task: Explain why the sky looks blue during the day.
Classification: No

Task: Identify the language of the sentence: English, French, Spanish or German.
Classification: Yes

Task: Suggest a title for the blog post below.
Classification: No

Task: Does the second statement follow from the first one? Answer entailment, contradiction or neutral.
Classification: Yes

Task: List the ingredients needed to make pancakes.
Classification: No

Task: Classify the animal as a mammal, bird, reptile, amphibian or fish.
Classification: Yes

Task: Convert the date to the format YYYY-MM-DD.
Classification: No

Task: Find the names of all the people mentioned in the text.
Classification: No

Task: Say whether the argument below contains a logical fallacy.
Classification: Yes

Task: Write a polite reply declining the meeting invitation.
Classification: No

Task: Rate how urgent this support ticket is: low, medium or high.
Classification: Yes

Task: Compute the average of the numbers in the list.
Classification: No

Task: Is the grammar of this sentence correct?
Classification: Yes

Task: Correct the spelling mistakes in the paragraph.
Classification: No

Task: Tell whether the following statement is true or false.
Classification: Yes

Task: Describe the main character of the story in two sentences.
Classification: No

Task: Put the bank transaction into a budget category: groceries, rent, transport or entertainment.
Classification: Yes

Task: Answer the trivia question.
Classification: No

Task: Which of the two replies, A or B, answers the question better?
Classification: Yes

Task: Plan a three-day trip to Lisbon for a family with two children.
Classification: No

Task: Sort the words alphabetically.
Classification:"""

OUTPUT_FIRST_PROMPT = """\
Each task below sorts an input into one of a few class labels. For each label the task can give, write the
label first and then an input that has that label. If the task takes no input, list the possible labels only.

Task: Tell whether the product review is positive or negative.
Class label: Positive
Input: The battery lasts all day and the screen is easy to read even in sunlight.
Class label: Negative
Input: It stopped charging after a week and nobody answered my emails.

Task: Is the number even or odd?
Class label: Even
Input: 48
Class label: Odd
Input: 13

Task: Decide whether the second sentence follows from the first. Answer yes or no.
Class label: Yes
Input: Sentence 1: Maria locked the door and drove to the airport. Sentence 2: Maria left her house.
Class label: No
Input: Sentence 1: The shop opens at nine. Sentence 2: The shop sells shoes.

Task: Which planet is the largest in the solar system: Mars, Jupiter or Venus?
Class label: Jupiter

Task: Name the part of speech of the underlined word: noun, verb or adjective.
Class label: Noun
Input: The _river_ was wide.
Class label: Verb
Input: They _sing_ every morning.
Class label: Adjective
Input: It was a _quiet_ evening.

Task: Sort the words alphabetically.
Class label:"""

INPUT_FIRST_PROMPT = """\
Write examples for each task. An example gives an input and the output expected for it. Write several
different examples when the task allows it. If the task needs no input, write the output only.

Task: Convert the temperature from Celsius to Fahrenheit.
Example 1
Input: 25 °C
Output: 77 °F
Example 2
Input: -10 °C
Output: 14 °F
Example 3
Input: 100 °C
Output: 212 °F

Task: Suggest a name for a bakery that sells only bread.
Example 1
Output: Crust & Crumb
Example 2
Output: The Daily Loaf

Task: Fix the grammar of the sentence.
Example 1
Input: She don't like going to school on mondays.
Output: She doesn't like going to school on Mondays.
Example 2
Input: Me and him was late because the bus were slow.
Output: He and I were late because the bus was slow.

Task: Give two reasons why people keep a diary.
Example 1
Output: A diary helps people sort out their thoughts and feelings, and it keeps a record of events they would otherwise forget.

Task: Find the largest number in the list.
Example 1
Input: [4, 17, 9, 12]
Output: 17
Example 2
Input: [-3, -8, -1]
Output: -1

Task: Write a question a student could ask about the paragraph.
Example 1
Input: Bees visit flowers to collect nectar, which they turn into honey. While doing so they carry pollen from one flower to another.
Output: Why does a bee carry pollen from one flower to the next?

Task: Sort the words alphabetically.
Example 1
"""


@pytest.mark.parametrize("name,expected", [("is_classification.completion", CLASSIFICATION_PROMPT),
                                           ("instances_output_first.completion", OUTPUT_FIRST_PROMPT),
                                           ("instances_input_first.completion", INPUT_FIRST_PROMPT)])
def test_rendered_prompts_are_pinned(name, expected):
    assert load_template(name).render(instruction="Sort the words alphabetically.") == expected


def test_classification_template_has_about_30_labelled_examples_of_both_kinds():
    src = load_template("is_classification.completion").source
    yes, no = src.count("Classification: Yes"), src.count("Classification: No")
    assert 28 <= yes + no <= 36 and yes >= 10 and no >= 10


# ------------------------------------------------------------------------------------ pure parsers

@pytest.mark.parametrize("text,expected", [(" Yes", True), (" yes\n", True), ("YES.", True), (" No", False),
                                           ("no", False), (" Maybe", None), ("", None), ("???", None),
                                           (" Yesterday", None)])
def test_classification_answer(text, expected):
    assert parse_classification_answer(text) is expected


# Completions below were written by SmolLM2-135M-Instruct on our templates (greedy), or shaped like them.
def test_input_first_numbered_examples():
    text = ("Input: 10\nOutput: 10π ≈ 2.4986\nExample 2\nInput: 5\nOutput: 5π ≈ 3.7986\n\n\n")
    assert parse_input_first(text) == [Instance("10", "10π ≈ 2.4986"), Instance("5", "5π ≈ 3.7986")]


def test_input_first_output_directly_and_multiline():
    text = "Output: The movie is positive.\nExample 2\nOutput: Line one\nline two\n"
    assert parse_input_first(text) == [Instance("", "The movie is positive."), Instance("", "Line one\nline two")]


def test_input_first_unnumbered_pairs_and_model_written_header():
    assert parse_input_first("Input: a\nOutput: b\nInput: c\nOutput: d") == [Instance("a", "b"), Instance("c", "d")]
    assert parse_input_first("Example 1:\nInput: a\nOutput: b\n\nExample 2.\nInput: c\nOutput: d\n") == \
        [Instance("a", "b"), Instance("c", "d")]


def test_input_first_repeated_output_lines_are_separate_instances():
    text = "Input: 100\nOutput: 100π\nOutput: 100π\n\n\n"
    assert parse_input_first(text) == [Instance("100", "100π"), Instance("", "100π")]


def test_input_first_bare_text_is_a_direct_output_and_input_without_output_is_empty():
    assert parse_input_first(" Crust and Crumb\nExample 2\nOutput: Loaf\nExample 3\n") == \
        [Instance("", "Crust and Crumb"), Instance("", "Loaf")]
    assert parse_input_first("Input: half an example") == [Instance("half an example", "")]
    assert parse_input_first("Input: <noinput>\nOutput: hello") == [Instance("", "hello")]


def test_input_first_truncated_text_keeps_its_partial_last_instance_for_the_filter_to_drop():
    insts = parse_input_first("Input: Brazil\nOutput: Brasília\nExample 2\nInput: Fra")
    assert insts == [Instance("Brazil", "Brasília"), Instance("Fra", "")]
    v = filter_instances(insts, truncated=True)
    assert v.kept == [Instance("Brazil", "Brasília")] and v.dropped == [(Instance("Fra", ""), "truncated")]


@pytest.mark.parametrize("garbage", ["", "   \n\n", "Example 2\n", "Example 1\nExample 2\n"])
def test_input_first_empty_or_header_only_gives_nothing(garbage):
    assert parse_input_first(garbage) == []


def test_output_first_labels_then_inputs():
    text = " Positive\nInput: great phone\nClass label: Negative\nInput: it broke\n"
    assert parse_output_first(text) == [Instance("great phone", "Positive"), Instance("it broke", "Negative")]


def test_output_first_labels_only_and_inputs_on_following_lines():
    assert parse_output_first(" Jupiter\nClass label: Mars") == [Instance("", "Jupiter"), Instance("", "Mars")]
    assert parse_output_first(" Positive\nI loved it\nClass label: Negative\nInput: awful") == \
        [Instance("I loved it", "Positive"), Instance("awful", "Negative")]


def test_output_first_real_rambling_completion():
    # SmolLM2-135M on "Classify the sentence as a question or a statement." (presence penalty 1.5)
    text = (" Question\nInput: The_city_ is a big one.\nClass label: Statement\n"
            "Output: Sentence 1: It's a big city. Sentence 2: It's a big city.\n"
            "Output: Sentence 1: It's a big city. Sentence 2: It's a big city.")
    insts = parse_output_first(text)
    assert [i.output for i in insts] == ["Question", "Statement"]
    assert insts[0].input == "The_city_ is a big one." and insts[1].input.startswith("Output: Sentence 1")


@pytest.mark.parametrize("garbage", ["", "\n\n", "Class label:\n"])
def test_output_first_garbage_gives_nothing(garbage):
    assert parse_output_first(garbage) == []


def test_output_first_input_without_label_has_empty_output():
    assert parse_output_first("Input: orphan") == [Instance("orphan", "")]


# ------------------------------------------------------------------------------------ pure filters

def test_each_instance_filter_reason():
    insts = [Instance("x", "x"), Instance("q", ""), Instance("Question:", "a"), Instance("q2", "Answer:"),
             Instance("a", "1"), Instance("a", "1"), Instance("", "free")]
    v = filter_instances(insts, truncated=False)
    assert v.kept == [Instance("a", "1"), Instance("", "free")] and v.task_reason is None
    assert [r for _, r in v.dropped] == ["input_equals_output", "empty_output", "ends_with_colon",
                                         "ends_with_colon", "duplicate"]


def test_same_input_different_outputs_drops_the_whole_task():
    v = filter_instances([Instance("same", "A"), Instance("other", "C"), Instance("same", "B")], truncated=False)
    assert v.task_reason == "conflicting_outputs" and v.kept == []
    assert sorted(r for _, r in v.dropped) == ["conflicting_outputs"] * 3
    # an empty input shared by several direct outputs is not a conflict
    assert filter_instances([Instance("", "A"), Instance("", "B")], truncated=False).kept == \
        [Instance("", "A"), Instance("", "B")]


def test_at_most_max_instances_first_ones_kept_and_every_instance_accounted_for():
    insts = [Instance(f"in {k}", f"out {k}") for k in range(8)]
    v = filter_instances(insts, truncated=True, max_instances=5)
    assert v.kept == insts[:5]
    assert [r for _, r in v.dropped] == ["truncated", "over_max_instances", "over_max_instances"]
    assert len(v.kept) + len(v.dropped) == len(insts)


def test_no_instances_and_no_valid_instances_are_task_reasons():
    assert filter_instances([], truncated=False).task_reason == "no_instances_parsed"
    assert filter_instances([Instance("a", "a")], truncated=False).task_reason == "no_valid_instances"
    assert filter_instances([Instance("a", "b")], truncated=True).task_reason == "no_valid_instances"


# ------------------------------------------------------------------------------------ orchestration (fake teacher)

INSTRUCTIONS = ["Give the label of the review as good or bad.", "Summarize the meeting notes in a sentence.",
                "Answer the question about history.", "This task will conflict with itself.",
                "Return nothing for this task.", "Write a long essay about rivers.", "Pick the label for the fruit.",
                "Translate the sentence into French.", "Be unsure whether this is classification.",
                "Explain the rule of thirds in photography.", "Suggest a gift for a teacher.",
                "Compute the sum of the digits."]


def write_input(path: Path, extra: list[Task] = ()) -> Path:
    tasks = [Task(id=f"gen-{k:03d}", instruction=s) for k, s in enumerate(INSTRUCTIONS)] + list(extra)
    write_jsonl(path, tasks)
    return path


def lines(p: Path) -> list[dict]:
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]


def test_run_completes_every_task_once_and_counts_every_drop(tmp_path):
    inp = write_input(tmp_path / "in.jsonl")
    teacher = FakeInstanceTeacher()
    s = generate_instances(InstancesConfig(batch_size=5), inp, tmp_path / "out", teacher=teacher, quiet=True)
    out = tmp_path / "out"
    kept, rejected = read_tasks(out / "tasks.jsonl"), read_tasks(out / "rejected.jsonl")
    assert sorted(t.id for t in kept + rejected) == [f"gen-{k:03d}" for k in range(len(INSTRUCTIONS))]
    assert (out / "completed").exists() and json.loads((out / "summary.json").read_text()) == s
    assert s["kept"] == len(kept) == 10 and s["rejected_by_reason"] == {"conflicting_outputs": 1,
                                                                         "no_instances_parsed": 1}
    by_id = {t.id: t for t in kept + rejected}
    clf = by_id["gen-000"]
    assert clf.is_classification is True and clf.instances[0].output == "Good"
    assert by_id["gen-001"].is_classification is False
    n = sum(map(ord, INSTRUCTIONS[1])) % 97  # the fake teacher's numbering
    assert by_id["gen-001"].instances == [Instance(f"question {n}", f"answer {n}"), Instance("", f"answer {n} alone")]
    assert by_id["gen-008"].provenance["classification"]["unclear"] and by_id["gen-008"].is_classification is False
    long_ = by_id["gen-005"]
    assert {d["reason"] for d in long_.meta["dropped_instances"]} == {"truncated", "duplicate", "input_equals_output"}
    # every instance drop is explainable and counted
    n_drops = sum(len(t.meta["dropped_instances"]) for t in kept + rejected)
    assert s["instances_dropped"] == n_drops == sum(s["instances_dropped_by_reason"].values())
    assert s["instances_kept"] == sum(len(t.instances) for t in kept)
    assert s["classification"] == {"asked_no": 9, "asked_yes": 2, "unclear_no": 1}
    assert all(t.provenance["instances"]["teacher"] == "fake:instances" for t in kept)
    assert teacher.calls == 2 * 3  # identification + generation per batch of 5 (12 tasks: 3 batches)
    assert (out / "templates" / "is_classification.completion.jinja2").exists()


def test_known_classification_and_assume_flag_skip_the_identification_call(tmp_path):
    seeds = [Task(id="s1", instruction="Pick the label for the colour.", is_classification=False)]
    inp = write_input(tmp_path / "in.jsonl", seeds)
    teacher = FakeInstanceTeacher()
    generate_instances(InstancesConfig(batch_size=50, assume_classification="no"), inp, tmp_path / "a",
                       teacher=teacher, quiet=True)
    assert teacher.calls == 1 and not any(p.endswith("Classification:") for p in teacher.prompts)
    assert all(not p.endswith("Class label:") for p in teacher.prompts)
    t2 = FakeInstanceTeacher()
    s = generate_instances(InstancesConfig(batch_size=50), inp, tmp_path / "b", teacher=t2, quiet=True)
    asked = [p for p in t2.prompts if p.endswith("Classification:")]
    assert len(asked) == len(INSTRUCTIONS) and "colour" not in "".join(asked)
    assert s["classification"].get("given_no") == 1


def test_tasks_with_instances_pass_through_and_dropped_input_is_skipped(tmp_path):
    have = Task(id="h1", instruction="Name a colour.", instances=[Instance("", "Blue")])
    gone = Task(id="d1", instruction="Dropped upstream.").drop("too_short", filter="length")
    inp = write_input(tmp_path / "in.jsonl", [have, gone])
    teacher = FakeInstanceTeacher()
    s = generate_instances(InstancesConfig(), inp, tmp_path / "o", teacher=teacher, quiet=True)
    kept = {t.id: t for t in read_tasks(tmp_path / "o" / "tasks.jsonl")}
    assert kept["h1"].instances == [Instance("", "Blue")] and "d1" not in kept
    assert s["passed_through"] == 1 and s["skipped_not_kept"] == 1
    assert not any("Name a colour." in p for p in teacher.prompts)


def test_done_is_a_no_op_and_a_different_config_or_input_is_refused(tmp_path):
    inp = write_input(tmp_path / "in.jsonl")
    generate_instances(InstancesConfig(batch_size=4), inp, tmp_path / "o", teacher=FakeInstanceTeacher(), quiet=True)
    before = (tmp_path / "o" / "tasks.jsonl").read_bytes()
    t = FakeInstanceTeacher()
    generate_instances(InstancesConfig(batch_size=4), inp, tmp_path / "o", teacher=t, quiet=True)
    assert t.calls == 0 and (tmp_path / "o" / "tasks.jsonl").read_bytes() == before
    with pytest.raises(RunDirError, match="max_instances"):
        generate_instances(InstancesConfig(batch_size=4, max_instances=3), inp, tmp_path / "o", teacher=t, quiet=True)
    write_input(inp, [Task(id="new", instruction="One more task to do.")])
    with pytest.raises(RunDirError, match="input_fingerprint"):
        generate_instances(InstancesConfig(batch_size=4), inp, tmp_path / "o", teacher=t, quiet=True)
    assert t.calls == 0
    generate_instances(InstancesConfig(batch_size=4), inp, tmp_path / "o", overwrite=True, teacher=t, quiet=True)
    assert len(read_tasks(tmp_path / "o" / "tasks.jsonl")) == 11


def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path):
    inp = write_input(tmp_path / "in.jsonl")
    cfg = InstancesConfig(batch_size=2)
    generate_instances(cfg, inp, tmp_path / "ref", teacher=FakeInstanceTeacher(), quiet=True)
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate_instances(cfg, inp, tmp_path / "o", teacher=FakeInstanceTeacher(fail_on_call=7), quiet=True)
    assert not (tmp_path / "o" / "completed").exists()
    assert 0 < len(lines(tmp_path / "o" / "log.jsonl")) < len(INSTRUCTIONS)
    generate_instances(cfg, inp, tmp_path / "o", teacher=FakeInstanceTeacher(), quiet=True)
    assert _comparable(tmp_path / "o") == _comparable(tmp_path / "ref")


def test_resume_redoes_a_torn_half_written_batch(tmp_path):
    inp = write_input(tmp_path / "in.jsonl")
    cfg = InstancesConfig(batch_size=4)
    generate_instances(cfg, inp, tmp_path / "ref", teacher=FakeInstanceTeacher(), quiet=True)
    o = tmp_path / "o"
    generate_instances(cfg, inp, o, teacher=FakeInstanceTeacher(), quiet=True)
    data = (o / "log.jsonl").read_text().splitlines(keepends=True)
    (o / "log.jsonl").write_text("".join(data[:6]) + data[6][:40])  # batch 1 half written, last line torn
    for name in ("completed", "summary.json", "tasks.jsonl", "rejected.jsonl"):
        (o / name).unlink()
    generate_instances(cfg, inp, o, teacher=FakeInstanceTeacher(), quiet=True)
    assert _comparable(o) == _comparable(tmp_path / "ref")


def test_kill_9_mid_run_loses_and_duplicates_nothing(tmp_path):
    inp = write_input(tmp_path / "in.jsonl")
    out = tmp_path / "o"
    env = dict(os.environ, PYTHONPATH=str(HERE.parent.parent))
    script = [sys.executable, str(HERE / "instances_fake.py"), str(inp), str(out)]
    p = subprocess.Popen(script, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and len(lines(out / "log.jsonl") if (out / "log.jsonl").exists() else []) < 4:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (out / "completed").exists()
    subprocess.run(script, env=env, check=True)
    ids = [t["id"] for t in lines(out / "tasks.jsonl") + lines(out / "rejected.jsonl")]
    assert sorted(ids) == [f"gen-{k:03d}" for k in range(len(INSTRUCTIONS))]
    log_ids = [t["id"] for t in lines(out / "log.jsonl")]
    assert len(log_ids) == len(set(log_ids)) == len(INSTRUCTIONS)


def _comparable(out: Path) -> list:
    drop = ("created_at",)
    return [{k: v for k, v in t.items() if k not in ("provenance",)} | {
        "provenance": {k: {kk: vv for kk, vv in v.items() if kk not in drop} if isinstance(v, dict) else v
                       for k, v in t["provenance"].items()}}
            for t in lines(out / "tasks.jsonl") + lines(out / "rejected.jsonl")]


def test_bad_input_and_config_fail_before_any_model_call(tmp_path):
    t = FakeInstanceTeacher()
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(RecordError, match="holds no tasks"):
        generate_instances(InstancesConfig(), tmp_path / "empty.jsonl", tmp_path / "o", teacher=t)
    (tmp_path / "bad.jsonl").write_text('{"instruction": "ok task here", "instances": []}\n{"instruction": 3}\n')
    with pytest.raises(RecordError, match="bad.jsonl:2"):
        generate_instances(InstancesConfig(), tmp_path / "bad.jsonl", tmp_path / "o", teacher=t)
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text('{"stage": "instructions", "config": {}}')
    with pytest.raises(RecordError, match="not complete"):
        generate_instances(InstancesConfig(), half, tmp_path / "o", teacher=t)
    with pytest.raises(ConfigError, match="--assume-classification"):
        instances_config({"assume_classification": "maybe"})
    with pytest.raises(ConfigError, match="unknown option"):
        instances_config({"max_instance": 3})
    assert t.calls == 0 and not (tmp_path / "o").exists()


def test_cli_defaults_out_into_a_folder_and_requires_it_for_a_file(tmp_path, capsys):
    inp = write_input(tmp_path / "in.jsonl")
    assert cli_main(["instances", str(inp), "--quiet"]) == 2
    assert "--out is required" in capsys.readouterr().err
    assert cli_main(["instances", str(inp), "--teacher", "nope:x", "--out", str(tmp_path / "o")]) == 2
    assert "unknown teacher backend" in capsys.readouterr().err
    assert cli_main(["instances", str(inp), "--max-instances", "3", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["max_instances"] == 3


def test_help_does_not_import_torch():
    code = ("import sys\nfrom instructgen.cli import main\ntry:\n    main(['instances', '--help'])\n"
            "except SystemExit:\n    pass\ntry:\n    main(['export', '--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nassert 'datasets' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------------ embedded teacher, end to end

@pytest.mark.slow
def test_embedded_teacher_seeds_to_instructions_to_instances_to_messages(tmp_path, embedded_teacher):
    """Acceptance: seeds -> gen instructions --num 10 -> gen instances -> gen export --format messages."""
    from instructgen.config import generation_config
    from instructgen.export import export
    from instructgen.generator.bootstrap import generate_instructions

    gcfg = generation_config(dict(num=10, batch_size=16, max_new_tokens=96))  # short budgets: CPU minutes
    s1 = generate_instructions(gcfg, tmp_path / "instructions", teacher=embedded_teacher, quiet=True)
    assert s1["kept"] == 10
    icfg = InstancesConfig(batch_size=16, max_new_tokens=64)
    s2 = generate_instances(icfg, tmp_path / "instructions", tmp_path / "instances", teacher=embedded_teacher,
                            quiet=True)
    assert s2["kept"] + s2["rejected"] == 10 and s2["kept"] >= 1, s2
    assert sum(s2["classification"].values()) == 10
    kept = read_tasks(tmp_path / "instances" / "tasks.jsonl")
    assert all(t.instances and all(i.output.strip() for i in t.instances) for t in kept)
    assert all(t.is_classification in (True, False) for t in kept)
    n = export(tmp_path / "instances", "messages", tmp_path / "train.jsonl")
    rows = lines(tmp_path / "train.jsonl")
    assert n == len(rows) == s2["instances_kept"] >= 1
    for r in rows:
        assert list(r) == ["messages"] and [m["role"] for m in r["messages"]] == ["user", "assistant"]
        assert all(isinstance(m["content"], str) and m["content"].strip() for m in r["messages"])

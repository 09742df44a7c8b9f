import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from instructgen.config import generation_config
from instructgen.generator.bootstrap import (PACKAGED_SEEDS, generate_instructions, parse_numbered_list,
                                             sample_shown)
from instructgen.records import read_seed_tasks, read_tasks
from instructgen.rundir import RunDirError

sys.path.insert(0, str(Path(__file__).parent))
from fake_teacher import FakeTeacher  # noqa: E402

HERE = Path(__file__).parent


# ------------------------------------------------------------------------------------------- pure parsing

def test_parse_continuation_of_item_9():
    text = (" Suggest a name for a bakery that sells vegan cakes.\n10. Explain why the sky is blue to a child.\n"
            "11 . Convert 5 miles to kilometers.\n12) Rewrite the sentence in passive voice.\n13.")
    assert parse_numbered_list(text, 9) == [
        "Suggest a name for a bakery that sells vegan cakes.", "Explain why the sky is blue to a child.",
        "Convert 5 miles to kilometers.", "Rewrite the sentence in passive voice."]


def test_parse_keeps_case_and_multiline_items_and_decimals():
    text = " what IS the GDP of France\nin 2020?\n10. Multiply 3.5 by 2."
    # whitespace collapsed, case kept (the original's lower-casing pitfall is not reproduced)
    assert parse_numbered_list(text, 9) == ["what IS the GDP of France in 2020?", "Multiply 3.5 by 2."]


def test_parse_chat_reply_with_preamble():
    text = "Sure! Here are more tasks:\n9. Plan a picnic menu for six people.\n10. Name three mammals that lay eggs."
    assert parse_numbered_list(text, None) == ["Plan a picnic menu for six people.",
                                                "Name three mammals that lay eggs."]


@pytest.mark.parametrize("garbage", ["", "   \n\n ", "\n10.\n11.\n12."])
def test_parse_garbage_gives_nothing(garbage):
    assert parse_numbered_list(garbage, 9) == []


def test_parse_unnumbered_chat_reply_gives_nothing():
    assert parse_numbered_list("I cannot help with that.", None) == []


def test_sample_shown_uses_machine_pool_only_when_it_exists():
    seeds = read_seed_tasks(PACKAGED_SEEDS)
    rng = random.Random(0)
    shown = sample_shown(rng, seeds, [], 8, 2)
    assert len(shown) == 8 and all(t.source == "seed" for t in shown)
    machine = seeds[:1]
    for t in machine:
        t.source = "generated"
    shown = sample_shown(rng, seeds[1:], machine, 8, 2)
    assert len(shown) == 8 and sum(t.source == "generated" for t in shown) == 1


# ------------------------------------------------------------------------------------------- orchestration

def cfg(num=12, **kw):
    return generation_config(dict(num=num, batch_size=3, teacher="fake", **kw))


def test_run_keeps_exactly_num_and_counts_every_rejection(tmp_path):
    s = generate_instructions(cfg(15), tmp_path / "r", teacher=FakeTeacher(length_every=2, garbage_every=3),
                              quiet=True)
    kept = read_tasks(tmp_path / "r" / "instructions.jsonl")
    rejected = read_tasks(tmp_path / "r" / "rejected.jsonl")
    assert len(kept) == 15 == s["kept"]
    assert len(rejected) == s["rejected"] == sum(s["rejected_by_reason"].values())
    reasons = set(s["rejected_by_reason"])
    assert {"truncated_completion", "unparseable"} <= reasons
    assert any(r.startswith("blacklist:") for r in reasons)
    for t in kept:
        assert t.kept and t.source == "generated" and t.provenance["teacher"] == "fake:deterministic"
        assert t.provenance["sampling"]["temperature"] == 0.7 and t.provenance["sampling"]["top_p"] == 0.5
        assert 0 <= t.scores["rouge_l_max"] <= 0.7 and len(t.meta["most_similar"]) <= 10
    for t in rejected:
        if t.verdict.reason == "truncated_completion":
            assert t.provenance["finish_reason"] == "length"
        if t.verdict.reason.startswith("rouge_l"):
            assert t.scores["rouge_l_max"] > 0.7 and t.verdict.duplicate_of
    assert (tmp_path / "r" / "completed").exists()
    conf = json.loads((tmp_path / "r" / "config.json").read_text())["config"]
    assert conf["presence_penalty"] == 2.0 and conf["stop"] == ["\n\n", "\n16", "16.", "16 ."]


def test_completed_run_is_a_no_op_and_other_config_is_refused(tmp_path):
    out = tmp_path / "r"
    generate_instructions(cfg(6), out, teacher=FakeTeacher(), quiet=True)
    before = (out / "log.jsonl").read_bytes()
    t = FakeTeacher()
    generate_instructions(cfg(6), out, teacher=t, quiet=True)
    assert t.calls == 0 and (out / "log.jsonl").read_bytes() == before
    with pytest.raises(RunDirError, match="temperature: 0.7 -> 0.9"):
        generate_instructions(cfg(6, temperature=0.9), out, teacher=FakeTeacher(), quiet=True)
    generate_instructions(cfg(6, temperature=0.9), out, teacher=FakeTeacher(), quiet=True, overwrite=True)
    assert json.loads((out / "config.json").read_text())["config"]["temperature"] == 0.9


class Boom(Exception):
    pass


class CrashingTeacher(FakeTeacher):
    def __init__(self, crash_on: int):
        super().__init__()
        self.crash_on = crash_on

    def generate(self, prompts, sampling):
        if self.calls + 1 == self.crash_on:
            raise Boom()
        return super().generate(prompts, sampling)


def test_resume_after_crash_matches_uninterrupted_run(tmp_path):
    generate_instructions(cfg(40), tmp_path / "ref", teacher=FakeTeacher(), quiet=True)
    with pytest.raises(Boom):
        generate_instructions(cfg(40), tmp_path / "r", teacher=CrashingTeacher(crash_on=3), quiet=True)
    assert not (tmp_path / "r" / "completed").exists()
    generate_instructions(cfg(40), tmp_path / "r", teacher=FakeTeacher(), quiet=True)
    ref = [t.instruction for t in read_tasks(tmp_path / "ref" / "instructions.jsonl")]
    got = [t.instruction for t in read_tasks(tmp_path / "r" / "instructions.jsonl")]
    assert got == ref


@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_kill_9_at_random_points_loses_and_duplicates_nothing(tmp_path, mode):
    """A real process of the bootstrap loop is killed with SIGKILL at random moments, then resumed; `stream`:
    batches overlapping on a streaming teacher (tests/generator/test_stream.py)."""
    num = 60
    ref = tmp_path / "ref"
    subprocess.run([sys.executable, str(HERE / "run_fake.py"), str(ref), str(num), str(HERE), mode], check=True)
    out = tmp_path / "run"
    rng = random.Random(1234)
    kills = 0
    for attempt in range(12):
        p = subprocess.Popen([sys.executable, str(HERE / "run_fake.py"), str(out), str(num), str(HERE), mode])
        if attempt < 4:
            time.sleep(rng.uniform(0.8, 2.0))  # python start-up + imports take ~0.7 s
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                kills += 1
        p.wait()
        if (out / "completed").exists():
            break
    assert kills >= 2, "the run finished before it could be killed; the test proves nothing"
    assert (out / "completed").exists()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    ids = [r["id"] for r in log]
    assert len(ids) == len(set(ids)), "duplicated records in the log"
    kept = read_tasks(out / "instructions.jsonl")
    assert len(kept) == num and len({t.id for t in kept}) == num
    assert [t.instruction for t in kept] == [t.instruction for t in read_tasks(ref / "instructions.jsonl")]
    assert ids == [json.loads(line)["id"] for line in (ref / "log.jsonl").read_text().splitlines()]


def test_packaged_seeds_are_the_default_and_valid():
    seeds = read_seed_tasks(PACKAGED_SEEDS)
    assert len(seeds) >= 100 and sum(bool(t.is_classification) for t in seeds) >= 20


# ------------------------------------------------------------------------------------------- real teacher

def test_embedded_teacher_bootstraps_real_instructions(tmp_path, embedded_teacher):
    c = generation_config(dict(num=6, batch_size=8, teacher="smollm2-135m", max_new_tokens=256))
    s = generate_instructions(c, tmp_path / "r", teacher=embedded_teacher, quiet=True)
    kept = read_tasks(tmp_path / "r" / "instructions.jsonl")
    seeds = {t.instruction for t in read_seed_tasks(PACKAGED_SEEDS)}
    assert len(kept) == 6 and s["completion_tokens"] > 0
    for t in kept:
        assert t.instruction not in seeds and len(t.instruction.split()) >= 4
        assert t.provenance["teacher"] == "transformers:smollm2-135m"


def test_teacher_options_are_checked_before_anything_is_written(tmp_path):
    from instructgen.generator.teachers import TeacherSpecError
    c = generation_config(dict(num=2, teacher="smollm2-135m", teacher_options={"devise": "cuda"}))
    with pytest.raises(TeacherSpecError, match="devise"):
        generate_instructions(c, tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()


def test_budget_flags_change_nothing_a_run_is_identified_by(tmp_path):
    """A finished run re-run with other prices or limits is the same run: a no-op, not a refusal."""
    out = tmp_path / "r"
    generate_instructions(cfg(6), out, teacher=FakeTeacher(), quiet=True)
    t = FakeTeacher()
    s = generate_instructions(cfg(6, max_cost=5.0, price_input_per_m=3.0, max_tokens=10**6), out, teacher=t,
                              quiet=True)
    assert t.calls == 0 and s["kept"] == 6


def test_a_teacher_built_by_the_stage_is_closed_also_on_a_budget_stop(tmp_path, monkeypatch):
    from instructgen.generator import teachers
    built = []

    class Closing(FakeTeacher):
        closed = 0

        def close(self):
            self.closed += 1

    def make(spec, **kw):
        built.append(Closing())
        return built[-1]

    monkeypatch.setattr(teachers, "make_teacher", make)
    embedded = dict(batch_size=3, teacher="smollm2-135m")  # a spec that validates; make_teacher is the fake
    generate_instructions(generation_config(dict(embedded, num=3)), tmp_path / "a", quiet=True)
    with pytest.raises(teachers.BudgetReached):
        generate_instructions(generation_config(dict(embedded, num=30, max_tokens=1)), tmp_path / "b", quiet=True)
    assert [t.closed for t in built] == [1, 1] and built[1].calls == 1  # one call, then the budget was spent

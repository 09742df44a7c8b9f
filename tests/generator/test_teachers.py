"""The shape every teacher has (teachers.py): what make_teacher returns around any backend, capabilities,
close, on_tokens, and the shared finish-reason rule. A stand-in backend tests the wrapper's orchestration only;
the backends themselves are tested against real servers and models in their own files."""

from __future__ import annotations

import pytest

from instructgen.generator import teachers
from instructgen.generator.teachers import (CAPABILITIES, TEACHERS, Budget, BudgetReached, Completion,
                                            MeteredTeacher, Sampling, TeacherSpecError, finish_reason, make_teacher)


class Backend:
    """Records its calls; answers each prompt with its own text and (len(prompt), 2) tokens."""

    def __init__(self, model, supports=("raw", "chat"), old_signature=False, **kw):
        self.name, self.kw, self.calls, self.closed = f"stub:{model}", kw, [], 0
        self.supports = frozenset(supports)
        self.max_attempts = 6
        if old_signature:  # a backend written before on_tokens existed
            self.generate = lambda prompts, sampling: self._gen(prompts, sampling, None)

    def generate(self, prompts, sampling, on_tokens=None):
        return self._gen(prompts, sampling, on_tokens)

    def _gen(self, prompts, sampling, on_tokens):
        self.calls.append(list(prompts))
        out = [Completion(text=str(p), finish_reason="stop", prompt_tokens=len(str(p)), completion_tokens=2)
               for p in prompts]
        if on_tokens:
            for c in out:
                on_tokens(c.completion_tokens)
        return out

    def close(self):
        self.closed += 1


@pytest.fixture
def stub(monkeypatch):
    monkeypatch.setitem(TEACHERS, "stub", (lambda model, **kw: Backend(model, **kw), "a test backend"))
    return "stub:m"


def test_make_teacher_meters_every_backend_and_forwards_its_attributes(stub):
    t = make_teacher(stub, batch_size=4)
    assert isinstance(t, MeteredTeacher) and isinstance(t.inner, Backend)
    assert t.name == "stub:m" and t.kw == {"batch_size": 4}
    t.max_attempts = 2  # e.g. the judge's probe: it must reach the backend, not stay on the wrapper
    assert t.inner.max_attempts == 2 and "max_attempts" not in vars(t)
    out = t.generate(["abc", "de"], Sampling())
    assert [c.text for c in out] == ["abc", "de"]
    assert (t.usage.prompt_tokens, t.usage.completion_tokens, t.usage.requests) == (5, 4, 2)


def test_on_tokens_passes_through_and_an_old_backend_still_works(monkeypatch):
    monkeypatch.setitem(TEACHERS, "old", (lambda model, **kw: Backend(model, old_signature=True), "old"))
    seen = []
    new = MeteredTeacher(Backend("n"))
    new.generate(["a", "b"], Sampling(), on_tokens=seen.append)
    assert seen == [2, 2]
    old = make_teacher("old:x")
    assert [c.text for c in old.generate(["a"], Sampling())] == ["a"]  # no on_tokens given: old signature ok


def test_close_is_idempotent_and_a_context_manager(stub):
    with make_teacher(stub) as t:
        t.generate(["a"], Sampling())
    t.close()
    assert t.inner.closed == 1


def test_supports_and_logprobs_refused_where_unsupported(stub):
    t = make_teacher(stub)
    assert t.supports == {"raw", "chat"} and set(t.supports) <= set(CAPABILITIES)
    with pytest.raises(TeacherSpecError, match=r"stub:m does not return token log-probabilities \(it supports: "
                                               r"chat, raw\)"):
        t.generate(["a"], Sampling(logprobs=2))
    assert t.inner.calls == []  # refused before the backend was called
    lp = MeteredTeacher(Backend("m", supports=("raw", "chat", "logprobs")))
    lp.generate(["a"], Sampling(logprobs=2))
    assert lp.inner.calls == [["a"]]


def test_the_budget_is_checked_before_each_call(stub):
    t = make_teacher(stub, budget=Budget(max_tokens=10))
    t.generate(["abcd"], Sampling())  # 4 + 2 = 6 tokens
    t.generate(["abcd"], Sampling())  # started at 6 < 10: runs, 12
    with pytest.raises(BudgetReached, match="12 tokens reached the budget"):
        t.generate(["abcd"], Sampling())
    assert len(t.inner.calls) == 2


def test_rps_is_for_http_teachers_only(stub):
    with pytest.raises(TeacherSpecError, match=r"rps .* HTTP teachers \(openai:...\), not transformers"):
        make_teacher("smollm2-135m", rps=2)
    t = make_teacher("openai:http://127.0.0.1:9/v1@m", rps=4)
    assert t.client.rate.interval == 0.25


@pytest.mark.parametrize("reported, hit_stop, ours", [("length", False, "length"), ("length", True, "stop"),
                                                      ("stop", False, "stop"), (None, False, "stop"),
                                                      ("eos", False, "stop")])
def test_finish_reason(reported, hit_stop, ours):
    assert finish_reason(reported, hit_stop) == ours


def test_every_registered_backend_is_documented_and_declares_what_it_supports():
    from instructgen.generator.openai_teacher import OpenAITeacher
    from instructgen.generator.vllm_teacher import VLLMTeacher
    assert set(TEACHERS) >= {"transformers", "vllm", "openai"}
    for name, (build, doc) in TEACHERS.items():
        assert callable(build) and len(doc) > 20, name
    for cls in (OpenAITeacher, VLLMTeacher):  # class attributes, so no model or server is needed to read them
        assert cls.supports <= set(CAPABILITIES) and {"raw", "chat"} <= cls.supports
    assert "logprobs" in teachers.CAPABILITIES


def test_gen_run_builds_one_teacher_for_both_stages_and_closes_it_before_curation(monkeypatch, tmp_path):
    """Orchestration only (stand-in answers): one backend built, with the run's teacher_options and the larger
    batch size, used by gen instructions and gen instances, closed before curation starts."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from fake_teacher import FakeTeacher
    from instances_fake import FakeInstanceTeacher

    import instructgen.filters.stage
    from instructgen.pipeline import RunConfig, run_pipeline

    built = []

    class Both(Backend):
        def __init__(self, model, **kw):
            super().__init__(model, **kw)
            self.instructions, self.instances = FakeTeacher(), FakeInstanceTeacher()
            built.append(self)

        def _gen(self, prompts, sampling, on_tokens):
            self.calls.append(list(prompts))
            return [(self.instances if "Task:" in p else self.instructions).generate([p], sampling)[0]
                    for p in prompts]

    class Stop(Exception):
        pass

    def curate(*a, **kw):
        assert len(built) == 1 and built[0].closed == 1  # closed before curation, once
        raise Stop

    monkeypatch.setitem(TEACHERS, "stub", (Both, "a test backend"))
    monkeypatch.setattr(instructgen.filters.stage, "curate", curate)
    cfg = RunConfig(num=4, teacher="stub:m", train=False, teacher_options={"device": "cpu"},
                    instructions={"batch_size": 2}, instances={"batch_size": 3})
    with pytest.raises(Stop):
        run_pipeline(cfg, tmp_path / "run", quiet=True)
    [t] = built
    assert t.kw == {"device": "cpu", "batch_size": 3}
    assert t.instructions.calls > 0 and t.instances.calls > 0  # both stages went through the one backend
    assert (tmp_path / "run" / "instructions" / "completed").exists()
    assert (tmp_path / "run" / "instances" / "completed").exists()

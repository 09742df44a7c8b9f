"""`gen run` (instructgen/pipeline.py) through the one stage lifecycle: its top folder is a "run" stage (checked,
answered at once when complete, opened, finished with `completed` last), its stage folders come from
instructgen.stage.STAGES, and its resume identity leaves out the options that change how requests are sent, not
what is made (cooldown_s, max_concurrency, ...), while another model or endpoint list is still refused.

Generation uses a stand-in backend registered as `stub:` (orchestration only: which stages ran, which teacher was
built); curation runs the real chain (length, exact_dedup) on what it wrote; training is off."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import instructgen.filters.stage
from instructgen.generator.http_client import TeacherRequestError
from instructgen.generator.teachers import TEACHERS
from instructgen.pipeline import STAGE_SECTIONS, RunConfig, run_identity, run_pipeline
from instructgen.rundir import RunDirError
from instructgen.stage import PIPELINE, STAGES

sys.path.insert(0, str(Path(__file__).parent / "generator"))

CHAIN = [{"filter": "length", "min_words": 3, "max_words": 1000, "fields": ["instruction"]},
         {"filter": "exact_dedup", "fields": ["instruction", "input"]}]


from stub_backend import Stub  # noqa: E402


@pytest.fixture
def stub(monkeypatch):
    import instructgen.report
    Stub.built = []
    monkeypatch.setitem(TEACHERS, "stub", (Stub, "a test backend"))
    monkeypatch.setattr(instructgen.report, "write_report", lambda run, out: out)  # not under test here
    return Stub


def config(**kw) -> RunConfig:
    return RunConfig(**{"num": 3, "teacher": "stub:m", "train": False, "curate": {"filters": CHAIN},
                        "instructions": {"batch_size": 2}, **kw})


def files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".instructgen.lock"}


def test_stage_folders_and_sections_come_from_the_registry():
    assert set(STAGE_SECTIONS) == set(PIPELINE) | {"training"}
    assert {STAGE_SECTIONS[s] for s in PIPELINE} <= {f for f in RunConfig.__dataclass_fields__}


def test_a_stopped_run_resumes_with_another_cooldown_and_a_finished_one_is_a_no_op(stub, tmp_path, monkeypatch,
                                                                                   capsys):
    """Curation fails once: the run folder is left open, both generation stages complete. The same command with
    other transport options (cooldown_s, max_concurrency) resumes: no teacher is built again, curation runs, the
    top folder gets summary.json then `completed`. Run again, it answers its summary and writes nothing."""
    real_curate = instructgen.filters.stage.curate

    def broken(*a, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(instructgen.filters.stage, "curate", broken)
    out = tmp_path / "run"
    with pytest.raises(OSError, match="disk full"):
        run_pipeline(config(teacher_options={"cooldown_s": 5, "max_concurrency": 2}), out, quiet=True)
    assert [t.closed for t in stub.built] == [1]  # one shared teacher, closed although curation failed
    assert all((out / STAGES[s].folder / "completed").exists() for s in ("instructions", "instances"))
    assert (out / ".instructgen").exists() and not (out / "completed").exists()

    monkeypatch.setattr(instructgen.filters.stage, "curate", real_curate)
    resumed = config(teacher_options={"cooldown_s": 1, "max_concurrency": 16, "balance": "least_loaded"})
    summary = run_pipeline(resumed, out, quiet=True)
    assert len(stub.built) == 1  # both generation stages were finished: no teacher loaded for the resume
    assert summary["curate"]["kept"] == 3 and set(summary) == {"instructions", "instances", "curate",
                                                                "wall_seconds_this_session"}
    assert (out / STAGES["curate"].folder / STAGES["curate"].output).exists()
    assert json.loads((out / "summary.json").read_text()) == summary and (out / "completed").exists()
    saved = json.loads((out / "config.json").read_text())
    assert saved["stage"] == "run" and saved["config"]["teacher_options"] == {}  # transport options left out

    before = files(out)
    capsys.readouterr()
    again = run_pipeline(config(teacher_options={"cooldown_s": 9}), out)
    assert again == summary and files(out) == before and len(stub.built) == 1
    assert f"{out} is already complete; nothing to do." in capsys.readouterr().err


def test_a_run_with_another_model_is_refused_naming_the_teacher(stub, tmp_path):
    out = tmp_path / "run"
    run_pipeline(config(teacher_options={"cooldown_s": 5}), out, quiet=True)
    with pytest.raises(RunDirError, match=r"different config or input.*\n.*teacher: 'stub:m' -> 'stub:other'"):
        run_pipeline(config(teacher="stub:other", teacher_options={"cooldown_s": 5}), out, quiet=True)
    with pytest.raises(RunDirError, match="teacher_options.device"):  # an option that changes what is made
        run_pipeline(config(teacher_options={"cooldown_s": 5, "device": "cpu"}), out, quiet=True)


def test_an_interrupted_openai_run_resumes_with_another_cooldown_but_not_another_endpoint_list(tmp_path):
    """A real openai teacher at a port nothing listens on: the run folder is opened, generation fails with the
    request error. Again with another cooldown_s and max_attempts it is not refused (it fails the same way, at
    the request); with a second endpoint added it is refused before any request, naming the teacher."""
    one = "openai:http://127.0.0.1:9/v1@m"
    two = "openai:http://127.0.0.1:9/v1,http://127.0.0.1:10/v1@m"
    out = tmp_path / "run"
    fast = {"max_attempts": 1, "backoff_s": 0.0, "timeout_s": 2}
    for options in ({**fast, "cooldown_s": 5}, {**fast, "cooldown_s": 1, "max_concurrency": 1}):
        with pytest.raises(TeacherRequestError):
            run_pipeline(config(teacher=one, teacher_options=options), out, quiet=True)
        assert (out / ".instructgen").exists() and not (out / "completed").exists()
    with pytest.raises(RunDirError, match=r"teacher: 'openai:http://127.0.0.1:9/v1@m' -> 'openai:http"):
        run_pipeline(config(teacher=two, teacher_options={**fast, "cooldown_s": 1}), out, quiet=True)


def test_the_run_identity_leaves_out_budgets_and_transport_options_of_every_section():
    ident = run_identity(config(teacher_options={"cooldown_s": 5, "timeout_s": 30, "device": "cpu"},
                                instructions={"batch_size": 2, "max_cost": 1.0,
                                              "teacher_options": {"max_backoff_s": 9, "dtype": "bfloat16"}},
                                instances={"teacher_options": {"balance": "least_loaded", "max_attempts": 2}}))
    assert ident["teacher_options"] == {"device": "cpu"}
    assert ident["instructions"] == {"batch_size": 2, "teacher_options": {"dtype": "bfloat16"}}
    assert ident["instances"] == {"teacher_options": {}}
    assert ident["teacher"] == "stub:m" and ident["curate"] == {"filters": CHAIN}

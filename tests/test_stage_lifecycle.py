"""The stage lifecycle's guarantees (instructgen/stage.py over rundir.py), tested once, for every stage, through
each stage's public function: instructions, instances, curate, train, eval.

fresh -> `completed` written last; re-run -> a no-op that writes nothing; a changed config or input -> refused,
naming the key; a foreign file -> --overwrite refuses, naming it; a second process -> refused, naming its pid; a
folder without our marker -> refused whole. The fakes are orchestration stand-ins (tests/generator's fake
teachers, the tiny student of tests/trainer/tiny.py); they never prove generation or training works.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from instructgen.rundir import COMMON, MARKER, RunDirError
from instructgen.stage import STAGES

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "generator"))
sys.path.insert(0, str(HERE / "trainer"))
from fake_teacher import FakeTeacher  # noqa: E402
from instances_fake import FakeInstanceTeacher  # noqa: E402
from tiny import build_model, one_thread, records, tiny_config  # noqa: E402

# ------------------------------------------------------------------------------------ what a run writes

_RECORDING: dict = {"root": None, "events": []}


def _audit(event, args):
    """Every write-open, rename and removal under the recorded folder, in order (an audit hook sees each one
    Python makes; the C++ / Rust writers of torch and safetensors are not seen, and all of those run before
    the stage finishes)."""
    root = _RECORDING["root"]
    if root is None or event not in ("open", "os.rename", "os.remove", "shutil.rmtree"):
        return
    if event == "open":
        path, mode, flags = args
        writes = (mode is not None and any(c in mode for c in "wax+")) or (
            mode is None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if not writes:
            return
    else:
        path = args[1] if event == "os.rename" else args[0]
    if isinstance(path, (str, bytes, os.PathLike)):
        p = os.path.abspath(os.fsdecode(path))
        if p == root or p.startswith(root + os.sep):
            _RECORDING["events"].append((event, os.path.relpath(p, root)))


sys.addaudithook(_audit)


def recorded(out: Path, fn):
    """(fn's result, the writes under `out` while it ran)."""
    _RECORDING.update(root=os.path.abspath(out), events=[])
    try:
        return fn(), list(_RECORDING["events"])
    finally:
        _RECORDING["root"] = None


# ------------------------------------------------------------------------------------ the five stages

SEEDS = [{"id": f"s{i}", "instruction": f"Write a short poem about the number {i}.",
          "instances": [{"input": "", "output": "A poem."}]} for i in range(8)]
TASKS = ["Tell whether the review is positive or negative.", "Give three tips for a job interview.",
         "Summarize the paragraph in one sentence.", "Sort the numbers from small to large."]
CURATE = {"filters": [{"filter": "length", "min_words": 3, "max_words": 60}, {"filter": "exact_dedup"}]}
BREAD = [{"instruction": f"Explain step {i} of making bread at home for a beginner cook", "input": "",
          "output": f"Step {i}: knead."} for i in range(8)]


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


class Case:
    """One stage driven through its public function: `run(out, changed=None, overwrite=False)`; `changed` is
    "config" (one option changed: `config_key` must be named) or the input edited (`input_key` named)."""

    name: str
    config_key: str
    input_key: str

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def edit_input(self) -> None:
        raise NotImplementedError

    def run(self, out: Path, changed: str | None = None, overwrite: bool = False, quiet: bool = True):
        raise NotImplementedError


class Instructions(Case):
    name, config_key, input_key = "instructions", "num", "seeds_fingerprint"

    def __init__(self, root, model=None):
        super().__init__(root)
        self.seeds = _jsonl(root / "seeds.jsonl", SEEDS)

    def edit_input(self):
        _jsonl(self.seeds, SEEDS[:-1])

    def run(self, out, changed=None, overwrite=False, quiet=True):
        from instructgen.config import generation_config
        from instructgen.generator.bootstrap import generate_instructions
        cfg = generation_config(dict(num=7 if changed == "config" else 6, batch_size=3, teacher="fake",
                                     seeds=str(self.seeds)))
        return generate_instructions(cfg, out, overwrite=overwrite, teacher=FakeTeacher(), quiet=quiet)


class Instances(Case):
    name, config_key, input_key = "instances", "max_instances", "input_fingerprint"

    def __init__(self, root, model=None):
        super().__init__(root)
        self.input = _jsonl(root / "tasks.jsonl", [{"id": f"gen-{k}", "instruction": s} for k, s in enumerate(TASKS)])

    def edit_input(self):
        _jsonl(self.input, [{"id": f"gen-{k}", "instruction": s} for k, s in enumerate(TASKS[:-1])])

    def run(self, out, changed=None, overwrite=False, quiet=True):
        from instructgen.generator.instances import InstancesConfig, generate_instances
        cfg = InstancesConfig(batch_size=2, max_instances=4 if changed == "config" else 5)
        return generate_instances(cfg, self.input, out, overwrite=overwrite, teacher=FakeInstanceTeacher(),
                                  quiet=quiet)


class Curate(Case):
    name, config_key, input_key = "curate", "filters.length.max_words", "input_fingerprint"

    def __init__(self, root, model=None):
        super().__init__(root)
        self.input = _jsonl(root / "data.jsonl", BREAD)

    def edit_input(self):
        _jsonl(self.input, BREAD[:-1])

    def run(self, out, changed=None, overwrite=False, quiet=True):
        from instructgen.filters.stage import curate
        config = json.loads(json.dumps(CURATE))
        if changed == "config":
            config["filters"][0]["max_words"] = 50
        return curate(self.input, out, config=config, overwrite=overwrite, quiet=quiet)


class Train(Case):
    name, config_key, input_key = "train", "learning_rate", "data_fingerprint"

    def __init__(self, root, model=None):
        super().__init__(root)
        self.model = model
        self.data = root / "data.json"
        self.data.write_text(json.dumps(records()), encoding="utf-8")

    def edit_input(self):
        self.data.write_text(json.dumps(records()[:-1]), encoding="utf-8")

    def run(self, out, changed=None, overwrite=False, quiet=True):
        from instructgen.trainer import train
        cfg = tiny_config(self.model, quantization="none", max_steps=2, save_steps=2, eval_generations=1,
                          learning_rate=2e-2 if changed == "config" else 1e-2)
        with one_thread():
            return train(cfg, self.data, out, overwrite=overwrite, quiet=quiet)


class Eval(Case):
    name, config_key, input_key = "eval", "max_new_tokens", "suite_fingerprint"

    def __init__(self, root, model=None):
        super().__init__(root)
        self.model = model
        self.suite = root / "ref.json"
        self._write([("apple", 3), ("river", 3)])

    def _write(self, words):
        self.suite.write_text(json.dumps([{"instruction": f"Repeat the word {w} {n} times.", "input": "",
                                           "output": " ".join([w] * n)} for w, n in words]), encoding="utf-8")

    def edit_input(self):
        self._write([("apple", 3), ("river", 2)])

    def run(self, out, changed=None, overwrite=False, quiet=True):
        from instructgen.eval import EvalConfig, run_eval
        cfg = EvalConfig(model=str(self.model), suite=f"reference:{self.suite}", batch_size=2,
                         max_new_tokens=5 if changed == "config" else 4, cache_dir=str(self.root / "cache"))
        with one_thread():
            return run_eval(cfg, out, overwrite=overwrite, quiet=quiet)


CASES = {c.name: c for c in (Instructions, Instances, Curate, Train, Eval)}
assert set(CASES) == set(STAGES), "every stage of the registry is tested here"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_model):
    """Per stage, one fresh run to completion (made once): (case, out, result, the writes it made)."""
    made = {}

    def get(name):
        if name not in made:
            case = CASES[name](tmp_path_factory.mktemp(name), tiny_model)
            out = case.root / "out"
            result, events = recorded(out, lambda: case.run(out))
            made[name] = (case, out, result, events)
        return made[name]
    return get


def listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def fresh_case(name, tmp_path, tiny_model) -> Case:
    return CASES[name](tmp_path / "in", tiny_model)


# ------------------------------------------------------------------------------------ the guarantees

@pytest.mark.parametrize("name", list(CASES))
def test_fresh_run_writes_completed_last(name, finished):
    case, out, result, events = finished(name)
    assert (out / "completed").is_file() and (out / "summary.json").is_file()
    marker = json.loads((out / MARKER).read_text())
    assert marker["tool"] == "instructgen" and marker["stage"] == name
    assert json.loads((out / "config.json").read_text())["stage"] == name
    assert {p.name for p in out.iterdir()} <= set(COMMON + STAGES[name].owned)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")], "a temp file was left behind"
    written = [rel for _, rel in events]
    assert "completed" in written
    after = events[written.index("completed") + 1:]
    # after the marker only the scratch of the stage's work folder may go (stage.Resume.work)
    assert all(e in ("shutil.rmtree", "os.remove") and rel.split(os.sep)[0] == ".work" for e, rel in after), after
    assert written.index(MARKER) < written.index("config.json") < written.index("summary.json")
    if STAGES[name].output:
        assert (out / STAGES[name].output).is_file()


@pytest.mark.parametrize("name", list(CASES))
def test_rerun_is_a_no_op(name, finished, capsys):
    case, out, result, _ = finished(name)
    before = listing(out)
    capsys.readouterr()
    again, events = recorded(out, lambda: case.run(out, quiet=False))
    assert again == result
    assert events == [], f"a finished folder was written to: {events}"
    assert listing(out) == before
    assert "already complete; nothing to do" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(CASES))
def test_changed_config_is_refused_naming_the_key(name, finished):
    case, out, _, _ = finished(name)
    before = listing(out)
    with pytest.raises(RunDirError, match="different config or input") as e:
        case.run(out, changed="config")
    assert case.config_key in str(e.value)
    assert listing(out) == before


@pytest.mark.parametrize("name", list(CASES))
def test_changed_input_is_refused_naming_it(name, finished, tmp_path, tiny_model):
    case, out, _, _ = finished(name)
    other = fresh_case(name, tmp_path, tiny_model)  # the same inputs in another place, then one edited
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    for attr in ("seeds", "input", "data", "suite"):
        if hasattr(case, attr):
            shutil.copy(getattr(case, attr), getattr(other, attr))
    other.edit_input()
    before = listing(copy)
    with pytest.raises(RunDirError, match="changed since this folder was started") as e:
        other.run(copy)
    assert other.input_key in str(e.value)
    assert listing(copy) == before


@pytest.mark.parametrize("name", list(CASES))
def test_overwrite_refuses_a_foreign_file_naming_it(name, finished, tmp_path):
    case, out, _, _ = finished(name)
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    (copy / "my_notes.txt").write_text("mine")
    before = listing(copy)
    with pytest.raises(RunDirError, match="did not write") as e:
        case.run(copy, changed="config", overwrite=True)
    assert "my_notes.txt" in str(e.value)
    assert listing(copy) == before  # nothing removed, the completed run included


@pytest.mark.parametrize("name", list(CASES))
def test_a_second_process_is_refused_naming_its_pid(name, tmp_path, tiny_model):
    case = fresh_case(name, tmp_path, tiny_model)
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from instructgen.rundir import lock; "
                               "lock(Path(sys.argv[1])); print('locked', flush=True); time.sleep(120)", str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match="in use by another gen process") as e:
            case.run(out)
        assert f"pid {holder.pid}" in str(e.value)
        assert [p.name for p in out.iterdir()] == [".instructgen.lock"]  # nothing written
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("name", list(CASES))
def test_a_folder_without_our_marker_is_refused_whole(name, tmp_path, tiny_model):
    case = fresh_case(name, tmp_path, tiny_model)
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("{}")  # a name a stage writes, in a folder that is not ours
    (out / "thesis.tex").write_text("years of work")
    for overwrite in (False, True):
        with pytest.raises(RunDirError, match="not an instructgen run folder"):
            case.run(out, overwrite=overwrite)
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "thesis.tex"]
    assert (out / "thesis.tex").read_text() == "years of work" and (out / "summary.json").read_text() == "{}"


# ------------------------------------------------------------------------------------ the lifecycle itself

def test_one_registry_names_every_stage_everywhere():
    from instructgen import rundir
    from instructgen.report import collect
    from instructgen.stage import ALL, PIPELINE, RUN, stage_named
    for name, s in STAGES.items():
        assert rundir._owned(name) == s.owned and stage_named(name) is s and stage_named(s.folder) is s
    for name in PIPELINE:
        kind = STAGES[name].folder
        assert collect.STAGE_NAMES[name] == collect.STAGE_NAMES[kind] == kind
        assert collect.COMMANDS[kind] == name and kind in collect.KINDS
        assert collect.OUTPUTS.get(kind) == STAGES[name].output
    assert RUN.owned == RUN.subruns == ("instructions", "instances", "curated", "train")
    assert rundir._owned("run") == RUN.owned and ALL["run"] is RUN and stage_named("nonsense") is None


def test_fingerprint_is_one_helper_over_files_and_records(tmp_path):
    from instructgen.records import Task
    from instructgen.stage import fingerprint
    a = tmp_path / "a.txt"
    a.write_text("one")
    before = fingerprint(files=[a])
    a.write_text("two")
    assert fingerprint(files=[a]) != before
    t = [Task(id="x", instruction="Say hi.")]
    assert fingerprint(records=t) == fingerprint(records=[Task(id="x", instruction="Say hi.")])
    assert fingerprint(records=t) != fingerprint(records=[Task(id="x", instruction="Say bye.")])
    for bad in ({}, {"files": [a], "records": t}):
        with pytest.raises(TypeError):
            fingerprint(**bad)


def test_a_stage_owned_work_folder_survives_resume_and_goes_with_overwrite(tmp_path):
    """How a stage with its own resume state (curate's per-shard markers) plugs in: OUT/.work is kept when an
    interrupted run resumes, removed once `completed` is written, and removed by --overwrite."""
    from instructgen.rundir import releases_locks
    from instructgen.stage import Outcome, Stage, run_stage
    out, seen = tmp_path / "out", []

    @releases_locks
    def go(identity, crash, overwrite=False):
        def body(resume):
            work = resume.work()
            seen.append((resume.state, sorted(p.name for p in work.iterdir())))
            (work / f"shard-{len(seen)}.done").write_text("")
            if crash:
                raise KeyboardInterrupt  # the process stops here; the shard marker is on disk
            return Outcome({"n": len(seen)}, records={"kept.jsonl": []}, files={"stats.json": {"n": len(seen)}})
        return run_stage(Stage("curate", out, identity=identity, result="stats.json"), body, overwrite=overwrite,
                         quiet=True)

    with pytest.raises(KeyboardInterrupt):
        go({"a": 1}, crash=True)
    assert (out / ".work" / "shard-1.done").exists() and not (out / "completed").exists()
    assert go({"a": 1}, crash=False) == {"n": 2}
    assert seen == [("fresh", []), ("resume", ["shard-1.done"])]
    assert (out / "completed").exists() and not (out / ".work").exists()
    assert go({"a": 1}, crash=False) == {"n": 2} and len(seen) == 2  # done: the body is not called
    with pytest.raises(KeyboardInterrupt):
        go({"a": 2}, crash=True, overwrite=True)  # another config, started again
    assert seen[-1] == ("fresh", []) and not (out / "completed").exists() and not (out / "kept.jsonl").exists()
    with pytest.raises(ValueError, match="owns"):
        from instructgen.stage import Resume
        Resume("fresh", [], type("D", (), {"stage": "instances", "path": out})()).work()

"""Adversarial run-folder tests (issue 9, classes 1-4 and 9): what `--overwrite` may delete, outputs that are
inputs, two processes on one folder, resume after a changed input, damaged folders and caches. Every case runs
real `gen` processes on real files and checks the exit code, the one-line message and that nothing was lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ENV = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
FAST = {"filters": [{"filter": "length", "min_words": 3, "max_words": 60}, {"filter": "exact_dedup"},
                    {"filter": "minhash", "threshold": 0.7, "ngram": 3}, {"filter": "rouge_l", "threshold": 0.7}]}
RECORDS = [{"instruction": f"Explain step {i} of making bread at home for a beginner cook", "input": "",
            "output": f"Step {i}: knead."} for i in range(12)] + [
           {"instruction": "Explain step 3 of making bread at home for a beginner cook!", "input": "",
            "output": "dup"}]


def gen(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "instructgen", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=timeout)


def one_line_error(r, *needles):
    """Exit 2, one `gen X: error:` line first, no traceback, each needle in the message."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert ": error: " in r.stderr.splitlines()[0], r.stderr
    for n in needles:
        assert n in r.stderr, (n, r.stderr)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def data(tmp_path):
    p = tmp_path / "data.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    c = tmp_path / "fast.yaml"
    c.write_text(json.dumps(FAST))
    return p, c


@pytest.fixture
def seeds(tmp_path):
    p = tmp_path / "seeds.jsonl"
    p.write_text("".join(json.dumps({"id": f"s{i}", "instruction": f"Write a short poem about the number {i}.",
                                     "instances": [{"input": "", "output": "A poem."}]}) + "\n" for i in range(8)))
    return p


def model_folder(p: Path) -> dict[str, bytes]:
    """What a Hugging Face model folder looks like: a config.json that is not ours, and weights."""
    p.mkdir(parents=True)
    (p / "config.json").write_text('{"model_type": "llama"}')
    (p / "model.safetensors").write_bytes(b"\0weights" * 100)
    return snapshot(p)


# ---------------------------------------------------------------------------------- 1. --overwrite is ours only

STAGE_ARGS = {
    "curate": lambda d, c, s, out: ["curate", d, "--out", out, "--config", c, "--overwrite", "--quiet"],
    "instructions": lambda d, c, s, out: ["instructions", "--seeds", s, "--num", "2", "--out", out, "--overwrite"],
    "instances": lambda d, c, s, out: ["instances", d, "--out", out, "--overwrite"],
    "train": lambda d, c, s, out: ["train", d, "--out", out, "--overwrite"],
    "run": lambda d, c, s, out: ["run", "--seeds", s, "--num", "2", "--out", out, "--overwrite"],
}


@pytest.mark.parametrize("stage", sorted(STAGE_ARGS))
def test_overwrite_never_deletes_a_model_folder(stage, data, seeds, tmp_path):
    m = tmp_path / "m"
    before = model_folder(m)
    r = gen(*STAGE_ARGS[stage](data[0], data[1], seeds, m))
    one_line_error(r, "not an instructgen run folder")
    assert snapshot(m) == before


@pytest.mark.parametrize("stage", sorted(STAGE_ARGS))
def test_overwrite_never_deletes_a_git_project(stage, data, seeds, tmp_path):
    g = tmp_path / "proj"
    (g / ".git").mkdir(parents=True)
    (g / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (g / "config.json").write_text("{}")
    before = snapshot(g)
    one_line_error(gen(*STAGE_ARGS[stage](data[0], data[1], seeds, g)), "not an instructgen run folder")
    assert snapshot(g) == before


def test_overwrite_refuses_a_run_folder_holding_user_files_and_names_them(data, tmp_path):
    d, c = data
    out = tmp_path / "cur"
    assert gen("curate", d, "--out", out, "--config", c, "--quiet").returncode == 0
    (out / "my_notes.txt").write_text("precious")
    (out / "templates").mkdir(exist_ok=True)
    c2 = tmp_path / "other.yaml"
    c2.write_text(json.dumps({"filters": FAST["filters"][:2]}))
    before = snapshot(out)
    r = gen("curate", d, "--out", out, "--config", c2, "--overwrite", "--quiet")
    one_line_error(r, "my_notes.txt", "did not write")
    assert snapshot(out) == before
    (out / "my_notes.txt").unlink()  # once moved out, --overwrite works and keeps the signature cache
    r = gen("curate", d, "--out", out, "--config", c2, "--overwrite", "--quiet")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "stats.json").read_text())["records_in"] == len(RECORDS)


def test_overwrite_of_a_gen_run_checks_the_stage_subfolders_too(tmp_path):
    from instructgen.rundir import RunDir
    top = tmp_path / "run"
    RunDir(top, "run").open({"a": 1})
    RunDir(top / "curated", "curate").open({"b": 1})
    (top / "curated" / "hand_edited.jsonl").write_text("{}\n")
    RunDir(top, "run").release()
    from instructgen import rundir
    for key in list(rundir._HELD):
        rundir._HELD.pop(key).close()
    code = ("import sys; from instructgen.rundir import RunDir; RunDir(sys.argv[1], 'run').open({'a': 2}, "
            "overwrite=True)")
    r = subprocess.run([sys.executable, "-c", code, str(top)], capture_output=True, text=True, env=ENV)
    assert r.returncode == 1 and "curated/hand_edited.jsonl" in r.stderr
    assert (top / "curated" / "hand_edited.jsonl").exists()


def test_merge_overwrite_never_deletes_a_folder_it_did_not_write(tmp_path):
    run = tmp_path / "train"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text("{}")
    (run / "completed").write_text("x")
    m = tmp_path / "m"
    before = model_folder(m)
    one_line_error(gen("merge", run, "--out", m, "--overwrite"), "not a merged model folder")
    assert snapshot(m) == before


# ---------------------------------------------------------------------------------- 2. an output is never an input

def test_train_into_its_own_input_is_refused_and_the_data_survives(data, tmp_path):
    d, c = data
    cur = tmp_path / "cur"
    assert gen("curate", d, "--out", cur, "--config", c, "--quiet").returncode == 0
    before = snapshot(cur)
    one_line_error(gen("train", cur, "--out", cur, "--overwrite"), "is inside the input")
    one_line_error(gen("train", cur, "--out", cur / "sub"), "is inside the input")
    one_line_error(gen("train", cur / "kept.jsonl", "--out", cur, "--overwrite"), "holds the input")
    one_line_error(gen("curate", cur, "--out", cur, "--overwrite", "--config", c), "is inside the input")
    one_line_error(gen("instances", cur, "--out", cur, "--overwrite"), "is inside the input")
    assert snapshot(cur) == before


def test_seeds_inside_the_output_and_symlinked_inputs_are_refused(seeds, data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    inside = out / "seeds.jsonl"
    inside.write_bytes(seeds.read_bytes())
    one_line_error(gen("instructions", "--seeds", inside, "--num", "2", "--out", out), "holds the input")
    one_line_error(gen("run", "--seeds", inside, "--num", "2", "--out", out), "holds the input")
    link = tmp_path / "link_to_data.jsonl"
    link.symlink_to(data[0])
    one_line_error(gen("curate", link, "--out", data[0].parent, "--config", data[1]), "holds the input")
    assert inside.read_bytes() == seeds.read_bytes()


# ---------------------------------------------------------------------------------- 3. one process per folder

def _start_slow(out, seeds, num=40, sleep=0.5):
    return subprocess.Popen([sys.executable, str(HERE / "run_stage.py"), str(out), str(seeds), str(num),
                             str(sleep)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, timeout=60):
    t0 = time.time()
    while not path.exists():
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.05)


def test_a_second_process_on_the_same_folder_stops_at_once_naming_the_holder(seeds, tmp_path):
    out = tmp_path / "si"
    first = _start_slow(out, seeds)
    try:
        _wait_for(out / "log.jsonl")
        t0 = time.time()
        second = subprocess.run([sys.executable, str(HERE / "run_stage.py"), str(out), str(seeds), "40", "0"],
                                env=ENV, capture_output=True, text=True, timeout=60)
        one_line_error(second, "in use by another gen process", f"pid {first.pid}")
        assert time.time() - t0 < 30
        # the gen CLI says the same for every stage writing there
        one_line_error(gen("instructions", "--seeds", seeds, "--num", "40", "--out", out), f"pid {first.pid}")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the kernel released the lock with the killed process: the same command resumes and finishes exactly
    done = subprocess.run([sys.executable, str(HERE / "run_stage.py"), str(out), str(seeds), "40", "0"],
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    kept = [json.loads(x) for x in (out / "instructions.jsonl").read_text().splitlines()]
    log_ids = [json.loads(x)["id"] for x in (out / "log.jsonl").read_text().splitlines()]
    assert len(kept) == 40 and len({k["id"] for k in kept}) == 40 and len(set(log_ids)) == len(log_ids)
    assert json.loads((out / "summary.json").read_text())["kept"] == 40


def test_two_racing_processes_never_both_write(seeds, tmp_path):
    out = tmp_path / "race"
    procs = [_start_slow(out, seeds, num=9, sleep=0.05) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in results)
    assert codes in ([0, 0], [0, 2]), results  # the second either finds it done, or is refused
    if codes == [0, 2]:
        assert "in use by another gen process" in [e for c, e in results if c == 2][0]
    log_ids = [json.loads(x)["id"] for x in (out / "log.jsonl").read_text().splitlines()]
    assert len(set(log_ids)) == len(log_ids)
    assert len((out / "instructions.jsonl").read_text().splitlines()) == 9


def test_curate_shards_are_reused_by_identity_never_by_position(data, tmp_path):
    """A shard marker is reused only when it was written for this pass of this split: one left by another run
    (here: the marker of another pass copied in, as two interleaved writers would leave it) is refused."""
    d, c = data
    out = tmp_path / "cur"
    r = gen("curate", d, "--out", out, "--config", c, "--quiet", "--shard-size", "2")
    assert r.returncode == 0, r.stderr
    want = (out / "kept.jsonl").read_bytes()
    # an interrupted run: the outputs and the marker gone, the work folder of a run cut in its second pass
    for name in ("completed", "kept.jsonl", "rejected.jsonl", "stats.json", "summary.json"):
        (out / name).unlink()
    assert not (out / ".work").exists()  # completion removed it: run again up to a crash to leave one
    env = dict(ENV, INSTRUCTGEN_TEST_CRASH_AFTER_SHARDS="3")
    r = subprocess.run([sys.executable, "-c", CRASHING, str(d), str(out), str(c)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 3, r.stderr
    first = out / ".work" / "p0" / "00000.done.json"
    foreign = json.loads(first.read_text())
    (out / ".work" / "p1").mkdir(exist_ok=True)
    (out / ".work" / "p1" / "00000.done.json").write_text(json.dumps(dict(foreign, **{"pass": 1})))
    one_line_error(gen("curate", d, "--out", out, "--config", c, "--quiet"), "00000.done.json",
                   "done by another run")
    (out / ".work" / "p1" / "00000.done.json").unlink()
    r = gen("curate", d, "--out", out, "--config", c, "--quiet")  # a real interruption resumes
    assert r.returncode == 0, r.stderr
    fresh = tmp_path / "fresh"
    assert gen("curate", d, "--out", fresh, "--config", c, "--quiet").returncode == 0
    assert (fresh / "kept.jsonl").read_bytes() == (out / "kept.jsonl").read_bytes() == want


# a curate run that stops (exit 3) after N shard jobs, as a kill would: the work folder stays
CRASHING = """
import os, sys
from instructgen.filters import shards
from instructgen.filters.stage import curate
real, n = shards.run_shard, [0]
def job(j):
    if n[0] >= int(os.environ["INSTRUCTGEN_TEST_CRASH_AFTER_SHARDS"]):
        os._exit(3)
    n[0] += 1
    return real(j)
shards.run_shard = job
curate(sys.argv[1], sys.argv[2], config=sys.argv[3], quiet=True, shard_size=2)
"""


# ---------------------------------------------------------------------------------- 4. a changed input is refused

def test_resume_refuses_edited_seeds(seeds, tmp_path):
    out = tmp_path / "si"
    first = _start_slow(out, seeds)
    _wait_for(out / "log.jsonl")
    first.send_signal(signal.SIGKILL)
    first.wait()
    seeds.write_text(seeds.read_text().replace("poem", "song"))
    r = subprocess.run([sys.executable, str(HERE / "run_stage.py"), str(out), str(seeds), "40", "0"], env=ENV,
                       capture_output=True, text=True, timeout=60)
    one_line_error(r, "seeds_fingerprint", "changed since this folder was started")
    one_line_error(gen("instructions", "--seeds", seeds, "--num", "40", "--out", out, "--teacher", "fake"))


def test_resume_refuses_an_edited_template(seeds, tmp_path):
    from instructgen.config import generation_config
    from instructgen.generator.bootstrap import generate_instructions
    from instructgen.templates import TEMPLATE_DIR
    sys.path.insert(0, str(HERE.parent / "generator"))
    from fake_teacher import FakeTeacher

    t = tmp_path / "mine.completion.jinja2"
    t.write_text((TEMPLATE_DIR / "self_instruct.completion.jinja2").read_text())
    out = tmp_path / "si"
    cfg = generation_config({"num": 3, "batch_size": 3, "teacher": "fake", "seeds": str(seeds), "template": str(t)})
    generate_instructions(cfg, out, teacher=FakeTeacher(), quiet=True)
    (out / "completed").unlink()  # as if it had been interrupted
    t.write_text(t.read_text() + "\n")
    r = subprocess.run([sys.executable, str(HERE / "run_stage.py"), str(out), str(seeds), "3", "0", str(t)],
                       capture_output=True, text=True, env=ENV)
    one_line_error(r, "template_fingerprint", "changed since this folder was started")


def test_resume_refuses_an_edited_curate_input(data, tmp_path):
    d, c = data
    out = tmp_path / "cur"
    assert gen("curate", d, "--out", out, "--config", c, "--quiet").returncode == 0
    (out / "completed").unlink()
    d.write_text(d.read_text().replace("bread", "cake", 1))
    one_line_error(gen("curate", d, "--out", out, "--config", c, "--quiet"), "input_fingerprint", "changed")


# ---------------------------------------------------------------------------------- 5. damaged or odd --out

def test_out_that_is_a_file_a_symlink_or_unwritable(data, tmp_path):
    d, c = data
    f = tmp_path / "afile"
    f.write_text("mine")
    one_line_error(gen("curate", d, "--out", f, "--config", c), "is a file")
    assert f.read_text() == "mine"
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    one_line_error(gen("curate", d, "--out", link, "--config", c), "symbolic link")
    assert not any(real.iterdir())
    one_line_error(gen("curate", d, "--out", "/proc/instructgen-test/out", "--config", c), "cannot")


def test_corrupt_config_json_is_one_line_and_overwrite_starts_again(data, tmp_path):
    d, c = data
    out = tmp_path / "cur"
    assert gen("curate", d, "--out", out, "--config", c, "--quiet").returncode == 0
    (out / "config.json").write_text('{"stage": "curate", "config": ')
    one_line_error(gen("curate", d, "--out", out, "--config", c, "--quiet"), "config.json is damaged")
    r = gen("curate", d, "--out", out, "--config", c, "--quiet", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "config.json").read_text())["stage"] == "curate"


def test_stale_temp_files_from_a_crash_are_no_obstacle(data, tmp_path):
    d, c = data
    out = tmp_path / "cur"
    assert gen("curate", d, "--out", out, "--config", c, "--quiet").returncode == 0
    (out / "completed").unlink()
    (out / "kept.jsonl.tmp").mkdir()  # what older versions left behind, even as a folder
    (out / ".stats.json.x1y2z3w4.tmp").write_text("half")  # how atomic_path names its temp files
    r = gen("curate", d, "--out", out, "--config", c, "--quiet")
    assert r.returncode == 0, r.stderr
    c2 = tmp_path / "c2.yaml"
    c2.write_text(json.dumps({"filters": FAST["filters"][:1]}))
    r = gen("curate", d, "--out", out, "--config", c2, "--quiet", "--overwrite")  # our temp files are ours
    assert r.returncode == 0, r.stderr
    assert not (out / "kept.jsonl.tmp").exists()


def test_cache_dir_that_is_a_file(data, tmp_path):
    d, c = data
    f = tmp_path / "cachefile"
    f.write_text("x")
    out = tmp_path / "cur"
    one_line_error(gen("curate", d, "--out", out, "--config", c, "--cache-dir", f), "--cache-dir")
    assert not out.exists() and f.read_text() == "x"


def test_a_truncated_cache_chunk_is_recomputed_and_results_survive(data, tmp_path):
    d, c = data
    out = tmp_path / "cur"
    assert gen("curate", d, "--out", out, "--config", c, "--quiet").returncode == 0
    chunks = sorted((out / ".cache").rglob("chunk-*.npz"))
    assert chunks
    for ch in chunks:
        ch.write_bytes(ch.read_bytes()[: len(ch.read_bytes()) // 2])
    c2 = tmp_path / "c2.yaml"
    c2.write_text(json.dumps({"filters": FAST["filters"][:2] + [{"filter": "minhash", "threshold": 0.8,
                                                                 "ngram": 3}]}))
    r = gen("curate", d, "--out", out, "--config", c2, "--quiet", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert "damaged" in r.stderr and "Traceback" not in r.stderr
    fresh = tmp_path / "fresh"
    assert gen("curate", d, "--out", fresh, "--config", c2, "--quiet").returncode == 0
    assert (fresh / "kept.jsonl").read_bytes() == (out / "kept.jsonl").read_bytes()


# ---------------------------------------------------------------------------------- 9. empty input says so

def test_empty_input_completes_and_says_so(data, tmp_path):
    e = tmp_path / "empty.jsonl"
    e.write_text("")
    out = tmp_path / "cur"
    r = gen("curate", e, "--out", out, "--config", data[1])
    assert r.returncode == 0 and "holds no records" in r.stderr


# ---------------------------------------------------------------------------------- found by a review pass

def test_user_files_that_look_like_ours_are_never_removed(data, tmp_path):
    d, c = data
    out = tmp_path / "cur"
    assert gen("curate", d, "--out", out, "--config", c, "--quiet").returncode == 0
    c2 = tmp_path / "c2.yaml"
    c2.write_text(json.dumps({"filters": FAST["filters"][:2]}))
    for user in (out / "kept.jsonl.backup.tmp", out / "templates" / "notes.txt"):
        user.parent.mkdir(exist_ok=True)
        user.write_text("mine")
        one_line_error(gen("curate", d, "--out", out, "--config", c2, "--overwrite", "--quiet"), user.name)
        assert user.read_text() == "mine"
        user.unlink()


def test_links_inside_a_run_folder_are_never_written_through(data, tmp_path):
    d, c = data
    precious = tmp_path / "precious.txt"
    precious.write_text("PRECIOUS")
    o1 = tmp_path / "o1"
    o1.mkdir()
    (o1 / ".instructgen.lock").symlink_to(precious)
    one_line_error(gen("curate", d, "--out", o1, "--config", c, "--quiet"))
    o2 = tmp_path / "o2"
    assert gen("curate", d, "--out", o2, "--config", c, "--quiet").returncode == 0
    (o2 / "completed").unlink()
    vault = tmp_path / "vault"  # the work folder made a link to a folder of the user's: never written or removed
    vault.mkdir()
    (vault / "keep.txt").write_text("PRECIOUS")
    (o2 / ".work").symlink_to(vault)
    one_line_error(gen("curate", d, "--out", o2, "--config", c, "--quiet"), "symbolic link")
    one_line_error(gen("curate", d, "--out", o2, "--config", c, "--quiet", "--overwrite"), "symbolic link")
    assert [e.name for e in vault.iterdir()] == ["keep.txt"] and (vault / "keep.txt").read_text() == "PRECIOUS"
    fifo = tmp_path / "o3"
    fifo.mkdir()
    os.mkfifo(fifo / ".instructgen.lock")
    one_line_error(gen("curate", d, "--out", fifo, "--config", c, "--quiet"), "not a regular file")


def test_a_config_file_inside_the_output_is_an_input(data, tmp_path):
    d, c = data
    out = tmp_path / "cur"
    assert gen("curate", d, "--out", out, "--config", c, "--quiet").returncode == 0
    mine = (out / "curate.yaml").read_text() + "# my edit\n"
    (out / "curate.yaml").write_text(mine)
    one_line_error(gen("curate", d, "--out", out, "--config", out / "curate.yaml", "--overwrite"), "holds the input")
    assert (out / "curate.yaml").read_text() == mine


def test_gen_run_overwrite_never_takes_a_stage_folder_another_process_holds(tmp_path):
    from instructgen.rundir import RunDir, release
    top = tmp_path / "run"
    RunDir(top, "run").open({"a": 1})
    RunDir(top / "instructions", "instructions").open({"b": 1})
    release(top)
    release(top / "instructions")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from instructgen.rundir import lock; "
                               "from pathlib import Path; lock(Path(sys.argv[1])); print('held', flush=True); "
                               "time.sleep(60)", str(top / "instructions")], stdout=subprocess.PIPE, text=True,
                              env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        code = ("import sys; from instructgen.rundir import RunDir; RunDir(sys.argv[1], 'run').open({'a': 2}, "
                "overwrite=True)")
        r = subprocess.run([sys.executable, "-c", code, str(top)], capture_output=True, text=True, env=ENV)
        assert r.returncode == 1 and f"pid {holder.pid}" in r.stderr
        assert (top / "instructions" / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()


def test_outputs_are_as_readable_as_any_file_the_user_writes(data, tmp_path):
    d, c = data
    out = tmp_path / "cur"
    old = os.umask(0o022)
    try:
        assert gen("curate", d, "--out", out, "--config", c, "--quiet").returncode == 0
    finally:
        os.umask(old)
    for name in ("kept.jsonl", "config.json", "stats.json", "summary.json"):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name


def test_odd_options_and_caches_are_one_line(data, tmp_path):
    d, c = data
    big = tmp_path / "big.yaml"
    big.write_text(json.dumps({"filters": [{"filter": "minhash", "num_perm": 2000, "ngram": 3}]}))
    r = gen("curate", d, "--out", tmp_path / "mh", "--config", big, "--quiet")
    assert r.returncode == 0, r.stderr
    one_line_error(gen("curate", d, "--out", tmp_path / "o10", "--config", c, "--cache-dir", d / "c"), "is a file")
    assert not (tmp_path / "o10").exists()
    out = tmp_path / "cur"
    assert gen("curate", d, "--out", out, "--config", c, "--quiet").returncode == 0
    chunk = sorted((out / ".cache").rglob("chunk-*.npz"))[0]
    chunk.unlink()
    chunk.mkdir()  # not a file we wrote: left alone, not used
    c2 = tmp_path / "c2.yaml"
    c2.write_text(json.dumps({"filters": FAST["filters"][:2] + [{"filter": "minhash", "threshold": 0.8, "ngram": 3}]}))
    r = gen("curate", d, "--out", out, "--config", c2, "--quiet", "--overwrite")
    assert r.returncode == 0 and "not a plain file" in r.stderr, r.stderr
    assert chunk.is_dir()


def test_a_changed_verdict_in_the_input_is_a_changed_input(tmp_path):
    from instructgen.records import Instance, Task
    from instructgen.rundir import records_fingerprint
    t = [Task(id="a", instruction="Do a thing.", instances=[Instance("", "ok")])]
    before = records_fingerprint(t)
    t[0].drop("too_short")
    assert records_fingerprint(t) != before

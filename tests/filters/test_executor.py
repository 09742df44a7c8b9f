"""Executors (filters/executor.py): a real local Ray cluster (`ray.init(num_cpus=2)`) gives the same kept and
rejected records as the local executor; bad executor options are one line before any record is read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from instructgen.filters.executor import ExecutorError, LocalExecutor, make_executor
from instructgen.filters.stage import curate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_shards import CHAIN, SHARED, outputs, records  # noqa: E402

ENV = dict(os.environ, HF_HUB_OFFLINE="1")


@pytest.fixture
def data(tmp_path):
    p = tmp_path / "data.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in records()))
    return p


def test_local_pool_returns_results_in_job_order():
    seen = []
    exe = LocalExecutor(2)
    try:
        # a builtin: the spawned workers import only what the job names (a test module is not importable there)
        assert exe.map(abs, [-x for x in range(12)], on_done=seen.append) == list(range(12))
    finally:
        exe.close()
    assert sorted(seen) == list(range(12))


@pytest.mark.parametrize("kw,msg", [({"name": "dask"}, "--executor dask"), ({"workers": 0}, "--workers 0"),
                                    ({"ray_address": "ray://h:10001"}, "only used with --executor ray")])
def test_bad_executor_options_are_one_line(kw, msg):
    with pytest.raises(ExecutorError, match=msg):
        make_executor(**kw)


def test_bad_executor_options_stop_gen_curate_before_reading(data, tmp_path):
    r = subprocess.run([sys.executable, "-m", "instructgen", "curate", str(data), "--out", str(tmp_path / "o"),
                        "--workers", "0"], capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 2 and "--workers" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


ray = pytest.importorskip("ray")


def test_ray_started_for_the_run_gives_the_local_result(data, tmp_path):
    assert not ray.is_initialized()
    curate(data, tmp_path / "local", config=CHAIN, quiet=True, shard_size=9)
    stats = curate(data, tmp_path / "ray", config=CHAIN, quiet=True, shard_size=9, executor="ray", workers=2)
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local")
    assert stats["executor"] == {"name": "ray", "workers": 2, "shards": 14, "shard_size": 9}
    assert not ray.is_initialized()  # the cluster it started is shut down


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_tasks_ran_in_ray_workers_and_resume_shard_by_shard(cluster, data, tmp_path, monkeypatch):
    """On a running cluster (as with --ray-address): the shards run in Ray's worker processes, not here; a run
    stopped between passes resumes on Ray and writes what the local executor writes."""
    from instructgen.filters import shards
    curate(data, tmp_path / "local", config=CHAIN, quiet=True, shard_size=9, workers=2)
    real = shards.run_pass
    calls = []

    def stop_after_first(*a, **kw):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*a, **kw)
    out = tmp_path / "ray"
    with monkeypatch.context() as m:
        m.setattr("instructgen.filters.stage.run_pass", stop_after_first)
        with pytest.raises(KeyboardInterrupt):
            curate(data, out, config=CHAIN, quiet=True, shard_size=9, executor="ray", workers=2)
    assert ray.is_initialized()  # a cluster we did not start is left running
    pids = {json.loads(x)["pid"] for x in (out / ".work" / "events.jsonl").read_text().splitlines()}
    assert os.getpid() not in pids and pids
    stats = curate(data, out, config=CHAIN, quiet=True, shard_size=9, executor="ray", workers=2)
    assert stats["passes"][0]["shards_run"] == 0 and stats["passes"][1]["shards_run"] == 14
    assert outputs(out) == outputs(tmp_path / "local")


@pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/data (T0)")
def test_ray_on_a_t0_slice_matches_local(cluster, tmp_path):
    import gzip
    src = tmp_path / "t0.jsonl"
    with gzip.open(SHARED, "rt", encoding="utf-8") as f, open(src, "w", encoding="utf-8") as g:
        for _, line in zip(range(1200), f):
            g.write(line)
    cfg = {"filters": [e for e in CHAIN["filters"] if e["filter"] != "readability"] +
           [{"filter": "minhash", "name": "minhash_io", "fields": ["instruction", "output"]}]}
    curate(src, tmp_path / "a", config=cfg, quiet=True, shard_size=300)
    curate(src, tmp_path / "b", config=cfg, quiet=True, shard_size=250, executor="ray", workers=2)
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")

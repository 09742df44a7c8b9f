"""Where `gen curate`'s shard jobs run: `local` (this process, or `--workers N` processes on this machine) or
`ray` (tasks on a Ray cluster: `--ray-address`, or a local one started for the run).

An executor maps one picklable function over a list of jobs and returns the results in job order; the caller
sees each result as it arrives (progress). Results never depend on the executor: each job reads and writes its
own shard files, and the order of the output is the order of the jobs, not of completion.

Ray workers must import instructgen (install it on every node) and see the output folder (a filesystem shared by
the nodes: NFS, Lustre...). Only a local Ray cluster is exercised in our tests (`ray.init(num_cpus=2)`).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from ..config import ConfigError

EXECUTORS = ("local", "ray")


class ExecutorError(ConfigError):
    """The executor could not start (Ray missing or unreachable): one line naming the flag."""


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _init_worker(threads: int) -> None:
    # N workers each starting a BLAS/OpenMP pool as wide as the machine would oversubscribe the cores
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TOKENIZERS_PARALLELISM"):
        os.environ[var] = "false" if var == "TOKENIZERS_PARALLELISM" else str(threads)
    import multiprocessing as mp
    import threading
    parent = mp.parent_process()
    if parent is not None:  # a driver killed with -9 (the OOM killer's choice) must not leave its workers idling
        def watch():
            from multiprocessing.connection import wait
            wait([parent.sentinel])
            os._exit(1)
        threading.Thread(target=watch, name="instructgen-parent-watch", daemon=True).start()


class LocalExecutor:
    """Jobs in this process (`workers=1`: no start-up cost, the driver's filters are reused) or in a pool of
    `workers` spawned processes (spawn, not fork: a forked copy of a process holding torch threads can hang)."""

    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = max(1, int(workers))
        self._pool = None

    def map(self, fn: Callable[[Any], Any], jobs: Sequence[Any], on_done: Callable[[Any], None] | None = None) -> list:
        if self.workers == 1 or len(jobs) <= 1:
            out = []
            for job in jobs:
                out.append(fn(job))
                if on_done:
                    on_done(out[-1])
            return out
        import concurrent.futures as cf
        import multiprocessing as mp
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                                initializer=_init_worker,
                                                initargs=(_threads_per_worker(self.workers),))
        futures = {self._pool.submit(fn, job): i for i, job in enumerate(jobs)}
        out: list = [None] * len(jobs)
        try:
            for fut in cf.as_completed(futures):
                out[futures[fut]] = fut.result()
                if on_done:
                    on_done(out[futures[fut]])
        except BaseException:
            for fut in futures:
                fut.cancel()
            self.close()
            raise
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class RayExecutor:
    """Jobs as Ray tasks (one CPU each). Connects to `address` (a running cluster: `ray://HOST:10001`, or `auto`
    on a node of the cluster), else starts a local cluster with `workers` CPUs and shuts it down when done."""

    name = "ray"

    def __init__(self, workers: int = 1, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise ExecutorError("--executor ray needs Ray: pip install 'instructgen[ray]' (ray 2.60)") from None
        self.ray, self.workers, self.address, self._started = ray, max(1, int(workers)), address, False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"address": address} if address else {"num_cpus": self.workers}
            env = {"env_vars": {"OMP_NUM_THREADS": str(_threads_per_worker(self.workers))}} if not address else None
            try:
                ray.init(include_dashboard=False, log_to_driver=False, runtime_env=env, **kw)
            except Exception as e:  # ConnectionError, RuntimeError, ValueError... by Ray version
                where = f"--ray-address {address}" if address else "a local Ray cluster"
                raise ExecutorError(f"{where}: cannot start or connect ({type(e).__name__}: "
                                    f"{str(e).splitlines()[0] if str(e) else ''})") from None
            self._started = True
        self._remote = {}

    def map(self, fn: Callable[[Any], Any], jobs: Sequence[Any], on_done: Callable[[Any], None] | None = None) -> list:
        ray = self.ray
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = ray.remote(num_cpus=1, max_retries=2)(fn)
        refs = [remote.remote(job) for job in jobs]
        where = {r: i for i, r in enumerate(refs)}
        out: list = [None] * len(jobs)
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for r in done:
                    out[where[r]] = ray.get(r)
                    if on_done:
                        on_done(out[where[r]])
        except BaseException:
            for r in pending:
                ray.cancel(r, force=True)
            raise
        return out

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False


def check_options(name: str = "local", workers: int = 1, ray_address: str | None = None) -> None:
    """`--executor`, `--workers`, `--ray-address`: a bad value is one line naming the flag (nothing starts)."""
    if name not in EXECUTORS:
        raise ExecutorError(f"--executor {name}: expected one of {', '.join(EXECUTORS)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ExecutorError(f"--workers {workers}: expected an integer >= 1")
    if ray_address and name != "ray":
        raise ExecutorError("--ray-address is only used with --executor ray")


def make_executor(name: str = "local", workers: int = 1, ray_address: str | None = None):
    """The executor named by `--executor` (its options checked first)."""
    check_options(name, workers, ray_address)
    if name == "ray":
        return RayExecutor(workers, ray_address)
    return LocalExecutor(workers)

"""`gen curate` as a resumable stage: records in, the same records out with scores and verdicts, in shards.

`curate(input_path, out, config)` validates everything first (config, each filter's needs - LanguageTool,
models, the CMU dictionary -, the input and its fields, the output folder), then runs the chain as passes over
shards of `shard_size` records (filters/shards.py): per-record filters and the features of global steps in
workers (`executor="local"` with `workers` processes, or `"ray"`), each global step decided once from those
features. The kept and rejected sets are the same whatever the executor, the worker count or the shard size.
An interrupted run resumes shard by shard (OUT/.work); a finished one is a no-op; another config (or another
input) is refused unless `overwrite`.

The signature, embedding and score caches live in `OUT/.cache/` by default. `--overwrite` removes what the
earlier run wrote except the cache: changing a threshold and running again with --overwrite costs no hashing or
encoding. `cache_dir` puts the cache elsewhere (e.g. one cache shared by several output folders).

OUT holds: config.json (resolved config, input and its fingerprint), curate.yaml (the chain as a config file
that reproduces it), versions.json, kept.jsonl, rejected.jsonl, stats.json, summary.json and the `completed`
marker, written last.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..progress import table
from ..records import iter_records, text_hash
from ..rundir import check_output_path, refuse_overlap, releases_locks, temp_folder, write_json
from ..stage import Lifecycle, Outcome, Stage, fingerprint
from .base import FilterStats, GlobalStep
from .chain import CurateConfig, build_filter, check_input_fields, check_score_sources, filter_stats, load_config
from .executor import check_options, make_executor
from .shards import WORK, Central, Split, Work, concat, pass_identity, plan, register, run_pass, split, unregister


def funnel(stats: dict) -> str:
    """The funnel table printed at the end: records into each filter, dropped, kept, seconds, why."""
    rows = []
    for f in stats.get("filters", []):
        why = f.get("note") or ", ".join(f"{r} {n:,}" for r, n in sorted(f["dropped"].items(), key=lambda x: -x[1])[:3])
        rows.append([f["name"], f["records_in"], f["dropped_total"], f["kept"], float(f["seconds"]), why])
    rows.append(["total", stats.get("records_in", 0), stats.get("rejected", 0), stats.get("kept", 0),
                 float(stats.get("wall_seconds", 0.0)), ""])
    return table(rows, header=["filter", "in", "dropped", "kept", "seconds", "top reasons / note"])


def _prepare(spec, f, ctx: dict) -> None:
    """`f.prepare(ctx)`; a user error (a missing model, a bad judge spec or template) names the config entry."""
    from ..config import ConfigError
    from ..generator.teachers import TeacherSpecError
    from ..models import ModelSpecError
    from ..templates import TemplateError
    try:
        f.prepare(ctx)
    except (ConfigError, ModelSpecError, TeacherSpecError, TemplateError) as e:
        where = f"{spec.where}: " if spec.where else ""
        raise type(e)(f"{where}{spec.name}: {e}") from None


def _config_yaml(cfg: CurateConfig, input_label: str) -> str:
    import yaml
    head = (f"# gen curate: the resolved chain this folder ran on {input_label}\n"
            "# re-run with: gen curate INPUT --out DIR --config curate.yaml\n")
    return head + yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True, width=110)


def _checks_input(pairs, info: Split, source: str) -> None:
    """The chain's checks on the input, from what the split saw (no record is held): a field no record has, a
    diversity score that nothing sets or carries."""
    from ..records import Instance, Task
    probe = [Task("probe", "probe", instances=[Instance("x", "x")] if info.has_instances else [],
                  scores={k: 0.0 for k in info.carried_scores})] if info.records else []
    check_input_fields(pairs, probe, source)
    check_score_sources(pairs, probe)


def _refuse_links(root: Path) -> None:
    """Nothing under the work folder may be a symbolic link (only our own files and folders are there): a link
    planted after a crash would make the next pass write outside OUT."""
    from ..rundir import RunDirError
    for here, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            if os.path.islink(os.path.join(here, name)):
                raise RunDirError(f"{os.path.join(here, name)} is a symbolic link; instructgen never writes one and "
                                  f"will not write through one: remove it or pass --overwrite (nothing was written)")


def _merge_details(into: dict, d: dict) -> None:
    """Details from several shards: numbers add up, anything else is the last value."""
    for k, v in d.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and isinstance(into.get(k), (int, float)):
            into[k] = round(into[k] + v, 6) if isinstance(v, float) else into[k] + v
        else:
            into[k] = v


def _stats(pairs, shard_done: dict, central: dict, records: int) -> list[dict]:
    """Per-filter stats in chain order, from the shards' done records and the central steps' results."""
    acc: dict[int, dict] = {}
    for done in shard_done.values():
        for rec in done:
            for k, st in rec["filters"].items():
                a = acc.setdefault(int(k), {"records_in": 0, "dropped": Counter(), "seconds": 0.0, "details": {}})
                a["records_in"] += st.get("records_in", 0)
                a["dropped"].update(st.get("dropped", {}))
                a["seconds"] += st.get("seconds", 0.0)
                _merge_details(a["details"], st.get("details", {}))
    for k, st in central.items():
        a = acc.setdefault(k, {"records_in": 0, "dropped": Counter(), "seconds": 0.0, "details": {}})
        if st.get("records_in"):
            a["records_in"] = st["records_in"]
        a["dropped"].update(st.get("dropped", {}))
        a["seconds"] += st.get("seconds", 0.0)
        _merge_details(a["details"], st.get("details", {}))
    out, alive = [], records
    for k, (spec, f) in enumerate(pairs):
        if f is None:
            st = FilterStats(spec.name, records_in=alive, note="disabled in config")
            out.append(filter_stats(spec, None, st))
            continue
        a = acc.get(k, {"records_in": alive, "dropped": Counter(), "seconds": 0.0, "details": {}})
        st = FilterStats(spec.name, records_in=a["records_in"] or alive, dropped=a["dropped"], seconds=a["seconds"],
                         note=getattr(f, "note", None))
        d = filter_stats(spec, f, st)
        if a["details"]:
            d["details"] = {**d.get("details", {}), **a["details"]}
        out.append(d)
        alive = d["kept"]
    return out


OWNER = "owner.pid"  # in a split folder: the process writing it (a folder whose owner died is stale, and ours)


def _split_folder(out: Path | None) -> Path:
    """Where the input is split before the folder is opened: beside OUT when its parent exists (the split then
    moves in by a rename), else in the system's temporary folder (nothing is created on the way to OUT before the
    checks pass). It holds the pid of its writer: a split left by a process that died (kill -9 while reading the
    input) is removed here, and only such a folder."""
    import tempfile
    parent = out.absolute().parent if out is not None else None
    tmp = None
    if parent is not None and parent.is_dir():
        _remove_stale_splits(out.absolute())
        try:
            tmp = temp_folder(out.absolute())
        except OSError:
            pass  # not writable there: the folder check names the problem when OUT is opened
    if tmp is None:
        tmp = Path(tempfile.mkdtemp(prefix="instructgen-curate-"))
    (tmp / OWNER).write_text(f"{os.getpid()}\n")
    return tmp


def _remove_stale_splits(out: Path) -> None:
    for e in out.parent.glob(f".{glob.escape(out.name)}.*.tmp"):
        if e.is_symlink() or not e.is_dir() or not (e / OWNER).is_file() or (e / OWNER).is_symlink():
            continue
        try:
            pid = int((e / OWNER).read_text().strip())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(e, ignore_errors=True)  # its writer is dead: ours, and nobody's any more
        except (ValueError, OSError):
            continue  # not a pid, or a live process we may not signal: left alone


@releases_locks
def curate(input_path: str | os.PathLike, out: str | os.PathLike | None, config: Any = None,
           overwrite: bool = False, dry_run: bool = False, quiet: bool = False,
           languagetool_url: str | None = None, cache_dir: str | os.PathLike | None = None,
           executor: str = "local", workers: int = 1, ray_address: str | None = None,
           shard_size: int = 10_000) -> dict:
    """Run the curation chain on `input_path` into `out`; returns the stats dict (also OUT/stats.json).

    `config`: a YAML path, a dict, a CurateConfig, or None for the packaged default. With `dry_run` nothing is
    written (the caches are read, never written; the shards live in a temporary folder) and the funnel is
    printed even when `quiet`. `executor`, `workers`, `ray_address`: where the shards run (filters/executor.py);
    `shard_size`: records per shard (a resumed run keeps the split it started with). None of them changes the
    result."""
    t_start = time.perf_counter()
    cfg = load_config(config)
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        from ..config import ConfigError
        raise ConfigError(f"--shard-size {shard_size}: expected an integer >= 1")
    check_options(executor, workers, ray_address)  # the executor starts later: its options are checked now
    pairs = [(spec, build_filter(spec) if spec.enabled else None) for spec in cfg.filters]
    out_path = Path(out) if out is not None else None
    if out_path is None and not dry_run:
        raise FileNotFoundError("--out is required (or use --dry-run)")
    cache = Path(cache_dir) if cache_dir else (out_path / ".cache" if out_path is not None else None)
    if cache is not None and cache_dir:
        check_output_path(cache, what="--cache-dir")
        refuse_overlap(cache, [input_path], what="--cache-dir")
    lc = None
    if out_path is not None and not dry_run:
        # a config file inside OUT (its own curate.yaml reproduces the run) is an input once --overwrite may remove it
        config_file = [config] if overwrite and isinstance(config, (str, os.PathLike)) else []
        lc = Lifecycle(Stage("curate", out_path, inputs=[input_path] + config_file, keep=(".cache",),
                             result="stats.json", show=funnel, show_stdout=True), overwrite, quiet)
        lc.check_path()
    ctx = {"cache_dir": cache, "read_only_cache": dry_run, "quiet": quiet, "languagetool_url": languagetool_url}
    for spec, f in pairs:  # servers, models, dictionaries: fail here, before reading a record
        if f is not None:
            _prepare(spec, f, ctx)
    input_label = str(Path(input_path).resolve())

    # the input is read once: split into shards in a temporary folder (beside OUT, so it moves in by a rename)
    # while its fingerprint is taken; a folder already complete only needs the fingerprint
    done_before = lc is not None and (out_path / "completed").exists()
    tmp = None if done_before else _split_folder(out_path if lc is not None else None)
    try:
        info = Split()
        fp = fingerprint(records=split(iter_records(input_path), tmp / "input" if tmp else None, shard_size, info))
        _checks_input(pairs, info, str(input_path))
        if not info.records and not quiet:
            print(f"gen curate: warning: {input_path} holds no records to curate; the result is empty",
                  file=sys.stderr)
        run_config = {"input": input_label, "input_fingerprint": fp, "chain": [s.name for s in cfg.filters],
                      "filters": {s.name: {k: v for k, v in s.to_dict().items() if k != "name"} for s in cfg.filters}}
        if lc is None:
            work = Work(tmp)
        else:
            lc.stage.identity = run_config
            done = lc.finished()
            if done is not None:
                return done
            if tmp is None:  # completed before, yet not "done": --overwrite, or another config: split again
                tmp = _split_folder(out_path)
                info = Split()
                fingerprint(records=split(iter_records(input_path), tmp / "input", shard_size, info))
            resume = lc.open()  # a fresh start removes what an earlier run wrote, except the cache
            if resume.state == "fresh":
                (out_path / "curate.yaml").write_text(_config_yaml(cfg, input_label), encoding="utf-8")
            work = Work(resume.work(WORK))
            _refuse_links(work.root)
            if not work.split_done().exists():
                if (work.root / "input").exists():
                    shutil.rmtree(work.root / "input")  # ours (.work): a split cut short while moving in
                shutil.move(str(tmp / "input"), str(work.root / "input"))  # a rename when beside OUT
            elif not quiet:
                print(f"resuming {out_path}", file=sys.stderr)
            shutil.rmtree(tmp)  # now, not at the end: a kill -9 mid-run must not leave it beside OUT
            tmp = None
            info.counts = json.loads(work.split_done().read_text(encoding="utf-8"))["counts"]
        result = _run(pairs, cfg, work, info, ctx, executor, workers, ray_address, quiet)
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp)

    stats = {"input": input_label, "records_in": info.records, "kept": result["kept"],
             "rejected": info.records - result["kept"], "filters": result["filters"],
             "wall_seconds": round(time.perf_counter() - t_start, 3),
             "executor": {"name": executor, "workers": workers, "shards": len(info.counts),
                          "shard_size": max(info.counts, default=0)}, "passes": result["passes"]}
    if info.already_rejected:
        stats["left_out_already_rejected"] = info.already_rejected
    if lc is None:
        print(funnel(stats))  # a dry run prints its funnel even when quiet
        return stats
    last = len(stats["passes"]) - 1
    for name in ("kept.jsonl", "rejected.jsonl"):  # the last pass's shards, in order, then the stats and `completed`
        concat((work.column(last, s, name) for s in range(len(info.counts))), out_path / name)
    return lc.finish(Outcome(stats, files={"stats.json": stats},
                             where=f"kept: {out_path / 'kept.jsonl'}  rejected: {out_path / 'rejected.jsonl'}"))


def _peak_mib() -> float:
    import resource
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def _run(pairs, cfg: CurateConfig, work: Work, info: Split, ctx: dict, executor: str, workers: int,
         ray_address: str | None, quiet: bool) -> dict:
    """Every pass and central step not done yet; returns the kept count, per-filter stats and per-pass timings."""
    import hashlib
    from ..progress import bar
    passes = plan(pairs)
    counts = info.counts
    job_ctx = {k: (str(v) if isinstance(v, Path) else v) for k, v in ctx.items() if k != "quiet"}
    token = hashlib.sha1(json.dumps([cfg.to_dict(), job_ctx], sort_keys=True, default=str).encode()).hexdigest()
    job = {"work": str(work.root), "token": token, "config": cfg.to_dict(), "ctx": job_ctx}
    split_id = text_hash(work.split_done().read_text(encoding="utf-8"))
    exe = make_executor(executor, workers, ray_address)
    shard_done: dict[int, list] = {}
    central: dict[int, dict] = {}
    timings = []
    register(token, pairs)  # jobs run in this process reuse the prepared filters (until this run ends)
    try:
        for i, p in enumerate(passes):
            names = [pairs[k][0].name for k in p.filters + p.features]
            label = (f"pass {i + 1}/{len(passes)}: " + ", ".join(names)) if names else f"pass {i + 1}/{len(passes)}: write"
            pbar = bar(sum(counts), label, disable=True if quiet else None)
            t0 = time.perf_counter()
            try:
                ident = pass_identity(p, passes[i - 1] if i else None, pairs, split_id)
                done, ran = run_pass(exe, work, p, passes[i - 1] if i else None, counts, job, ident,
                                     lambda rec: pbar.update(rec["records"]))
            finally:
                pbar.close()
            shard_done[i] = done
            timing = {"pass": i + 1, "filters": names, "shards": len(counts), "shards_run": ran,
                      "wall_seconds": round(time.perf_counter() - t0, 3), "driver_peak_rss_mib": _peak_mib()}
            if p.central:
                c = None
                for k in p.central:
                    spec, f = pairs[k]
                    if c is None and not work.central_done(k).exists():
                        c = Central(work, p.index, counts)
                        for j in p.central[:p.central.index(k)]:  # the steps done before a crash: their drops
                            c.replay(j)
                    if work.central_done(k).exists():
                        central[k] = json.loads(work.central_done(k).read_text(encoding="utf-8"))
                        continue
                    t1 = time.perf_counter()
                    res = c.global_step(k, spec, f) if isinstance(f, GlobalStep) else c.select_step(k, spec, f)
                    res["seconds"] = time.perf_counter() - t1
                    write_json(work.central_done(k), res)
                    central[k] = res
                timing["central_seconds"] = round(time.perf_counter() - t0 - timing["wall_seconds"], 3)
                timing["central_peak_rss_mib"] = _peak_mib()  # the driver's peak so far: after the central steps
            if i and (work.root / f"p{i - 1}").exists():  # its records are in pass i's now: only the markers stay
                for e in (work.root / f"p{i - 1}").iterdir():
                    if not e.name.endswith(".done.json"):
                        e.unlink()
            timings.append(timing)
    finally:
        exe.close()
        unregister(token)  # a library caller's next curate() must not keep this run's models alive
        for _, f in pairs:
            if f is not None:
                getattr(f, "close", lambda: None)()
    filters = _stats(pairs, shard_done, central, info.records)
    kept = sum(rec["kept"] for rec in shard_done[len(passes) - 1])
    return {"kept": kept, "filters": filters, "passes": timings}

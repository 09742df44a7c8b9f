"""`gen curate` as a resumable stage: records in, the same records out with scores and verdicts.

`curate(input_path, out, config)` validates everything first (config, each filter's needs - LanguageTool,
models, the CMU dictionary -, the input and its fields, the output folder), then runs the chain. After each
filter, its decisions and scores are appended to `OUT/steps.jsonl` (one fsynced line per filter), so an
interrupted run resumes after the last finished filter; a finished one is a no-op; another config (or another
input) is refused unless `overwrite`.

The signature and embedding caches live in `OUT/.cache/` by default. `--overwrite` removes what the earlier run
wrote except the cache: changing a threshold and running again with --overwrite costs no hashing or encoding.
Each step record carries its identity (step number, filter, options, the ids of the records that reached it) and
names records by id, so a resume replays a step only onto the very records and chain that produced it.
`cache_dir` puts the cache elsewhere (e.g. one cache shared by several output folders).

OUT holds: config.json (resolved config, input and its fingerprint), curate.yaml (the chain as a config file
that reproduces it), versions.json, steps.jsonl, kept.jsonl, rejected.jsonl, stats.json, summary.json and the
`completed` marker, written last.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..progress import table
from ..records import Task, append_jsonl, read_records, repair_torn_tail, text_hash
from ..rundir import (RunDir, RunDirError, check_output_path, records_fingerprint, refuse_overlap, releases_locks,
                      write_json)
from .chain import CurateConfig, build_filter, check_input_fields, check_score_sources, load_config, run_step

STEPS = "steps.jsonl"


def funnel(stats: dict) -> str:
    """The funnel table printed at the end: records into each filter, dropped, kept, seconds, why."""
    rows = []
    for f in stats.get("filters", []):
        why = f.get("note") or ", ".join(f"{r} {n:,}" for r, n in sorted(f["dropped"].items(), key=lambda x: -x[1])[:3])
        rows.append([f["name"], f["records_in"], f["dropped_total"], f["kept"], float(f["seconds"]), why])
    rows.append(["total", stats.get("records_in", 0), stats.get("rejected", 0), stats.get("kept", 0),
                 float(stats.get("wall_seconds", 0.0)), ""])
    return table(rows, header=["filter", "in", "dropped", "kept", "seconds", "top reasons / note"])


def _snapshot(tasks: list[Task]) -> list[tuple[dict, dict] | None]:
    # shallow: a filter replaces a meta value rather than mutating it (meta["rank"] is rebuilt with each new
    # filter's rank, filters/base.py), so the step record sees the change
    return [(dict(t.scores), dict(t.meta)) if t.kept else None for t in tasks]


def _step_identity(k: int, spec, tasks: list[Task]) -> dict:
    """What a step record must match to be replayed: its place in the chain, the filter and its options, and the
    records that reached it (a hash of their ids)."""
    return {"step": k, "name": spec.name, "options": text_hash(json.dumps(spec.to_dict(), sort_keys=True, default=str)),
            "records_in": text_hash(*(t.id for t in tasks if t.kept))}


def _step_record(identity: dict, st: dict, tasks: list[Task], before: list) -> dict:
    """What one filter did, compactly, by record id: its stats, the records it dropped, the scores and meta set."""
    dropped, scores, meta = [], [], []
    for t, snap in zip(tasks, before):
        if snap is None:
            continue
        if not t.kept:
            dropped.append([t.id, t.verdict.reason, t.verdict.filter, t.verdict.duplicate_of])
        s = {key: v for key, v in t.scores.items() if snap[0].get(key, None) != v or key not in snap[0]}
        m = {key: v for key, v in t.meta.items() if key not in snap[1] or snap[1][key] != v}
        if s:
            scores.append([t.id, s])
        if m:
            meta.append([t.id, m])
    return dict(identity, stats=st, dropped=dropped, scores=scores, meta=meta)


def _replay(rec: dict, tasks: list[Task]) -> None:
    by_id = {t.id: t for t in tasks}
    for i, s in rec["scores"]:
        by_id[i].scores.update(s)
    for i, m in rec["meta"]:
        by_id[i].meta.update(m)
    for i, reason, flt, dup in rec["dropped"]:
        by_id[i].drop(reason, filter=flt, duplicate_of=dup)


def _read_steps(path: Path) -> list[dict]:
    if not path.exists():
        return []
    repair_torn_tail(path)
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    raise RunDirError(f"{path}:{n}: damaged step record; pass --overwrite to curate again") from None
    return out


def _check_step(path: Path, rec: dict, identity: dict) -> None:
    """Replay a step only when it is this step, on these records, with these options; else the folder is damaged."""
    got = {k: rec.get(k) for k in identity}
    if got != identity:
        which = ", ".join(k for k in identity if got[k] != identity[k])
        raise RunDirError(f"{path}:{identity['step'] + 1}: the recorded step does not match step "
                          f"{identity['step'] + 1} ({identity['name']}) of this chain ({which} differ); the folder "
                          f"was written by another run: pass --overwrite to curate again")


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


@releases_locks
def curate(input_path: str | os.PathLike, out: str | os.PathLike | None, config: Any = None,
           overwrite: bool = False, dry_run: bool = False, quiet: bool = False,
           languagetool_url: str | None = None, cache_dir: str | os.PathLike | None = None) -> dict:
    """Run the curation chain on `input_path` into `out`; returns the stats dict (also OUT/stats.json).

    `config`: a YAML path, a dict, a CurateConfig, or None for the packaged default. With `dry_run` nothing is
    written (the caches are read, never written) and the funnel is printed even when `quiet`."""
    t_start = time.perf_counter()
    cfg = load_config(config)
    pairs = [(spec, build_filter(spec) if spec.enabled else None) for spec in cfg.filters]
    out_path = Path(out) if out is not None else None
    if out_path is None and not dry_run:
        raise FileNotFoundError("--out is required (or use --dry-run)")
    cache = Path(cache_dir) if cache_dir else (out_path / ".cache" if out_path is not None else None)
    if cache is not None and cache_dir:
        check_output_path(cache, what="--cache-dir")
        refuse_overlap(cache, [input_path], what="--cache-dir")
    if out_path is not None and not dry_run:
        # a config file inside OUT (its own curate.yaml reproduces the run) is an input once --overwrite may remove it
        config_file = [config] if overwrite and isinstance(config, (str, os.PathLike)) else []
        RunDir(out_path, "curate").check_path(inputs=[input_path] + config_file)
    ctx = {"cache_dir": cache, "read_only_cache": dry_run, "quiet": quiet, "languagetool_url": languagetool_url}
    for spec, f in pairs:  # servers, models, dictionaries: fail here, before reading a record
        if f is not None:
            _prepare(spec, f, ctx)
    tasks = read_records(input_path)
    input_label = str(Path(input_path).resolve())
    # records that arrive rejected (a log with verdicts) were decided upstream: left out, and counted
    already_rejected = sum(not t.kept for t in tasks)
    tasks = [t for t in tasks if t.kept]
    check_input_fields(pairs, tasks, str(input_path))
    check_score_sources(pairs, tasks)
    # the chain's order as a list, each entry's options as a mapping: a refused config names the changed option
    if not tasks and not quiet:
        print(f"gen curate: warning: {input_path} holds no records to curate; the result is empty", file=sys.stderr)
    run_config = {"input": input_label, "input_fingerprint": records_fingerprint(tasks),
                  "chain": [s.name for s in cfg.filters],
                  "filters": {s.name: {k: v for k, v in s.to_dict().items() if k != "name"} for s in cfg.filters}}

    rd = None
    done_steps: list[dict] = []
    if not dry_run:
        rd = RunDir(out_path, "curate")
        state = rd.check(run_config, overwrite)
        if state == "done":
            stats = json.loads((out_path / "stats.json").read_text(encoding="utf-8"))
            if not quiet:
                print(f"{out_path} is already complete; nothing to do.", file=sys.stderr)
                print(funnel(stats))
            return stats
        state = rd.open(run_config, overwrite=overwrite, keep=(".cache",))  # the cache survives --overwrite
        if state == "fresh":
            (out_path / "curate.yaml").write_text(_config_yaml(cfg, input_label), encoding="utf-8")
        done_steps = _read_steps(out_path / STEPS)
        if state == "resume" and done_steps and not quiet:
            print(f"resuming {out_path}: {len(done_steps)} of {len(pairs)} filters already done", file=sys.stderr)

    filter_stats = []
    if len(done_steps) > len(pairs):
        raise RunDirError(f"{out_path / STEPS} holds {len(done_steps)} steps for a chain of {len(pairs)}; the "
                          f"folder was written by another run: pass --overwrite to curate again")
    for k, (spec, f) in enumerate(pairs):
        identity = _step_identity(k, spec, tasks)
        if k < len(done_steps):
            _check_step(out_path / STEPS, done_steps[k], identity)
            _replay(done_steps[k], tasks)
            filter_stats.append(done_steps[k]["stats"])
            continue
        before = _snapshot(tasks)
        tasks, st = run_step(spec, f, tasks, quiet=quiet)
        filter_stats.append(st)
        if rd is not None:
            append_jsonl(out_path / STEPS, [_step_record(identity, st, tasks, before)])

    kept = [t for t in tasks if t.kept]
    stats = {"input": input_label, "records_in": len(tasks), "kept": len(kept), "rejected": len(tasks) - len(kept),
             "filters": filter_stats, "wall_seconds": round(time.perf_counter() - t_start, 3)}
    if already_rejected:
        stats["left_out_already_rejected"] = already_rejected
    if rd is not None:
        rd.write_output("kept.jsonl", kept)
        rd.write_output("rejected.jsonl", [t for t in tasks if not t.kept])
        write_json(out_path / "stats.json", stats)
        rd.mark_completed(stats)
    if dry_run or not quiet:
        print(funnel(stats))
        if rd is not None:
            print(f"kept: {out_path / 'kept.jsonl'}  rejected: {out_path / 'rejected.jsonl'}", file=sys.stderr)
    return stats

"""One stage lifecycle, and the one registry of stage names.

A stage is records in, records out, plus a summary. What is the same for every stage lives here once:

    check the path (refuse_overlap, a file, a link, a foreign folder, a folder in use)
      -> a completed folder with the same identity: its result back, nothing written (a no-op)
      -> `prepare` (checks that cost more: a judge's reachability, the tokenizer and preflight)
      -> open or resume (the marker, the lock, config.json; refusal of a changed config or input, naming the key)
      -> the stage's body, given what it needs to resume (the whole batches of log.jsonl, its work folder)
      -> outputs written atomically, then summary.json, then `completed` last -> the closing lines

`run_stage(Stage(...), body)` runs it; the body returns an `Outcome` (the records and files to write, the
summary, what the stage function returns). The guarantees themselves (marker, flock, identity, --overwrite
removing only what the stage wrote) are `rundir.RunDir`'s; this module is the one caller that sequences them.
A stage with resume state of its own (per-shard markers) keeps it in `Resume.work()`: kept on resume, removed
by --overwrite, and removed once `completed` is written.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .records import JsonlAppender, Task
from .rundir import (RunDir, RunDirError, atomic_path, fingerprint_files, records_fingerprint, write_json)


@dataclass(frozen=True)
class StageName:
    """A stage's names: `name` is its `gen` command, the `stage` of config.json and of the .instructgen marker;
    `folder` its subfolder in a `gen run` folder (and the report's kind); `output` its records file."""

    name: str
    folder: str
    output: str | None  # the records it hands on (None: a stage whose result is not records)
    owned: tuple[str, ...]  # what it writes at its folder's top level: --overwrite removes these and nothing else
    signature: tuple[str, ...] = ()  # files that identify a folder of this stage without config.json
    subruns: tuple[str, ...] = ()  # entries that are run folders themselves
    records: bool = True  # its output is records the next stage reads


# The one registry: every other table of stage names (the report's kinds, `gen run`'s folders, what --overwrite
# may remove) is derived from it. In pipeline order.
STAGES: dict[str, StageName] = {s.name: s for s in (
    StageName("instructions", "instructions", "instructions.jsonl", ("instructions.jsonl", "rejected.jsonl"),
              signature=("instructions.jsonl",)),
    StageName("instances", "instances", "tasks.jsonl", ("tasks.jsonl", "rejected.jsonl"), signature=("tasks.jsonl",)),
    StageName("curate", "curated", "kept.jsonl",
              ("steps.jsonl", "kept.jsonl", "rejected.jsonl", "stats.json", "curate.yaml", ".cache", ".work"),
              signature=("stats.json", "kept.jsonl")),
    StageName("train", "train", None,
              ("preflight.txt", "checkpoints", "train_log.jsonl", "eval_before.json", "adapter", "eval.jsonl",
               "metrics.json", "merged", "benchmark_before", "benchmark_after"),
              signature=("metrics.json", "train_log.jsonl", "adapter"),
              subruns=("benchmark_before", "benchmark_after"), records=False),
    StageName("eval", "eval", None,
              ("answers.jsonl", "scores.json", "scores.txt", "judgements.jsonl", "against_answers.jsonl"),
              records=False),
)}
PIPELINE = ("instructions", "instances", "curate", "train")  # what `gen run` runs, in its order
RUN = StageName("run", ".", None, tuple(STAGES[s].folder for s in PIPELINE),
                subruns=tuple(STAGES[s].folder for s in PIPELINE), records=False)
ALL: dict[str, StageName] = dict(STAGES, run=RUN)  # every `stage` a config.json or marker may name
BY_FOLDER: dict[str, StageName] = {s.folder: s for s in STAGES.values()}


def stage_named(name: str) -> StageName | None:
    """The stage a name means: its command / config.json name ("curate") or its folder name ("curated")."""
    return ALL.get(name) or BY_FOLDER.get(name)


def fingerprint(files: Iterable[str | os.PathLike] | None = None, records: Iterable[Task] | None = None) -> str:
    """The one input fingerprint of a stage: of files' contents (templates, seed files, a suite), or of records'
    ids, texts and flags. A different fingerprint is a changed input, and a folder started on the old one is
    refused naming the key that holds it."""
    if (files is None) == (records is None):
        raise TypeError("fingerprint: give files or records")
    return fingerprint_files(files) if files is not None else records_fingerprint(records)


@dataclass
class Stage:
    """One run of a stage: where it writes, what it must not write over, and the identity a resume must match."""

    name: str  # a key of STAGES, or "run" (the `gen run` top folder)
    out: Path
    inputs: Sequence[str | os.PathLike | None] = ()  # --out may not be, lie in or hold one of these
    identity: dict = field(default_factory=dict)  # the resolved config plus *_fingerprint keys of the inputs
    templates: Sequence[Path] = ()  # copied into OUT/templates on a fresh start
    keep: Sequence[str] = ()  # owned entries a fresh start over an earlier run keeps (a cache)
    batched: bool = False  # the body appends whole batches to log.jsonl; a resume gets them in `Resume.log`
    result: str = "summary.json"  # the file a completed folder answers with
    show: Callable[[dict], str] | None = None  # the closing table of a result
    show_stdout: bool = False  # the table is the command's output (stdout), not a note (stderr)

    def __post_init__(self):
        if self.name not in ALL:
            raise ValueError(f"unknown stage {self.name!r}; add it to instructgen.stage.STAGES")
        self.out = Path(self.out)


@dataclass
class Resume:
    """What the body gets: the state ("fresh" or "resume"), the records already logged (whole batches only; a
    torn or partial last batch is cut and redone) and the folder."""

    state: str
    log: list[Task]
    dir: RunDir
    prepared: Any = None  # what `run_stage`'s `prepare` returned
    works: list[Path] = field(default_factory=list)  # the work folders `work` made or found this session

    @property
    def path(self) -> Path:
        return self.dir.path

    @property
    def next_batch(self) -> int:
        return (self.log[-1].meta["batch"] + 1) if self.log else 0

    def file(self, name: str) -> Path:
        return self.dir.path / name

    def appender(self) -> JsonlAppender:
        """The append-only log.jsonl: each `write(batch)` is fsynced whole (every record carries meta.batch and
        meta.batch_size, so a resume can tell a whole batch from a cut one)."""
        return self.dir.appender()

    def read_log(self) -> list[Task]:
        return self.dir.read_log()

    def work(self, name: str = ".work") -> Path:
        """A stage-owned work folder (per-shard markers, partial outputs): created here, kept on resume, removed
        by --overwrite. Its name must be in the stage's `owned` entries."""
        if name not in ALL[self.dir.stage].owned:
            raise ValueError(f"{name} is not an entry the {self.dir.stage} stage owns (instructgen.stage.STAGES)")
        p = self.dir.path / name
        p.mkdir(exist_ok=True)
        if p not in self.works:
            self.works.append(p)
        return p


@dataclass
class Outcome:
    """What a body hands back; `finish` writes it in this order, `completed` last."""

    summary: dict  # summary.json
    records: dict[str, Iterable[Task]] = field(default_factory=dict)  # records files, written atomically
    files: dict[str, Any] = field(default_factory=dict)  # other outputs: a dict -> JSON, a str -> text; atomic
    result: Any = None  # what the stage function returns (None: the summary)
    where: str | None = None  # the closing line (stderr) naming the output
    keep_work: bool = False  # leave the work folders after `completed` (by default they go once it is written)


class Lifecycle:
    """The steps of `run_stage`, for a stage whose order differs (train checks the path before it can read its
    data, curate prepares its filters between the path check and the identity)."""

    def __init__(self, stage: Stage, overwrite: bool = False, quiet: bool = False):
        self.stage, self.overwrite, self.quiet = stage, overwrite, quiet
        self.dir = RunDir(stage.out, stage.name)
        self.resume: Resume | None = None

    def check_path(self) -> None:
        """Refuse, before any work, an output that cannot be ours (see RunDir.check_path)."""
        self.dir.check_path(inputs=self.stage.inputs)

    def finished(self) -> Any:
        """The result of a completed folder with this identity (printed unless quiet), or None; writes nothing.
        Refuses a changed config or input naming the key, unless --overwrite."""
        if self.dir.check(self.stage.identity, self.overwrite) != "done":
            return None
        p = self.dir.file(self.stage.result)
        try:
            result = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise RunDirError(f"{p} is missing or damaged in a completed folder; pass --overwrite to run the "
                              f"stage again or choose another --out") from None
        self._say(f"{self.dir.path} is already complete; nothing to do.")
        self._show(result)
        return result

    def open(self) -> Resume:
        """Lock the folder and prepare it (a fresh start writes the marker, config.json, versions.json and the
        templates; over an earlier run of ours it first removes what that run wrote, except `keep`)."""
        s = self.stage
        if s.batched:
            state, log = self.dir.open_batched(s.identity, overwrite=self.overwrite, templates=s.templates,
                                               keep=s.keep)
        else:
            state, log = self.dir.open(s.identity, overwrite=self.overwrite, templates=s.templates, keep=s.keep), []
        if state == "done":  # another process finished it between `finished()` and taking the lock
            raise RunDirError(f"{self.dir.path} was completed by another gen process meanwhile; run the command "
                              f"again (it will find nothing to do)")
        self.resume = Resume(state, log, self.dir)
        return self.resume

    def finish(self, outcome: Outcome) -> Any:
        """Write the outputs atomically, then summary.json, then `completed`; then remove the work folders (a
        kill before that leaves a completed folder with scratch in it, which --overwrite removes); print the
        closing lines."""
        for name, records in outcome.records.items():
            self.dir.write_output(name, records)
        for name, content in outcome.files.items():
            if isinstance(content, str):
                with atomic_path(self.dir.file(name)) as tmp:
                    tmp.write_text(content if content.endswith("\n") else content + "\n", encoding="utf-8")
            else:
                write_json(self.dir.file(name), content)
        self.dir.mark_completed(outcome.summary)
        if self.resume is not None and not outcome.keep_work:
            for p in self.resume.works:
                shutil.rmtree(p, ignore_errors=True)
        result = outcome.summary if outcome.result is None else outcome.result
        self._show(result)
        if outcome.where:
            self._say(outcome.where)
        return result

    def _show(self, result: Any) -> None:
        if self.stage.show is not None and not self.quiet:
            print(self.stage.show(result), file=sys.stdout if self.stage.show_stdout else sys.stderr, flush=True)

    def _say(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)


def run_stage(stage: Stage, body: Callable[[Resume], Outcome], overwrite: bool = False, quiet: bool = False,
              prepare: Callable[[], Any] | None = None) -> Any:
    """The lifecycle around `body`: check the path, answer a completed folder at once, `prepare()`, open or
    resume, `body(resume)`, then write its Outcome with `completed` last. Returns the Outcome's result (or a
    completed folder's `stage.result` file). The caller validates its config before building `stage`; a
    decorator `rundir.releases_locks` on the stage function gives the lock back when it returns or raises."""
    lc = Lifecycle(stage, overwrite, quiet)
    lc.check_path()
    done = lc.finished()
    if done is not None:
        return done
    prepared = prepare() if prepare is not None else None
    resume = lc.open()
    resume.prepared = prepared
    return lc.finish(body(resume))

"""Run folders: every output folder can reproduce itself and survives a crash.

A stage writes into its folder: `config.json` (the resolved config), `versions.json` (library versions),
`templates/` (copies of the prompt files used), an append-only log of records written whole per batch, its
outputs, and a `completed` marker written last. Opening a folder again:
- completed with the same config -> nothing to do;
- started with the same config -> resume from the log;
- a different config -> refused with the differing keys named, unless `overwrite=True`;
- a non-empty folder that is not a run folder -> refused (we never overwrite what we did not write).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from .records import JsonlAppender, Task, iter_jsonl, repair_torn_tail

LIBRARIES = ("instructgen", "torch", "transformers", "peft", "bitsandbytes", "trl", "accelerate", "datasets",
             "huggingface_hub", "sentence-transformers", "datasketch", "textstat", "language_tool_python",
             "rouge_score", "gguf", "jinja2", "vllm", "openai")


# The command line that created a run, set by the CLI; written into config.json (not compared on resume).
INVOCATION: list[str] | None = None


class RunDirError(RuntimeError):
    pass


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape results (read from metadata; nothing is imported)."""
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename) so a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Keys whose values differ between two config dicts, dotted."""
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k, "<unset>"), new.get(k, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


class RunDir:
    """One stage's output folder. `state` is "fresh", "resume" or "done" after `open`."""

    LOG = "log.jsonl"

    def __init__(self, path: str | os.PathLike, stage: str):
        self.path = Path(path)
        self.stage = stage
        self.state = "fresh"

    @property
    def completed(self) -> bool:
        return (self.path / "completed").exists()

    def file(self, name: str) -> Path:
        return self.path / name

    def check(self, config: dict, overwrite: bool = False) -> str:
        """Decide what opening would do, without writing: "fresh", "resume" or "done"; raises when refused."""
        cfg_path = self.path / "config.json"
        if not self.path.exists() or not any(self.path.iterdir()):
            return "fresh"
        if not cfg_path.exists():
            raise RunDirError(f"{self.path} exists, is not empty and is not an instructgen run folder; "
                              f"choose another --out (nothing was written)")
        old = json.loads(cfg_path.read_text(encoding="utf-8"))
        if old.get("stage") != self.stage and not overwrite:
            raise RunDirError(f"{self.path} holds a '{old.get('stage')}' run, not '{self.stage}'; "
                              f"choose another --out or pass --overwrite")
        diff = config_diff(old.get("config", {}), config)
        if diff and not overwrite:
            raise RunDirError(f"{self.path} was started with a different config; pass --overwrite to discard it "
                              "or choose another --out. Differences:\n  " + "\n  ".join(diff))
        if overwrite and diff:
            return "fresh"
        return "done" if self.completed else "resume"

    def open(self, config: dict, overwrite: bool = False, templates: Iterable[Path] = ()) -> str:
        """Prepare the folder for writing; returns the state ("fresh", "resume" or "done")."""
        self.state = self.check(config, overwrite)
        if self.state == "fresh":
            if self.path.exists() and (self.path / "config.json").exists():
                shutil.rmtree(self.path)  # --overwrite of one of our own run folders
            self.path.mkdir(parents=True, exist_ok=True)
            meta = {"stage": self.stage, "config": config, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            if INVOCATION:
                meta["argv"] = INVOCATION
            write_json(self.path / "config.json", meta)
            write_json(self.path / "versions.json", library_versions())
            tdir = self.path / "templates"
            for t in templates:
                tdir.mkdir(exist_ok=True)
                shutil.copy2(t, tdir / Path(t).name)
        elif self.state == "resume":
            repair_torn_tail(self.path / self.LOG)
        return self.state

    def open_batched(self, config: dict, overwrite: bool = False, templates: Iterable[Path] = ()) -> tuple[str, list[Task]]:
        """`open`, then the log to resume from, with a trailing batch that was not written whole cut away (that
        batch is redone). Returns (state, log); the log is empty when the state is "done" or "fresh"."""
        state = self.open(config, overwrite=overwrite, templates=templates)
        if state == "done":
            return state, []
        log = self.read_log()
        cut = incomplete_batch_tail(log)
        if cut < len(log):
            self.rewrite_log(log[:cut])
            log = log[:cut]
        return state, log

    def read_log(self) -> list[Task]:
        """All records in the append-only log (a torn last line from a crash is cut first)."""
        log = self.path / self.LOG
        if not log.exists():
            return []
        repair_torn_tail(log)
        return [Task.from_dict(obj) for _, obj in iter_jsonl(log)]

    def rewrite_log(self, tasks: list[Task]) -> None:
        """Replace the log atomically (used to cut an incomplete trailing batch on resume)."""
        from .records import write_jsonl
        tmp = self.path / (self.LOG + ".tmp")
        write_jsonl(tmp, tasks)
        os.replace(tmp, self.path / self.LOG)

    def appender(self) -> JsonlAppender:
        return JsonlAppender(self.path / self.LOG)

    def write_output(self, name: str, tasks: Iterable[Task]) -> Path:
        """Write a final output file atomically."""
        from .records import write_jsonl
        p = self.path / name
        tmp = p.with_name(p.name + ".tmp")
        write_jsonl(tmp, tasks)
        os.replace(tmp, p)
        return p

    def mark_completed(self, summary: dict) -> None:
        """Write the summary, then the `completed` marker last."""
        write_json(self.path / "summary.json", summary)
        (self.path / "completed").write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")

    def done_summary(self, format_summary, quiet: bool = False) -> dict:
        """The summary of a completed run, printed (unless quiet) with the stage's own table format."""
        import sys
        summary = self.summary()
        if not quiet:
            print(f"{self.path} is already complete; nothing to do.", file=sys.stderr)
            print(format_summary(summary), file=sys.stderr)
        return summary

    def summary(self) -> dict:
        p = self.path / "summary.json"
        return json.loads(p.read_text()) if p.exists() else {}


def incomplete_batch_tail(tasks: list[Task]) -> int:
    """Index where a trailing batch that was not written whole begins (len(tasks) when all are whole).

    Every record of a batch carries meta.batch and meta.batch_size (the records that batch wrote)."""
    if not tasks:
        return 0
    last = tasks[-1].meta.get("batch")
    start = len(tasks)
    while start > 0 and tasks[start - 1].meta.get("batch") == last:
        start -= 1
    return start if len(tasks) - start != tasks[-1].meta.get("batch_size") else len(tasks)

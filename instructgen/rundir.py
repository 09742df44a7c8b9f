"""Run folders: every output folder can reproduce itself, survives a crash, and is never shared or mistaken.

A stage writes into its folder: a `.instructgen` marker (written first: the folder is ours only when it holds
it), `config.json` (the resolved config, with fingerprints of every input), `versions.json` (library versions),
`templates/` (copies of the prompt files used), an append-only log of records written whole per batch, its
outputs, and a `completed` marker written last. Opening a folder again:
- completed with the same config -> nothing to do;
- started with the same config and inputs -> resume from the log;
- a different config, or a changed input (seeds, templates, records) -> refused with the differences named,
  unless `overwrite=True`;
- `overwrite=True` removes only the entries this stage writes (its `owned` in instructgen.stage.STAGES), and
  refuses a folder that holds anything else, naming it; a non-empty folder without our marker is refused whole
  (we never delete what we did not write).
The order of these steps around a stage's own work is instructgen/stage.py's (the one lifecycle).
One process per folder: `open` takes an OS lock (`flock` on `.instructgen.lock`, released by the kernel when the
process dies, kill -9 included); a second process stops at once, naming the folder and the holder's pid.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from .records import JsonlAppender, Task, iter_jsonl, repair_torn_tail

LIBRARIES = ("instructgen", "torch", "transformers", "peft", "bitsandbytes", "trl", "accelerate", "datasets",
             "huggingface_hub", "sentence-transformers", "datasketch", "textstat", "language_tool_python",
             "rouge_score", "gguf", "jinja2", "vllm", "openai", "nvidia-ifbench", "lm-eval", "nltk")


UMASK = os.umask(0o022)
os.umask(UMASK)


def temp_folder(target: Path) -> Path:
    """A fresh temp folder beside `target` (`.NAME.XXXXXXXX.tmp`), with the mode a plain mkdir would give."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~UMASK)
    return tmp


# The command line that created a run, set by the CLI; written into config.json (not compared on resume).
INVOCATION: list[str] | None = None


class RunDirError(RuntimeError):
    pass


def _real(p: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.expanduser(str(p))))


def refuse_overlap(output: str | os.PathLike, inputs: Iterable[str | os.PathLike], what: str = "--out") -> None:
    """Refuse an output that is an input, lies inside one, or holds one: writing (or --overwrite) there would
    destroy what the command reads. Paths are compared after resolving symbolic links."""
    out = _real(output)
    for i in inputs:
        if i is None:
            continue
        src = _real(i)
        if out == src or src in out.parents:
            raise RunDirError(f"{what} {output} is inside the input {i}; choose an output outside it "
                              f"(nothing was written)")
        if out in src.parents:
            raise RunDirError(f"{what} {output} holds the input {i}; choose an output that does not contain it "
                              f"(nothing was written)")


def library_versions(libraries: Iterable[str] = LIBRARIES, python: bool = True) -> dict[str, str]:
    """Installed versions of the libraries that shape results (read from metadata; nothing is imported)."""
    out = {"python": platform.python_version()} if python else {}
    for lib in libraries:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    return out


@contextlib.contextmanager
def atomic_path(path: Path):
    """A fresh temp path beside `path` (`.NAME.xxxx.tmp`), renamed onto `path` when the block succeeds and
    removed when it fails: a crash never leaves half a file, and a stale temp file from an old crash is no
    obstacle."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600; an output is as readable as any file the user writes
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename) so a crash never leaves half a file."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


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


MARKER = ".instructgen"  # {"tool": "instructgen", "stage": ...}: written first, so a folder is ours only with it
LOCK = ".instructgen.lock"  # flock'ed while a process writes the folder; holds that process's pid
COMMON = (MARKER, LOCK, "config.json", "versions.json", "templates", "log.jsonl", "summary.json", "completed",
          "report.html", "publish")  # the last two: `gen report` / `gen publish --dry-run` into a stage folder


# What each stage writes (and which entries are run folders themselves) is in the one registry of stages,
# instructgen.stage.STAGES; imported when used, since instructgen.stage builds its lifecycle on this module.
def _owned(stage: str | None) -> tuple[str, ...]:
    """What `stage` writes at its folder's top level: --overwrite removes these and nothing else."""
    from .stage import ALL
    return ALL[stage].owned if stage in ALL else ()


def _subruns(stage: str | None) -> tuple[str, ...]:
    from .stage import ALL
    return ALL[stage].subruns if stage in ALL else ()


# folders this process has locked: real path -> open lock file (flock is per open file, so one per folder)
_HELD: dict[str, Any] = {}


_TEMP = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")  # what atomic_path / mkdtemp names a temp entry


def _is_owned(name: str, owned: tuple[str, ...]) -> bool:
    """Our own entry: a name the stage writes, or a temp entry of one (`NAME.tmp`, `.NAME.XXXXXXXX.tmp`)."""
    if name in owned:
        return True
    m = _TEMP.match(name)
    return (m is not None and m["name"] in owned) or (name.endswith(".tmp") and name[:-4] in owned)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _marker_stage(path: Path) -> str | None:
    """The stage whose run folder `path` is, or None when it is not ours. Folders made before the marker existed
    count when their config.json names a stage and their versions.json names instructgen."""
    meta = _read_json(path / MARKER)
    if isinstance(meta, dict) and meta.get("tool") == "instructgen":
        return meta.get("stage")
    cfg, ver = _read_json(path / "config.json"), _read_json(path / "versions.json")
    if (isinstance(cfg, dict) and _owned(cfg.get("stage")) and isinstance(ver, dict) and "instructgen" in ver
            and not (path / MARKER).exists()):
        return cfg["stage"]
    return None


def foreign_entries(path: Path, stage: str) -> list[Path]:
    """Entries of our run folder `path` that this stage did not write: other names, symbolic links (we never
    make one), files in `templates/` we did not copy there, and the same inside the stage subfolders of `gen run`
    (each of which must not be in use by another process). Inside `adapter/`, `checkpoints/` and `merged/`
    (written whole by peft/transformers) files are not checked one by one."""
    owned = COMMON + _owned(stage)
    meta = _read_json(path / MARKER)
    copied = set(meta.get("templates", [])) if isinstance(meta, dict) and isinstance(meta.get("templates"), list) \
        else None
    out = []
    for e in sorted(path.iterdir()):
        if not _is_owned(e.name, owned) or e.is_symlink():
            out.append(e)
        elif e.name == "templates" and e.is_dir() and copied is not None:
            out += [f for f in sorted(e.iterdir()) if f.name not in copied or f.is_symlink() or not f.is_file()]
        elif e.name in _subruns(stage) and e.is_dir() and any(e.iterdir()):
            sub = _marker_stage(e)
            if sub:
                probe_lock(e)
                out += foreign_entries(e, sub)
            else:
                out.append(e)
    return out


def remove_owned(path: Path, stage: str, keep: Iterable[str] = ()) -> None:
    """Remove what the stage (or the earlier run the folder's marker names) wrote into `path`, after
    `foreign_entries` found nothing else; the lock stays, and an entry that is not ours is never touched."""
    keep = set(keep) | {LOCK}
    owned = COMMON + _owned(stage) + _owned(_marker_stage(path))
    for e in path.iterdir():
        if e.name in keep or not _is_owned(e.name, owned):
            continue
        if e.is_dir() and not e.is_symlink():
            shutil.rmtree(e)
        else:
            e.unlink()


def _refuse_foreign(path: Path, stage: str) -> None:
    foreign = foreign_entries(path, stage)
    if foreign:
        names = ", ".join(str(f.relative_to(path)) for f in foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise RunDirError(f"{path} holds {len(foreign)} file(s) instructgen did not write ({names}); --overwrite "
                          f"removes only what we wrote, so move them out or choose another --out (nothing was "
                          f"removed)")


def _busy(f, path: Path) -> RunDirError:
    f.seek(0)
    pid = f.read().strip() or "unknown"
    f.close()
    return RunDirError(f"{path} is in use by another gen process (pid {pid}); wait for it to finish or stop it, "
                       f"or choose another --out")


def probe_lock(path: Path) -> None:
    """Refuse at once when another process holds the folder's lock (takes nothing)."""
    import fcntl
    if os.path.realpath(path) in _HELD or (path / LOCK).is_symlink() or not (path / LOCK).is_file():
        return
    try:
        f = open(path / LOCK, encoding="utf-8")
    except OSError:
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(f, path) from None
    f.close()  # closing the file drops the probe's lock


def lock(path: Path) -> None:
    """Take the folder's lock for this process (re-entrant within it); refuse when another process holds it."""
    import fcntl
    key = os.path.realpath(path)
    if key in _HELD:
        return
    p = path / LOCK
    if p.is_symlink() or (p.exists() and not p.is_file()):
        raise RunDirError(f"{p} is not a regular file (instructgen writes its lock there); remove it, or choose "
                          f"another --out")
    try:
        f = os.fdopen(os.open(p, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666), "a+", encoding="utf-8")
    except OSError as e:
        raise RunDirError(f"{path}: cannot write there ({e.strerror or e})") from None
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(f, path) from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    _HELD[key] = f


def release(path: Path) -> None:
    """Give the folder's lock back (the kernel does it anyway when the process ends)."""
    f = _HELD.pop(os.path.realpath(path), None)
    if f is not None:
        f.close()


def releases_locks(fn):
    """Decorator for a stage function: the folders it locked are released when it returns or raises, so one
    process can run several stages (tests, `gen run`) and another process can take over after an error."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        before = set(_HELD)
        try:
            return fn(*args, **kwargs)
        finally:
            for key in set(_HELD) - before:
                _HELD.pop(key).close()
    return wrapper


def check_output_path(path: Path, what: str = "--out") -> None:
    """An output folder must be a folder we can write, not a file or a symbolic link (we never write through one)."""
    if path.is_symlink():
        raise RunDirError(f"{what} {path} is a symbolic link; give the folder it points to (nothing was written)")
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{what} {path} is a file, not a folder; choose another {what} (nothing was written)")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if not path.exists() and parent is not None and not parent.is_dir():
        raise RunDirError(f"{what} {path}: cannot create it, {parent} is a file (nothing was written)")
    if not path.exists() and parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise RunDirError(f"{what} {path}: cannot create it, {parent} is not writable (nothing was written)")


def fingerprint_files(paths: Iterable[str | os.PathLike]) -> str:
    """A hash of files' contents (templates, seed files): an edited file is a different run."""
    h = hashlib.sha1()
    for p in paths:
        h.update(Path(p).read_bytes() + b"\x1d")
    return h.hexdigest()[:16]


def records_fingerprint(tasks: Iterable[Task]) -> str:
    """A hash of records' ids, texts and flags: a changed input is a different run."""
    h = hashlib.sha1()
    for t in tasks:
        parts = [t.id, t.instruction, str(t.is_classification), str(t.kept)]
        for i in t.instances:
            parts += [i.input, i.output]
        h.update("\x1f".join(parts).encode("utf-8", "surrogatepass") + b"\x1d")
    return h.hexdigest()[:16]


def _describe(diff_line: str) -> str:
    key = diff_line.split(":", 1)[0]
    if key.endswith("fingerprint") or key.endswith("input_hash"):
        what = key.rsplit(".", 1)[-1].replace("_fingerprint", "").replace("input_hash", "input").replace("_", " ")
        return f"{key}: the {what} changed since this folder was started"
    return diff_line


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

    def _old_config(self, overwrite: bool) -> dict | None:
        """config.json of our folder; None when missing, or damaged and `overwrite` (then started again)."""
        cfg_path = self.path / "config.json"
        if not cfg_path.exists():
            return None
        try:
            old = json.loads(cfg_path.read_text(encoding="utf-8"))
            if not isinstance(old, dict) or not isinstance(old.get("config", {}), dict):
                raise ValueError("not a config object")
        except (OSError, ValueError):
            if overwrite:
                return None
            raise RunDirError(f"{cfg_path} is damaged (not our JSON config); pass --overwrite to start this "
                              f"folder again or choose another --out") from None
        return old

    def check_path(self, inputs: Iterable[str | os.PathLike | None] = ()) -> None:
        """Refuse, before any work, an output that cannot be ours: one that is, lies inside or holds one of the
        `inputs` (see `refuse_overlap`), a file, a link, a foreign non-empty folder, one in use elsewhere."""
        refuse_overlap(self.path, inputs)
        check_output_path(self.path)
        if self.path.is_dir() and any(e.name != LOCK for e in self.path.iterdir()) and _marker_stage(self.path) is None:
            raise RunDirError(f"{self.path} exists, is not empty and is not an instructgen run folder (no "
                              f"{MARKER} marker); choose another --out (nothing was written or removed)")
        if self.path.is_dir():
            probe_lock(self.path)
            links = [e.name for e in self.path.iterdir() if e.is_symlink()]
            if links:
                raise RunDirError(f"{self.path} holds symbolic links ({', '.join(sorted(links)[:5])}); instructgen "
                                  f"never writes one and will not write through one: remove them or choose another "
                                  f"--out (nothing was written)")

    def check(self, config: dict, overwrite: bool = False) -> str:
        """Decide what opening would do, without writing: "fresh", "resume" or "done"; raises when refused."""
        self.check_path()
        if not self.path.exists() or all(e.name == LOCK for e in self.path.iterdir()):
            return "fresh"
        old = self._old_config(overwrite)
        if old is None:  # a start cut before its config was written, or a damaged config with --overwrite
            _refuse_foreign(self.path, _marker_stage(self.path))
            return "fresh"
        if old.get("stage") != self.stage and not overwrite:
            raise RunDirError(f"{self.path} holds a '{old.get('stage')}' run, not '{self.stage}'; "
                              f"choose another --out or pass --overwrite")
        diff = config_diff(old.get("config", {}), config)
        if diff and not overwrite:
            raise RunDirError(f"{self.path} was started with a different config or input; pass --overwrite to "
                              "discard it or choose another --out. Differences:\n  " +
                              "\n  ".join(_describe(d) for d in diff))
        if overwrite and (diff or old.get("stage") != self.stage):
            _refuse_foreign(self.path, old.get("stage"))  # what the earlier run wrote is what may be removed
            return "fresh"
        return "done" if self.completed else "resume"

    def open(self, config: dict, overwrite: bool = False, templates: Iterable[Path] = (),
             keep: Iterable[str] = ()) -> str:
        """Lock the folder and prepare it for writing; returns the state ("fresh", "resume" or "done").

        A fresh start over an earlier run of ours removes what that run wrote, except the entries in `keep`."""
        self.check(config, overwrite)  # refusals first, before anything is created or locked
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"--out {self.path}: cannot create it ({e.strerror})") from None
        lock(self.path)
        self.state = self.check(config, overwrite)  # again, under the lock: another process may have written
        try:
            if self.state == "fresh":
                remove_owned(self.path, self.stage, keep=keep)
                write_json(self.path / MARKER, {"tool": "instructgen", "stage": self.stage,
                                                "templates": sorted({Path(t).name for t in templates})})
                meta = {"stage": self.stage, "config": config,
                        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
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
                # a kill -9 inside atomic_path leaves `.NAME.XXXXXXXX.tmp` of an output this stage writes: ours
                owned = COMMON + _owned(self.stage)
                for e in self.path.iterdir():
                    m = _TEMP.match(e.name)
                    if m is not None and m["name"] in owned and e.is_file() and not e.is_symlink():
                        e.unlink()
        except OSError as e:
            raise RunDirError(f"{self.path}: cannot write there ({e.strerror})") from None
        return self.state

    def release(self) -> None:
        release(self.path)

    def open_batched(self, config: dict, overwrite: bool = False, templates: Iterable[Path] = (),
                     keep: Iterable[str] = ()) -> tuple[str, list[Task]]:
        """`open`, then the log to resume from, with a trailing batch that was not written whole cut away (that
        batch is redone). Returns (state, log); the log is empty when the state is "done" or "fresh"."""
        state = self.open(config, overwrite=overwrite, templates=templates, keep=keep)
        if state == "done":
            return state, []
        log = self.read_log()
        ids = [t.id for t in log]
        if len(set(ids)) != len(ids):
            raise RunDirError(f"{self.path / self.LOG} holds duplicate record ids (written by two processes at "
                              f"once before folders were locked); pass --overwrite to start it again")
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
        self.write_output(self.LOG, tasks)

    def appender(self) -> JsonlAppender:
        return JsonlAppender(self.path / self.LOG)

    def write_output(self, name: str, tasks: Iterable[Task]) -> Path:
        """Write a final output file atomically."""
        from .records import write_jsonl
        p = self.path / name
        with atomic_path(p) as tmp:
            write_jsonl(tmp, tasks)
        return p

    def mark_completed(self, summary: dict) -> None:
        """Write the summary, then the `completed` marker last."""
        write_json(self.path / "summary.json", summary)
        (self.path / "completed").write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")

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

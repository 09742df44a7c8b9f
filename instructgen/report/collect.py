"""Read a run folder, or a single stage folder, into plain data for the report and the dataset card.

Layout of `gen run`: RUN/instructions, RUN/instances, RUN/curated, RUN/train (any subset). A stage folder is
recognised by the `stage` in its config.json, else by its output files. Whatever is absent is listed in
`RunData.missing`, so the page can say what it could not show.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..records import RecordError, Task, iter_jsonl

DATA_KINDS = ("instructions", "instances", "curated")  # least to most processed
KINDS = DATA_KINDS + ("train",)
# config.json "stage" -> kind; the folder names of `gen run` are the kinds themselves
STAGE_NAMES = {"instructions": "instructions", "instances": "instances", "curate": "curated",
               "curated": "curated", "train": "train"}
# the `gen` command that writes each kind
COMMANDS = {"instructions": "instructions", "instances": "instances", "curated": "curate", "train": "train"}
SIGNATURES = (("curated", ("stats.json", "kept.jsonl")), ("instances", ("tasks.jsonl",)),
              ("instructions", ("instructions.jsonl",)), ("train", ("metrics.json", "train_log.jsonl", "adapter")))
OUTPUTS = {"instructions": "instructions.jsonl", "instances": "tasks.jsonl", "curated": "kept.jsonl"}
WHAT_IS_LOST = {
    "instructions": "no instruction-generation stage: teacher, prompt template and instruction filter counts "
                    "are not shown",
    "instances": "no instance-generation stage: instance filter counts are not shown",
    "curated": "no curation stage: the curation funnel and dedup/readability scores are not shown",
    "train": "no training stage: training loss and before/after evaluation are not shown",
}


@dataclass
class Stage:
    """One stage folder: its config, summary and records (kept = its output; rejected = rejected.jsonl)."""

    kind: str
    path: Path
    complete: bool
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config (config.json["config"])
    raw_config: dict[str, Any] = field(default_factory=dict)  # config.json as written
    summary: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    kept: list[Task] = field(default_factory=list)
    rejected: list[Task] = field(default_factory=list)
    stats: dict[str, Any] | None = None  # curated: stats.json
    from_log: bool = False  # records read from log.jsonl because the stage has not finished
    metrics: dict[str, Any] = field(default_factory=dict)  # train: metrics.json
    train_log: list[dict] = field(default_factory=list)  # train: train_log.jsonl
    eval: list[dict] = field(default_factory=list)  # train: eval.jsonl

    @property
    def command(self) -> str:
        return COMMANDS[self.kind]

    @property
    def templates(self) -> list[Path]:
        d = self.path / "templates"
        return sorted(p for p in d.iterdir() if p.is_file()) if d.is_dir() else []


@dataclass
class RunData:
    root: Path
    stages: dict[str, Stage]
    single_stage: bool  # RUN_DIR is itself one stage folder
    run_config: dict[str, Any] | None = None  # RUN/config.json of a whole `gen run`, when there is one

    @property
    def missing(self) -> list[str]:
        if self.single_stage:
            (kind,) = self.stages
            return [f"{self.root.resolve().name} is a single '{kind}' stage folder; the other stages are not in it"]
        return [f"{k}/: {WHAT_IS_LOST[k]}" for k in KINDS if k not in self.stages]

    @property
    def incomplete(self) -> list[Stage]:
        return [s for s in self.stages.values() if not s.complete]

    def final(self) -> Stage | None:
        """The most processed data stage: curated, else instances, else instructions."""
        for kind in reversed(DATA_KINDS):
            if kind in self.stages:
                return self.stages[kind]
        return None


def stage_kind(path: Path) -> str | None:
    """The kind of a stage folder, from its config.json `stage`, else from its files; None if not one."""
    cfg = path / "config.json"
    if cfg.is_file():
        try:
            stage = json.loads(cfg.read_text(encoding="utf-8")).get("stage")
        except (json.JSONDecodeError, AttributeError):
            raise RecordError(cfg, None, "not a valid JSON object") from None
        if stage in STAGE_NAMES:
            return STAGE_NAMES[stage]
    for kind, files in SIGNATURES:
        if any((path / f).exists() for f in files):
            return kind
    return None


def find_stages(root: Path) -> tuple[dict[str, Path], bool]:
    """({kind: folder}, single_stage) for a run folder or a single stage folder."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such run folder")
    kind = stage_kind(root)
    if kind is not None:
        return {kind: root}, True
    found: dict[str, Path] = {}
    for k in KINDS:  # the `gen run` names first, then any other folder that is recognisably a stage
        if (root / k).is_dir() and stage_kind(root / k):
            found[stage_kind(root / k)] = root / k
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        k = stage_kind(sub)
        if k and k not in found:
            found[k] = sub
    if not found:
        raise RecordError(root, None, "not a run folder: expected a stage folder (with config.json) or stage "
                                      "subfolders instructions/, instances/, curated/, train/")
    return found, False


def load_run(root: str | Path) -> RunData:
    """Read everything the report and the card use from a run folder or a stage folder."""
    root = Path(root)
    paths, single = find_stages(root)
    stages = {k: load_stage(k, p) for k, p in paths.items()}
    run_config = None
    if not single and (root / "config.json").is_file():
        run_config = _json(root / "config.json")
    return RunData(root=root, stages=stages, single_stage=single, run_config=run_config)


def load_stage(kind: str, path: Path) -> Stage:
    raw = _json(path / "config.json") if (path / "config.json").is_file() else {}
    st = Stage(kind=kind, path=path, complete=(path / "completed").exists(), raw_config=raw,
               config=raw.get("config", {}) if isinstance(raw.get("config"), dict) else {},
               summary=_json(path / "summary.json") if (path / "summary.json").is_file() else {},
               versions=_json(path / "versions.json") if (path / "versions.json").is_file() else {})
    if kind == "train":
        st.metrics = _json(path / "metrics.json") if (path / "metrics.json").is_file() else {}
        st.train_log = _rows(path / "train_log.jsonl", tolerate_torn_tail=not st.complete)
        st.eval = _rows(path / "eval.jsonl", tolerate_torn_tail=False)
        return st
    if kind == "curated" and (path / "stats.json").is_file():
        st.stats = _json(path / "stats.json")
    out = path / OUTPUTS[kind]
    if out.is_file():
        st.kept = _tasks(out)
        st.rejected = _tasks(path / "rejected.jsonl") if (path / "rejected.jsonl").is_file() else []
    elif (path / "log.jsonl").is_file():  # not finished: show what the log holds so far
        records = [Task.from_dict(o) for o in _rows(path / "log.jsonl", tolerate_torn_tail=True)]
        st.kept = [t for t in records if t.kept]
        st.rejected = [t for t in records if not t.kept]
        st.from_log = True
    return st


def _json(p: Path) -> dict:
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RecordError(p, e.lineno, f"not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise RecordError(p, None, "expected a JSON object")
    return obj


def _rows(p: Path, tolerate_torn_tail: bool) -> list[dict]:
    if not p.is_file():
        return []
    if not tolerate_torn_tail:
        return [o for _, o in iter_jsonl(p)]
    lines = p.read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # a line torn by a crash mid-write; the stage redoes it on resume
            raise RecordError(p, i + 1, "not valid JSON") from None
    return out


def _tasks(p: Path) -> list[Task]:
    out = []
    for line, obj in iter_jsonl(p):
        try:
            out.append(Task.from_dict(obj))
        except TypeError as e:
            raise RecordError(p, line, f"not an instructgen record ({e})") from None
    return out


# ---------------------------------------------------------------------------------------------- portable paths

PACKAGED = "<packaged>"  # stands for the installed instructgen package (packaged seeds and templates)
PACKAGE_DIR = Path(__file__).resolve().parents[1]
_PATH_CHAR = r"""[^\s'"`<>|,;=()\[\]{}]"""
# where an absolute path may begin inside a longer string: at its start, or after a space, `=`, `:`, a quote, a
# bracket or a comma (`--seeds=/x`, `transformers:/x`, `['/x']`); `and/or` or `1/2` are not paths
_BEFORE = r"""(?<![^\s=:'"`(\[{,])"""
_CANDIDATE = re.compile(_BEFORE + r"(~?/+" + _PATH_CHAR + r"*)")


def portable(obj: Any, root: str | os.PathLike, base: str | None = None) -> Any:
    """`obj` (JSON-like: dicts, lists, strings, numbers) with every absolute path of this machine rewritten, so
    what is published or shared names no local folder: a path inside `root` (the run folder) becomes relative to
    it (`base/rel` when `base` is given, e.g. "run" in reproduce commands; the root itself is "." or `base`), one
    inside the installed instructgen package becomes `<packaged>/rel`, and any other local path (under $HOME,
    /tmp, /work, or whose top folder exists here) its basename. Paths inside longer strings (`--seeds=/x/y`,
    `transformers:/x/m`, a command line) are found too; a string that is itself an absolute path may hold
    spaces. URLs and other text are left as they are. The one place every published or shared writer goes
    through: the dataset card, report.html, the configs `gen publish` uploads, the adapter card."""
    ctx = _PathContext(root, base)
    return ctx.walk(obj)


class _PathContext:
    def __init__(self, root: str | os.PathLike, base: str | None):
        r = Path(os.path.expanduser(str(root)))
        self.roots = sorted({os.path.normpath(os.path.abspath(r)), os.path.realpath(r)}, key=len, reverse=True)
        self.packages = sorted({str(PACKAGE_DIR), os.path.normpath(os.path.abspath(PACKAGE_DIR))}, key=len,
                               reverse=True)
        self.base = base
        home = os.path.expanduser("~")
        self.homes = {h for h in (home, os.path.realpath(home)) if h not in ("", "/", "~")}
        prefixes = self.roots + self.packages
        self.literal = re.compile(_BEFORE + "(" + "|".join(re.escape(p) for p in prefixes) + ")(/" + _PATH_CHAR +
                                  "*)?(?!" + _PATH_CHAR + ")")

    def walk(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {self.text(k) if isinstance(k, str) else k: self.walk(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.walk(v) for v in obj)
        return obj

    def text(self, s: str) -> str:
        if "/" not in s:
            return s
        if s.startswith(("/", "~/")) and "\n" not in s:  # the whole string is a path: it may hold spaces
            whole = self.path(s)
            if whole is not None:
                return whole
        s = self.literal.sub(lambda m: self.path(m.group(1) + (m.group(2) or "")) or m.group(0), s)
        return _CANDIDATE.sub(lambda m: self.path(m.group(1)) or m.group(0), s)

    def path(self, p: str) -> str | None:
        """The portable form of one path, or None to leave it as it is (not an absolute local path)."""
        if p.startswith("//") and not p.startswith("///"):
            return None  # the host part of a URL (`http://host/v1`)
        p = os.path.expanduser(p)
        if not p.startswith("/"):
            return None
        p = "/" + p.lstrip("/")
        norm = os.path.normpath(p)
        for candidate in (norm, os.path.realpath(norm)):
            for r in self.roots:
                rel = _under(candidate, r)
                if rel is not None:
                    return (f"{self.base}/{rel}" if rel else self.base) if self.base else (rel or ".")
            for pkg in self.packages:
                rel = _under(candidate, pkg)
                if rel is not None:
                    return f"{PACKAGED}/{rel}" if rel else PACKAGED
        top = norm.split("/")[1] if norm != "/" else ""
        local = (any(_under(norm, h) is not None for h in self.homes) or top in ("tmp", "work", "home", "root")
                 or (top and os.path.exists("/" + top)))
        if not local:
            return None
        return Path(norm).name or "<path>"


def _under(p: str, folder: str) -> str | None:
    """`p` relative to `folder` ("" for the folder itself), or None when `p` is not inside it."""
    if p == folder:
        return ""
    prefix = folder.rstrip("/") + "/"
    return p[len(prefix):] if p.startswith(prefix) else None


# ------------------------------------------------------------------------------------ how the data was made

SAMPLING_KEYS = ("temperature", "top_p", "presence_penalty", "max_new_tokens", "stop", "seed")


def _flat(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(repr(x) if isinstance(x, str) else str(x) for x in v) or "(none)"
    return "(default)" if v is None else str(v)


def generation_facts(run: RunData) -> list[tuple[str, str]]:
    """(what, value) rows: teacher, preset, seeds, templates and sampling of each generating stage."""
    rows: list[tuple[str, str]] = []
    for kind in ("instructions", "instances"):
        st = run.stages.get(kind)
        if st is None:
            continue
        cfg, summ = st.config, st.summary
        teacher = summ.get("teacher") or cfg.get("teacher")
        if teacher:
            rows.append((f"{kind}: teacher", str(teacher)))
        if cfg.get("preset") or summ.get("preset"):
            rows.append((f"{kind}: preset", str(summ.get("preset") or cfg.get("preset"))))
        if kind == "instructions":
            seeds = summ.get("seeds")
            src = Path(cfg["seeds"]).name if cfg.get("seeds") else "the packaged seed tasks"
            rows.append(("instructions: seed tasks", f"{seeds} ({src})" if seeds is not None else src))
        names = [p.name for p in st.templates] or ([str(cfg["template"])] if cfg.get("template") else [])
        if names:
            rows.append((f"{kind}: templates", ", ".join(names)))
        sampling = [f"{k}={_flat(cfg[k])}" for k in SAMPLING_KEYS if k in cfg]
        if sampling:
            rows.append((f"{kind}: sampling", "; ".join(sampling)))
        for k in ("prompt_tokens", "completion_tokens", "teacher_calls"):
            if isinstance(summ.get(k), int):
                rows.append((f"{kind}: {k.replace('_', ' ')}", f"{summ[k]:,}"))
    tr = run.stages.get("train")
    if tr is not None:
        for k in ("student", "model", "base_model"):
            if isinstance(tr.config.get(k), str):
                rows.append(("train: student", tr.config[k]))
                break
    return portable(rows, run.root)


def versions(run: RunData) -> dict[str, str]:
    """Library versions of the most processed stage (each stage records its own; they normally agree)."""
    for kind in ("curated", "instances", "instructions", "train"):
        if kind in run.stages and run.stages[kind].versions:
            return run.stages[kind].versions
    from ..rundir import library_versions
    return library_versions()


def config_file(kind: str, stage: Stage | None = None) -> str:
    """The `--config` file of a stage as `gen publish` uploads it: the stage's own reproduction file when it
    writes one (`gen curate` writes curate.yaml), else the resolved config as a flat config.yaml."""
    if stage is not None and (stage.path / f"{stage.command}.yaml").is_file():
        return f"instructgen/{kind}/{stage.command}.yaml"
    return f"instructgen/{kind}/config.yaml"


# what each stage reads, in a `gen run` folder: the first of these that the run holds
INPUTS = {"instances": ("instructions",), "curated": ("instances", "instructions"), "train": ("curated",)}


def reproduce_commands(run: RunData) -> list[str]:
    """The commands that remake the run, from what each stage recorded: a recorded command line when the
    config.json holds one (`command` or `argv`), else `gen <stage> --config <its resolved config> --out ...`.
    Paths are portable (see `portable`): the run folder is `run`, a file from elsewhere its basename."""
    import shlex

    root = os.path.realpath(run.root)

    def here(arg: str) -> str:  # a path typed relative to where the command ran, when that is in the run folder
        if arg.startswith("-") or os.path.isabs(arg) or not os.path.exists(arg):
            return arg
        return os.path.realpath(arg) if _under(os.path.realpath(arg), root) is not None else arg

    def recorded(raw: dict | None) -> str | None:
        for key in ("command", "argv"):
            v = (raw or {}).get(key)
            if isinstance(v, list) and all(isinstance(x, str) for x in v):
                return shlex.join(portable([here(x) for x in v], run.root, base="run"))
            if isinstance(v, str) and v.strip():
                return portable(v.strip(), run.root, base="run")
        return None

    if run.run_config is not None:
        cmd = recorded(run.run_config)
        if cmd:
            return [cmd]
        if isinstance(run.run_config.get("config"), dict):
            return ["gen run --config instructgen/run/config.yaml --out run"]
    cmds = []
    for kind in ("instructions", "instances", "curated", "train"):
        st = run.stages.get(kind)
        if st is None:
            continue
        source = ""
        if kind in INPUTS:
            prev = next((k for k in INPUTS[kind] if k in run.stages), None)
            recorded_input = (portable(st.config["input"], run.root, base="run")
                              if isinstance(st.config.get("input"), str) else None)
            source = " " + shlex.quote(f"run/{prev}" if prev else recorded_input or "INPUT")
        cmds.append(recorded(st.raw_config) or
                    f"gen {st.command}{source} --config {config_file(kind, st)} --out run/{kind}")
    return cmds

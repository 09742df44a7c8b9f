"""Read a run folder, or a single stage folder, into plain data for the report and the dataset card.

Layout of `gen run`: RUN/instructions, RUN/instances, RUN/curated, RUN/train (any subset). A stage folder is
recognised by the `stage` in its config.json, else by its output files. Whatever is absent is listed in
`RunData.missing`, so the page can say what it could not show.

Over 400 lines because everything the page and both cards (dataset card, adapter card) show of a run is read
and formatted here once: the stages (loaded, or streamed for `gen report`: `load_run(records=False)`), portable
paths, how the data was made, reproduce commands, and the benchmark before/after table.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..records import RecordError, Task, iter_jsonl
from ..stage import PIPELINE, STAGES

# A report's kinds are the stages' `gen run` folder names; every table here is read off the one registry
# (instructgen/stage.py: STAGES), so a stage is named in one place.
DATA_KINDS = tuple(STAGES[s].folder for s in PIPELINE if STAGES[s].records)  # least to most processed
KINDS = tuple(STAGES[s].folder for s in PIPELINE)
# config.json "stage" (or a folder name) -> kind
STAGE_NAMES = {n: STAGES[s].folder for s in PIPELINE for n in (s, STAGES[s].folder)}
# the `gen` command that writes each kind
COMMANDS = {STAGES[s].folder: s for s in PIPELINE}
# files that identify a kind without config.json, most processed first
SIGNATURES = tuple((STAGES[s].folder, STAGES[s].signature) for s in ("curate", "instances", "instructions", "train"))
OUTPUTS = {STAGES[s].folder: STAGES[s].output for s in PIPELINE if STAGES[s].output}
WHAT_IS_LOST = {
    "instructions": "no instruction-generation stage: teacher, prompt template and instruction filter counts "
                    "are not shown",
    "instances": "no instance-generation stage: instance filter counts are not shown",
    "curated": "no curation stage: the curation funnel and dedup/readability scores are not shown",
    "train": "no training stage: training loss, before/after evaluation and benchmark are not shown",
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
    # where the records are: (file, its records are kept / rejected / None: either, tolerate a torn tail); read
    # into `kept`/`rejected` by load_run(records=True), streamed by `iter_records` otherwise
    sources: list[tuple[Path, bool | None, bool]] = field(default_factory=list)
    loaded: bool = True

    def iter_records(self) -> Iterator[Task]:
        """Every record of the stage, kept ones first: from memory when loaded, else streamed from its files
        (the report of a million-record run never holds them all)."""
        if self.loaded:
            yield from self.kept
            yield from self.rejected
            return
        for path, kept, torn in self.sources:
            for obj in (_rows_iter(path, torn) if torn else (o for _, o in iter_jsonl(path))):
                try:
                    t = Task.from_dict(obj)
                except TypeError as e:
                    raise RecordError(path, None, f"not an instructgen record ({e})") from None
                yield t

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
    digests: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # kind -> digest.py's

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


def load_run(root: str | Path, records: bool = True) -> RunData:
    """Read everything the report and the card use from a run folder or a stage folder. With `records`
    False the records stay on disk and `Stage.iter_records` streams them (what `gen report` does)."""
    root = Path(root)
    paths, single = find_stages(root)
    stages = {k: load_stage(k, p, records) for k, p in paths.items()}
    run_config = None
    if not single and (root / "config.json").is_file():
        run_config = _json(root / "config.json")
    return RunData(root=root, stages=stages, single_stage=single, run_config=run_config)


def load_stage(kind: str, path: Path, records: bool = True) -> Stage:
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
    if (path / "stats.json").is_file():  # gen curate's per-filter stats (and any stage that writes them)
        st.stats = _json(path / "stats.json")
    out = path / OUTPUTS[kind]
    if out.is_file():
        st.sources = [(out, True, False)]
        if (path / "rejected.jsonl").is_file():
            st.sources.append((path / "rejected.jsonl", False, False))
    elif (path / "log.jsonl").is_file():  # not finished: show what the log holds so far
        st.sources = [(path / "log.jsonl", None, True)]
        st.from_log = True
    if not records:
        st.loaded = False
    elif st.from_log:
        tasks = [Task.from_dict(o) for o in _rows(path / "log.jsonl", tolerate_torn_tail=True)]
        st.kept = [t for t in tasks if t.kept]
        st.rejected = [t for t in tasks if not t.kept]
    elif st.sources:
        st.kept = _tasks(out)
        st.rejected = _tasks(path / "rejected.jsonl") if (path / "rejected.jsonl").is_file() else []
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
    return list(_rows_iter(p, True))


def _rows_iter(p: Path, tolerate_torn_tail: bool) -> Iterator[dict]:
    """The JSON objects of a JSONL file a line at a time; a torn last line (a crash mid-write, redone by the
    stage on resume) is skipped."""
    with open(p, encoding="utf-8") as f:
        prev: tuple[int, str] | None = None
        for i, line in enumerate(f, 1):
            if prev is not None:
                yield _row(p, *prev)
            prev = (i, line) if line.strip() else None
        if prev is not None:
            try:
                yield _row(p, *prev)
            except RecordError:
                if not tolerate_torn_tail:
                    raise


def _row(p: Path, i: int, line: str) -> dict:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        raise RecordError(p, i, "not valid JSON") from None


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
    for kind in tuple(reversed(DATA_KINDS)) + tuple(k for k in KINDS if k not in DATA_KINDS):
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
INPUTS = {k: tuple(reversed(DATA_KINDS[:i])) for i, k in enumerate(DATA_KINDS) if i}
INPUTS.update({k: DATA_KINDS[-1:] for k in KINDS if k not in DATA_KINDS})  # train reads the most processed


def reproduce_block(run: RunData, publish: str | None = None) -> list[str]:
    """The reproduce commands the report page and the dataset card both print (one list, so they agree), run
    from a folder holding the published `instructgen/` files with the run folder called `run`: per stage (or
    the whole `gen run`) the command as it was run (a `# as run:` comment, from its recorded argv), then a
    runnable one reading the published config; last `publish`, the `gen publish` command that built the card,
    when there is one (publish.py's `publish_command`). Paths are relative to the run folder (see `portable`)."""
    import shlex

    def as_run(raw: dict, folder: Path) -> str | None:
        argv = raw.get("argv") or raw.get("command")
        if isinstance(argv, str):
            try:
                argv = shlex.split(argv)
            except ValueError:  # an unbalanced quote in a hand-edited config.json: shown as it was recorded
                return portable(argv.strip(), run.root, base="run") or None
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            return None
        return shlex.join(portable(absolute_argv(without_json(argv), folder), run.root, base="run"))

    lines: list[str] = []

    def add(recorded: str | None, runnable: str) -> None:
        if recorded and recorded != runnable:
            lines.append(f"# as run: {recorded}")
        lines.append(runnable)

    recorded_run = as_run(run.run_config, run.root) if run.run_config is not None else None
    if run.run_config is not None and isinstance(run.run_config.get("config"), dict):
        add(recorded_run, "gen run --config instructgen/run/config.yaml --out run")  # instructgen/run/config.yaml
    elif recorded_run:
        lines.append(recorded_run)
    else:
        for kind in KINDS:
            st = run.stages.get(kind)
            if st is None:
                continue
            out = "run" if run.single_stage else f"run/{kind}"
            prev = next((k for k in INPUTS.get(kind, ()) if k in run.stages), None)
            given = st.config.get("input") or st.config.get("data")
            source = (f"run/{prev}" if prev and not run.single_stage else
                      portable(given, run.root, base="run") if isinstance(given, str) else "INPUT")
            arg = f" {shlex.quote(source)}" if kind in INPUTS else ""
            add(as_run(st.raw_config, st.path), f"gen {st.command}{arg} --config {config_file(kind, st)} --out {out}")
    if publish:
        lines.append(publish)
    return lines


def without_json(argv: list[str]) -> list[str]:
    """`argv` less `--json` (`gen --json CMD` or `gen CMD --json`): it changes what the command prints, not
    what it makes, so a reproduce line (and a card built with it) reads the same without it."""
    return [a for a in argv if a != "--json"]


OUTPUT_FLAGS = ("--out", "--local-dir", "--cache-dir")  # paths that need not exist when the command starts


def absolute_argv(argv: list[str], folder: Path, cwd: str | None = None) -> list[str]:
    """`argv` with its relative paths made absolute, so `portable` can name them relative to the run folder.
    They were typed relative to the folder the command ran in, which is not recorded: it is the part of
    `folder` (the output) before its `--out` value (`--out runs/demo` wrote /work/main/runs/demo, so it ran in
    /work/main). A token that is no path there is left as it is."""
    out = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--out"), None)
    out = out or next((a.split("=", 1)[1] for a in argv if a.startswith("--out=")), None)
    rel = os.path.normpath(out) if out and not os.path.isabs(out) else None
    for made in (folder, folder.parent):  # a stage folder of `gen run` records the run's own command line
        full = os.path.realpath(made)
        if cwd is None and rel and rel not in (".", "..") and not rel.startswith("../") and full.endswith("/" + rel):
            cwd = full[:-len(rel) - 1] or "/"
    if cwd is None:
        return argv

    def fix(tok: str, is_out: bool) -> str:
        if not tok or os.path.isabs(tok) or tok.startswith(("-", "~")):
            return tok
        full = os.path.normpath(os.path.join(cwd, tok))
        return full if is_out or os.path.exists(full) else tok

    res = []
    for i, a in enumerate(argv):
        prev = argv[i - 1] if i else ""
        if i < 2:  # gen COMMAND
            res.append(a)
        elif a.startswith("--") and "=" in a:
            flag, value = a.split("=", 1)
            res.append(f"{flag}={fix(value, flag in OUTPUT_FLAGS)}")
        else:
            res.append(fix(a, prev in OUTPUT_FLAGS))
    return res


# --------------------------------------------------------------------------------- benchmark before/after

# metrics.json "benchmark": column key -> (table label, short label for the figure); the IFEval/IFBench four,
# then ROUGE-L of a reference:FILE suite. The eval package's own names are read as aliases.
BENCH_METRICS = {"prompt_strict": ("prompt-level strict", "prompt strict"),
                 "prompt_loose": ("prompt-level loose", "prompt loose"),
                 "instruction_strict": ("instruction-level strict", "instr. strict"),
                 "instruction_loose": ("instruction-level loose", "instr. loose"),
                 "rouge_l": ("ROUGE-L F", "ROUGE-L F")}
BENCH_ALIASES = {"prompt_strict": "prompt_level_strict", "prompt_loose": "prompt_level_loose",
                 "instruction_strict": "inst_level_strict", "instruction_loose": "inst_level_loose"}
BENCH_FLAG = "gen train ... --benchmark ifbench:16"
IFEVAL_MEANING = (
    "Prompt-level: the share of prompts whose every instruction was followed; instruction-level: the share of "
    "all instructions followed. Strict checks the answer as written; loose also accepts it with its first or "
    "last line or its markdown asterisks removed (IFEval's rule). The floor is the score of a fixed trivial "
    "answer on the same prompts: a model near it follows instructions no better than saying nothing useful.")
ROUGE_MEANING = (
    "ROUGE-L F: the longest-common-subsequence overlap of each answer with the file's reference output, "
    "averaged over the prompts; it rewards wording close to the references, not instruction following as such. "
    "The floor is the score of a fixed trivial answer on the same prompts.")
LOSS_CAVEAT = (
    "The held-out loss alone cannot show instruction following: it measures how well the student predicts "
    "answers like its training data, and a student can lower it while following instructions worse "
    "(catastrophic forgetting). The benchmark checks the answers themselves, on prompts nobody tuned the data to.")


@dataclass
class BenchmarkTable:
    """A training run's benchmark before and after (metrics.json "benchmark"), as plain text cells: one
    formatter for the report page (`html`) and the dataset and adapter cards (`markdown`). When the run has
    no benchmark, `present` is False and `about` says so and how to get one."""

    present: bool
    about: str  # the suite, its version and size; or why there is nothing to show
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)  # before, after, change, floor
    notes: list[str] = field(default_factory=list)  # what the numbers mean
    keys: list[str] = field(default_factory=list)  # the metric keys of the columns
    values: dict[str, list[float | None]] = field(default_factory=dict)  # before/after/floor per column

    def markdown(self) -> str:
        if not self.present:
            return _md_text(self.about).replace(BENCH_FLAG, f"`{BENCH_FLAG}`")
        cells = [self.header] + self.rows
        lines = ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in cells]
        lines.insert(1, "| --- |" + " ---: |" * (len(self.header) - 1))
        return "\n\n".join([_md_text(self.about), "\n".join(lines)] + [_md_text(n) for n in self.notes])

    def html(self) -> str:
        from html import escape
        if not self.present:
            text = escape(self.about).replace(escape(BENCH_FLAG), f"<code>{escape(BENCH_FLAG)}</code>")
            return f'<p class="bench-absent">{text}</p>'
        head = "".join(f"<th>{escape(h)}</th>" for h in self.header)
        body = "".join("<tr><th>" + escape(r[0]) + "</th>" + "".join(f'<td class="n">{escape(c)}</td>'
                                                                   for c in r[1:]) + "</tr>" for r in self.rows)
        return (f"<p>{escape(self.about)}</p><table class=\"benchmark\"><thead><tr>{head}</tr></thead><tbody>"
                f"{body}</tbody></table>" + "".join(f"<p>{escape(n)}</p>" for n in self.notes))


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _md_text(s: str) -> str:
    return s.replace("|", "\\|")


def _bench_num(v: Any) -> float | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")
    return float(v) if ok else None


def benchmark_table(metrics: dict[str, Any] | None, root: str | os.PathLike, base: str | None = None,
                    digits: int = 3) -> BenchmarkTable:
    """The benchmark of a `gen train` folder's metrics.json, its text made portable (see `portable`; the suite
    of `ifeval:FILE` names a file). Absent, malformed or older metrics give a table with `present` False."""
    if not metrics:
        return BenchmarkTable(False, "No benchmark: the training stage has no metrics.json (it has not "
                                     f"finished). {BENCH_FLAG} measures instruction following before and after.")
    b = metrics.get("benchmark")
    if not isinstance(b, dict) or not isinstance(b.get("before"), dict):
        why = ("this run was trained without one" if b is None else
               "metrics.json has a \"benchmark\" entry but no \"before\" scores in it")
        return BenchmarkTable(False, f"No benchmark: {why}, so only the held-out loss is known, which cannot show "
                                     f"instruction following. {BENCH_FLAG} measures it before and after training.")
    phases = {p: b.get(p) if isinstance(b.get(p), dict) else {} for p in ("before", "after", "floor")}

    def value(phase: str, key: str) -> float | None:
        d = phases[phase]
        return _bench_num(d.get(key, d.get(BENCH_ALIASES.get(key, ""))))

    keys = [k for k in BENCH_METRICS if any(value(p, k) is not None for p in phases)]
    ifeval = list(BENCH_ALIASES)
    if set(keys) & set(ifeval):  # all four IFEval numbers, a missing one shown as "-" rather than left out
        keys = ifeval + [k for k in keys if k not in ifeval]
    known = set(BENCH_METRICS) | set(BENCH_ALIASES.values())
    keys += [k for k in phases["before"] if k not in known and value("before", k) is not None]  # another suite's
    name, suite, version = b.get("name"), b.get("suite"), b.get("version")
    prompts, unscored, tokens = b.get("prompts"), b.get("unscored"), b.get("max_new_tokens")
    scored = prompts - (unscored if isinstance(unscored, int) else 0) if isinstance(prompts, int) else 0

    def fmt(v: float | None, key: str) -> str:
        if v is None:
            return "-"
        # a prompt-level share is a count of prompts: shown with it, so a small suite's step is plain (1/16)
        n = v * scored
        count = f" ({round(n)}/{scored})" if key.startswith("prompt") and scored and abs(n - round(n)) < 1e-6 else ""
        return f"{v:.{digits}f}{count}"

    after_missing = b.get("after") is None
    values = {p: [value(p, k) for k in keys] for p in phases}
    change = ["-" if a is None or z is None else f"{a - z:+.{digits}f}" for z, a in zip(values["before"],
                                                                                         values["after"])]
    rows = [["before (base student)"] + [fmt(v, k) for v, k in zip(values["before"], keys)],
            ["after (tuned)"] + [fmt(v, k) for v, k in zip(values["after"], keys)],
            ["change (after - before)"] + change,
            ["floor (fixed trivial answer)"] + [fmt(v, k) for v, k in zip(values["floor"], keys)]]
    about = f"{name or 'Benchmark'}" + (f" ({version})" if version else "") + (f", suite {suite}" if suite else "")
    if isinstance(prompts, int):
        about += f": {prompts:,} prompts"
        if isinstance(unscored, int) and unscored:
            about += f", {unscored:,} of them unscored offline and left out of the numbers"
        elif unscored == 0:
            about += ", all scored"
    about += "; greedy answers" + (f" of at most {tokens} new tokens" if isinstance(tokens, int) else "") + "."
    notes = ([IFEVAL_MEANING] if set(keys) & set(ifeval) else []) + ([ROUGE_MEANING] if "rouge_l" in keys else [])
    notes = notes or ["The floor is the score of a fixed trivial answer on the same prompts."]
    answer = b.get("floor_answer").strip() if isinstance(b.get("floor_answer"), str) else ""
    if answer:
        notes[-1] += f" Floor answer: {answer}" + ("" if answer[-1] in ".!?'\"" else ".")
    if after_missing:
        notes.insert(0, "The evaluation after training was skipped: only the before scores are known.")
    notes.append(LOSS_CAVEAT)
    table = BenchmarkTable(True, about, ["", *(BENCH_METRICS.get(k, (k,))[0] for k in keys)], rows, notes, keys,
                           values)
    table.about, table.rows, table.notes = portable((table.about, table.rows, table.notes), root, base)
    return table

"""`gen publish`: a run's most processed data as a Hugging Face dataset, with a card that says how it was made.

Everything is built locally first, in the layout `DatasetDict.push_to_hub` uses: `data/<split>-00000-of-0000N
.parquet`, a README.md whose YAML holds the license, tags, `configs` and `dataset_info`, the run's configs and
stats under `instructgen/`, and the report's figures under `figures/`. The upload is then a single
`create_commit`: the Hub applies a commit whole or not at all, so a failed upload publishes nothing and
re-running the same command finishes the job. `--dry-run` / `--local-dir` stop after the local build and need
no token; `datasets.load_dataset(DIR)` reads the result. Nothing published names a local path (`portable`
rewrites them), and a local build replaces only an earlier build of ours that holds nothing else.

Over 400 lines because it is one command read top to bottom: checks, dataset, card, local build, upload.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .config import ConfigError, doc
from .records import RecordError, Task
from .report.collect import (BENCH_FLAG, RunData, Stage, benchmark_table, generation_facts, load_run, portable,
                             reproduce_commands, versions)
from .rundir import RunDirError, refuse_overlap, temp_folder, write_json

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
MANIFEST = "instructgen/manifest.json"  # written last into every build; marks a folder as ours to replace
OWNED = ("data/", "figures/", "instructgen/", "README.md", "report.html")  # remote files a publish replaces
BASE_COLUMNS = [("id", "string", "example id: the task id, with -N for the N-th instance of a multi-instance task"),
                ("instruction", "string", "the task instruction"),
                ("input", "string", "the instance input (empty when the task needs none)"),
                ("output", "string", "the instance output written by the teacher"),
                ("messages", "list of {role, content}", "the example as a chat: user turn (instruction and input, "
                 "rendered with instructgen's user_turn template) and assistant turn (output)"),
                ("source", "string", "generated, seed or imported")]
SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]


class PublishError(ConfigError):
    """A publish that cannot go ahead (no token, nothing to publish, upload failed); one clear line."""


@dataclass
class PublishConfig:
    """`gen publish` options."""

    repo: str = doc("OWNER/NAME of the dataset repository on the Hub")
    private: bool = doc("create the repository private (an existing public one is refused)", default=False)
    split_test: float = doc("fraction of tasks held out as a test split, 0 = train only; the split is by task, "
                            "so no instruction is in both", default=0.0)
    seed: int = doc("random seed of the test split", default=42)
    license: str = doc("license in the card metadata (the teacher's terms of use also apply)",
                       default="apache-2.0")
    language: str = doc("language code in the card metadata", default="en")
    pretty_name: str | None = doc("title of the card; None = the repository name", default=None)

    def validate(self) -> None:
        if not REPO_ID.match(self.repo or ""):
            raise ConfigError(f"--repo {self.repo!r}: expected OWNER/NAME (letters, digits, '-', '_', '.')")
        if not 0 <= self.split_test < 1:
            raise ConfigError(f"--split-test {self.split_test}: must be in [0, 1)")


# ----------------------------------------------------------------------------------------------- checks

def hub_token() -> str:
    """The Hub token from HF_TOKEN or the token file `hf auth login` writes; never printed or written."""
    from huggingface_hub import get_token
    token = get_token()
    if not token:
        raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a write token); "
                           "--dry-run or --local-dir DIR build the files without one")
    return token


def check_run(run: RunData) -> Stage:
    """The stage to publish; refuses a run with an unfinished stage, or one with nothing to train on."""
    if run.run_config is not None and not (run.root / "completed").exists():
        raise RunDirError(f"the run {run.root} is not complete (no `completed` marker); re-run `gen run` with "
                          f"the same arguments to finish it, or publish one finished stage folder "
                          f"(e.g. gen publish {run.root / 'curated'})")
    if run.incomplete:
        names = ", ".join(f"{s.kind} ({s.path})" for s in run.incomplete)
        raise RunDirError(f"the run is not complete: {names} has no `completed` marker; re-run its command to "
                          f"finish it, or publish one finished stage folder (e.g. gen publish RUN/curated)")
    st = run.final()
    if st is None:
        raise RecordError(run.root, None, "no data stage to publish (instructions/, instances/ or curated/)")
    if not any(i.output.strip() for t in st.kept for i in t.instances):
        raise PublishError(f"{st.path}: its {len(st.kept)} kept records have no instance outputs, so there is "
                           f"nothing to train on; run `gen instances` on it first (only the alpaca preset writes "
                           f"outputs with the instructions)")
    return st


# ------------------------------------------------------------------------------------------------ dataset

def _score_columns(tasks: list[Task]) -> list[str]:
    """Numeric score names present on any kept task (a name with a non-numeric value anywhere is left out)."""
    seen: dict[str, bool] = {}
    for t in tasks:
        for k, v in t.scores.items():
            ok = isinstance(v, (int, float)) or v is None
            seen[k] = seen.get(k, True) and ok
    return sorted(k for k, ok in seen.items() if ok)


def column_name(score: str) -> str:
    return "score_" + re.sub(r"[^0-9A-Za-z_]", "_", score)


def split_tasks(tasks: list[Task], fraction: float, seed: int) -> dict[str, list[Task]]:
    """{"train": ..., "test": ...} by task id (sorted, then shuffled with `seed`): order-independent."""
    if fraction <= 0:
        return {"train": tasks}
    ids = sorted(t.id for t in tasks)
    random.Random(seed).shuffle(ids)
    n_test = max(1, round(fraction * len(ids)))
    if n_test >= len(ids):
        raise PublishError(f"--split-test {fraction}: {len(ids)} tasks leave none for train")
    test = set(ids[:n_test])
    return {"train": [t for t in tasks if t.id not in test], "test": [t for t in tasks if t.id in test]}


def build_dataset(tasks: list[Task], cfg: PublishConfig):
    """A DatasetDict with the documented schema: id, instruction, input, output, messages, source, score_*."""
    import datasets
    from .examples import iter_examples

    # only tasks with an answer to train on take part in the split, so neither split can come out empty
    tasks = [t for t in tasks if t.kept and any(i.output.strip() for i in t.instances)]
    scores = _score_columns(tasks)
    features = datasets.Features({
        "id": datasets.Value("string"), "instruction": datasets.Value("string"),
        "input": datasets.Value("string"), "output": datasets.Value("string"),
        "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        "source": datasets.Value("string"), **{column_name(s): datasets.Value("float64") for s in scores}})
    splits = {}
    for name, part in split_tasks(tasks, cfg.split_test, cfg.seed).items():
        cols: dict[str, list] = {k: [] for k in features}
        current: dict[str, Task] = {}

        def feed(ts=part):  # iter_examples pulls the next task only after yielding all of the current one's
            for t in ts:
                current["task"] = t
                yield t

        for ex in iter_examples(feed()):
            t = current["task"]
            for k in ("id", "instruction", "input", "output", "messages"):
                cols[k].append(ex[k])
            cols["source"].append(t.source)
            for s in scores:
                v = t.scores.get(s)
                cols[column_name(s)].append(None if v is None else float(v))
        splits[name] = datasets.Dataset.from_dict(cols, features=features)
    return datasets.DatasetDict(splits), scores


def write_shards(dd, folder: Path) -> dict[str, Any]:
    """Parquet shards named and sized as `push_to_hub` names them; returns the split infos for the card."""
    from datasets import config as dconfig
    from datasets.splits import SplitInfo
    from datasets.utils.py_utils import convert_file_size_to_int

    max_shard = convert_file_size_to_int(dconfig.MAX_SHARD_SIZE)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    infos, download = {}, 0
    for split, ds in dd.items():
        nbytes = ds.data.nbytes
        n = int(nbytes / max_shard) + 1
        for i in range(n):
            p = folder / "data" / f"{split}-{i:05d}-of-{n:05d}.parquet"
            ds.shard(num_shards=n, index=i, contiguous=True).to_parquet(str(p))
            download += p.stat().st_size
        infos[split] = SplitInfo(name=split, num_bytes=nbytes, num_examples=len(ds))
    return {"splits": infos, "download_size": download}


def card_metadata(dd, shards: dict, run: RunData, cfg: PublishConfig) -> str:
    """The card's YAML: license, language, task_categories, size_categories, tags, and the `configs` and
    `dataset_info` blocks `push_to_hub` writes (so `load_dataset` finds the splits and features)."""
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.splits import SplitDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    n = sum(len(ds) for ds in dd.values())
    size = next((label for limit, label in SIZE_CATEGORIES if n < limit), "n>100M")
    presets = sorted({str(s.config.get("preset")) for s in run.stages.values() if s.config.get("preset")})
    tags = ["synthetic", "instruction-tuning", "instructgen"] + presets
    card = DatasetCardData(license=cfg.license, language=[cfg.language], task_categories=["text-generation"],
                           size_categories=[size], tags=tags, pretty_name=cfg.pretty_name or cfg.repo.split("/")[1])
    info = DatasetInfo(config_name="default", features=next(iter(dd.values())).features, splits=SplitDict(),
                       download_size=shards["download_size"], dataset_size=0)
    for si in shards["splits"].values():
        info.splits.add(si)
        info.dataset_size += si.num_bytes
    DatasetInfosDict({"default": info}).to_dataset_card_data(card)
    MetadataConfigs({"default": {"data_files": [{"split": s, "path": f"data/{s}-*"} for s in dd]}}
                    ).to_dataset_card_data(card)
    return card.to_yaml()


# ------------------------------------------------------------------------------------------------- build

def write_run_files(run: RunData, folder: Path) -> None:
    """The run's own record of itself beside the data: per stage config.json, config.yaml (the resolved config
    as `--config` input), summary, versions, stats, metrics and templates. Local paths in them are made
    portable (relative to the run folder, a basename, or <packaged>; see `portable`); a file without any is
    copied byte for byte."""
    import yaml
    for kind, st in run.stages.items():
        d = folder / "instructgen" / kind
        d.mkdir(parents=True, exist_ok=True)
        names = ["config.json", "summary.json", "versions.json", "stats.json", "metrics.json"]
        names += sorted(p.name for p in st.path.glob("*.yaml"))  # a stage's own --config file (curate.yaml)
        for name in names:
            if (st.path / name).is_file():
                copy_portable(st.path / name, d / name, run.root)
        if not (d / "config.yaml").exists():
            (d / "config.yaml").write_text(yaml.safe_dump(portable(st.config, run.root), sort_keys=False,
                                                          allow_unicode=True), encoding="utf-8")
        for t in st.templates:  # prompt files are copied as they are: their text is the prompt
            (d / "templates").mkdir(exist_ok=True)
            shutil.copyfile(t, d / "templates" / t.name)
    if run.run_config is not None:
        d = folder / "instructgen" / "run"
        d.mkdir(parents=True, exist_ok=True)
        run_config = portable(run.run_config, run.root)
        write_json(d / "config.json", run_config)
        if isinstance(run_config.get("config"), dict):
            (d / "config.yaml").write_text(yaml.safe_dump(run_config["config"], sort_keys=False), encoding="utf-8")


def copy_portable(src: Path, dst: Path, root: Path) -> None:
    """Copy a JSON or YAML file of the run with its local paths made portable; unchanged files byte for byte."""
    try:
        text = src.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise RecordError(src, None, f"not UTF-8 text (byte {e.start}); nothing was written") from None
    if src.suffix == ".json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise RecordError(src, e.lineno, f"not valid JSON ({e.msg}); nothing was written") from None
        clean = portable(obj, root)
        if clean != obj:
            write_json(dst, clean)
            return
    else:  # YAML: rewritten as text, so its comments stay
        clean = portable(text, root)
        if clean != text:
            dst.write_text(clean, encoding="utf-8")
            return
    shutil.copyfile(src, dst)


def build(run: RunData, stage: Stage, cfg: PublishConfig, folder: Path) -> dict:
    """Write every file of the upload into an empty `folder`; returns the manifest."""
    from . import __version__
    from .report import build_figures, write_figures, write_report
    from .report.figures import funnel_steps
    from .templates import load_template

    import datasets
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # "Creating parquet from Arrow format" per shard says nothing useful here
    try:
        dd, scores = build_dataset(stage.kept, cfg)
        shards = write_shards(dd, folder)
    finally:
        if bars:
            datasets.enable_progress_bars()
    write_run_files(run, folder)
    figs, notes = build_figures(run)
    figures = write_figures(figs, folder / "figures")
    write_report(run.root, folder / "report.html", run=run, figures=(figs, notes))
    columns = BASE_COLUMNS + [(column_name(s), "float64", f"`{s}` score stored by the filter that computed it "
                               f"(null when the record has none)") for s in scores]
    sizes = [(s, len(ds)) for s, ds in dd.items()]
    card = load_template("dataset_card.md").render(
        metadata=card_metadata(dd, shards, run, cfg).strip(), pretty_name=cfg.pretty_name or cfg.repo.split("/")[1],
        repo=cfg.repo, n_examples=sum(n for _, n in sizes), split_sizes=sizes,
        n_tasks=sum(1 for t in stage.kept if t.kept and any(i.output.strip() for i in t.instances)),
        final_kind=stage.kind, tool_version=__version__, facts=generation_facts(run), missing=run.missing,
        steps=funnel_steps(run), figures=figures, columns=columns, commands=reproduce_commands(run),
        versions=sorted(versions(run).items()), has_stats=(stage.stats is not None), split_test=cfg.split_test,
        seed=cfg.seed, benchmark=card_benchmark(run),
        test_note=("The test split holds whole tasks (seed %d), so no instruction is in both splits." % cfg.seed)
        if cfg.split_test else "")
    card = portable(card, run.root)  # the card holds no record text: any path in it comes from the run's configs
    (folder / "README.md").write_text(card + ("\n" if not card.endswith("\n") else ""), encoding="utf-8")
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    manifest = {"tool": "instructgen", "version": __version__, "repo": cfg.repo, "run": run.root.name,
                "stage": stage.kind, "splits": dict(sizes), "files": files + [MANIFEST]}
    write_json(folder / MANIFEST, manifest)
    return manifest


def card_benchmark(run: RunData) -> dict[str, Any]:
    """What the card's "Does it train a better student?" section shows: whether the run trained, the student,
    the suite and the before/after table (the one `gen report` shows, as markdown)."""
    tr = run.stages.get("train")
    if tr is None:
        return {"trained": False, "flag": BENCH_FLAG}
    b = tr.metrics.get("benchmark") if isinstance(tr.metrics.get("benchmark"), dict) else {}
    student = next((tr.config[k] for k in ("student", "model", "base_model") if isinstance(tr.config.get(k), str)),
                   None)
    table = benchmark_table(tr.metrics, run.root)
    return portable({"trained": True, "measured": table.present, "student": student, "suite": b.get("suite"),
                     "name": b.get("name"), "table": table.markdown(), "flag": BENCH_FLAG}, run.root)


def build_into(run: RunData, stage: Stage, cfg: PublishConfig, folder: Path, what: str = "--local-dir") -> dict:
    """Build into `folder` atomically (a sibling temp folder renamed into place). An existing folder is
    replaced only when it is empty or an earlier build of ours holding nothing but the files its manifest
    lists (and then only those files are removed); anything else is refused before anything is written."""
    old_files = earlier_build(folder, what)
    created = [p for p in [folder.parent, *folder.parent.parents] if not p.exists()]
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_folder(folder)
    except OSError as e:
        for p in created:  # the parents made just now, deepest first (only while empty)
            with contextlib.suppress(OSError):
                p.rmdir()
        raise RunDirError(f"{what} {folder}: cannot write there ({e.strerror or type(e).__name__}); nothing was "
                          f"written") from None
    try:
        manifest = build(run, stage, cfg, tmp)
        if old_files is None:
            _replace(tmp, folder, what)  # onto an absent or empty folder
        else:
            aside = tmp.with_name(tmp.name + ".old")
            _replace(folder, aside, what)
            try:
                _replace(tmp, folder, what)
            except RunDirError:
                os.replace(aside, folder)
                raise
            remove_build(aside, old_files)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _replace(src: Path, dst: Path, what: str) -> None:
    try:
        os.replace(src, dst)
    except OSError as e:
        raise RunDirError(f"{what} {dst}: cannot write there ({e.strerror or type(e).__name__}); nothing was "
                          f"changed") from None


def earlier_build(folder: Path, what: str = "--local-dir") -> list[str] | None:
    """The files of an earlier `gen publish` build in `folder`, which replacing it may remove; None when the
    folder is absent or empty. Refused, naming the reason (and up to three files that are not ours): a file, a
    symbolic link, a folder without our manifest, or one holding anything its manifest does not list."""
    if folder.is_symlink():
        raise RunDirError(f"{what} {folder} is a symbolic link; give a real folder (nothing was written)")
    try:
        if not folder.exists():
            return None
        if not folder.is_dir():
            raise RunDirError(f"{what} {folder} is a file, not a folder; choose a new or empty folder "
                              f"(nothing was written)")
        if not any(folder.iterdir()):
            return None
        listed = _manifest_files(folder)
        present, extra = _scan(folder, listed or set())
    except OSError as e:
        raise RunDirError(f"{what} {folder}: cannot read it ({e.strerror or type(e).__name__}); nothing was "
                          f"written") from None
    if listed is None:
        raise FileExistsError(f"{what} {folder} exists and is not an earlier `gen publish` build (no valid "
                              f"{MANIFEST}); choose an empty or new folder (nothing was written)")
    if extra:
        shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        raise FileExistsError(f"{what} {folder} is an earlier `gen publish` build but also holds files it did not "
                              f"write ({shown}); move them out or choose another folder (nothing was written)")
    return present


def _scan(folder: Path, listed: set[str]) -> tuple[list[str], list[str]]:
    """(files of `folder` that `listed` names, everything else in it: other files, folders no listed file is
    in, symbolic links), as sorted relative paths."""
    dirs = {str(a) for f in listed for a in PurePosixPath(f).parents if str(a) != "."}
    present, extra = [], []

    def fail(e: OSError):
        raise e

    for here, subdirs, files in os.walk(folder, onerror=fail):
        rel = Path(here).relative_to(folder).as_posix()
        prefix = "" if rel == "." else rel + "/"
        for d in list(subdirs):
            if (Path(here) / d).is_symlink() or prefix + d not in dirs:
                extra.append(prefix + d + "/")
                subdirs.remove(d)
        for f in files:
            ours = prefix + f in listed and not (Path(here) / f).is_symlink()
            (present if ours else extra).append(prefix + f)
    return sorted(present), sorted(extra)


def _manifest_files(folder: Path) -> set[str] | None:
    """The files listed by the manifest of our build in `folder`, or None when it has no valid one."""
    p = folder / MANIFEST
    if p.is_symlink() or not p.is_file():
        return None
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    files = m.get("files") if isinstance(m, dict) and m.get("tool") == "instructgen" else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return set(files)


def remove_build(folder: Path, files: list[str]) -> None:
    """Remove the listed files of an earlier build and then its folders while empty; anything else found there
    (written after the check) is left in place and named."""
    for f in files:
        with contextlib.suppress(FileNotFoundError):
            (folder / f).unlink()
    for here, _, _ in sorted(os.walk(folder), key=lambda w: -len(w[0])):
        with contextlib.suppress(OSError):
            os.rmdir(here)
    if folder.exists():
        print(f"warning: {folder} was left: it holds files that appeared while the build was replaced",
              file=sys.stderr)


# ------------------------------------------------------------------------------------------------ upload

@contextlib.contextmanager
def online():
    """`gen` sets HF_HUB_OFFLINE=1 for every command; an upload is the one step that must reach the Hub
    (datasets here, adapters in `trainer/hub.py`)."""
    from huggingface_hub import constants
    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old


def upload(folder: Path, cfg: PublishConfig, token: str, attempts: int = 3, wait_s: float = 2.0) -> str:
    """Upload a built folder as one commit (stale files of an earlier publish deleted in the same commit);
    retries transient failures; returns the commit URL. The endpoint is HF_ENDPOINT when set."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    endpoint = os.environ.get("HF_ENDPOINT") or None
    local = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    for attempt in range(1, attempts + 1):
        try:
            with online():
                api = HfApi(endpoint=endpoint, token=token, library_name="instructgen")
                api.create_repo(cfg.repo, repo_type="dataset", private=cfg.private, exist_ok=True)
                info = api.repo_info(cfg.repo, repo_type="dataset")
                if cfg.private and not getattr(info, "private", False):
                    raise PublishError(f"--private: {cfg.repo} already exists and is public; nothing was uploaded")
                remote = api.list_repo_files(cfg.repo, repo_type="dataset")
                stale = [p for p in remote if p.startswith(OWNED) and p not in local]
                ops = ([CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(folder / p)) for p in local] +
                       [CommitOperationDelete(path_in_repo=p) for p in stale])
                commit = api.create_commit(cfg.repo, operations=ops, repo_type="dataset",
                                           commit_message="Publish dataset with instructgen")
                return commit.commit_url
        except PublishError:
            raise
        except Exception as e:  # noqa: BLE001 - only HTTP and network errors are handled, the rest re-raised
            if not (isinstance(e, (HfHubHTTPError, OSError)) or _is_network_error(e)):
                raise
            status = getattr(getattr(e, "response", None), "status_code", None)
            transient = status is None or status in (408, 409, 412, 429) or status >= 500
            from .secrets import redact
            msg = (redact(str(e), token).splitlines() or [""])[0][:300]
            if not transient or attempt == attempts:
                raise PublishError(f"upload to {cfg.repo} failed ({type(e).__name__}: {msg}); nothing was "
                                   f"half-published (a commit is all or nothing): re-run the same command to "
                                   f"finish") from None
            time.sleep(wait_s * attempt)
    raise AssertionError("unreachable")


def _is_network_error(e: Exception) -> bool:
    """A transport error of the HTTP client huggingface_hub uses (httpx or its fork), without importing it."""
    return any(c.__module__.split(".")[0] in ("httpx", "httpx2", "requests", "urllib3") for c in type(e).__mro__)


def publish(run_dir: str | os.PathLike, cfg: PublishConfig, local_dir: str | os.PathLike | None = None,
            dry_run: bool = False) -> tuple[Path | None, str | None, dict]:
    """Check, build, and (unless dry_run or local_dir) upload. Returns (local folder or None, commit URL or None,
    manifest). The token is checked before any work when uploading."""
    cfg.validate()
    if local_dir is not None and not str(local_dir).strip():
        raise ConfigError("--local-dir: empty path; give the folder to build into")
    local = local_dir is not None
    token = None if (dry_run or local) else hub_token()
    if local:  # the build must neither be the run nor hold it: replacing it would take the run along
        refuse_overlap(local_dir, [run_dir], what="--local-dir")
    run = load_run(run_dir)
    stage = check_run(run)
    if dry_run or local:
        folder = Path(local_dir) if local else Path(run_dir) / "publish"
        return folder, None, build_into(run, stage, cfg, folder, what="--local-dir" if local else "--dry-run")
    with tempfile.TemporaryDirectory(prefix="instructgen-publish-") as tmp:
        folder = Path(tmp) / "build"
        folder.mkdir()
        manifest = build(run, stage, cfg, folder)
        url = upload(folder, cfg, token)
    return None, url, manifest


"""Issue 9, classes 1, 2 and 6 for `gen publish` and `gen report`: what is published or shared names no local
path, and `--local-dir` never destroys what is not ours.

Real `gen` processes on a hand-made run folder whose configs hold this machine's absolute paths everywhere a
careless run puts them (seeds under $HOME, a packaged template, a local teacher and student, argv, inputs, the
curate.yaml header, stats and metrics). Every file produced is searched for the test folder, $HOME, the
package folder and any other `/`-rooted path that exists here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import instructgen

sys.path.insert(0, str(Path(__file__).parents[1] / "report"))
from fake_run import make_run  # noqa: E402

PACKAGE = Path(instructgen.__file__).resolve().parent
TEXT = (".md", ".html", ".json", ".yaml", ".svg", ".jinja2", ".txt")
# an absolute path inside text: after the start, a space, a quote, `=`, `:`, a bracket or a comma
ABSOLUTE = re.compile(r"""(?<![^\s=:'"`(\[{,])(/[A-Za-z0-9_.~-]+)""")


def gen(*args: str, home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(home), HF_HUB_OFFLINE="1")
    env.pop("HF_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "instructgen", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def edit(path: Path, change) -> None:
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def tokenizer_at(folder: Path) -> None:
    """A real (tiny) tokenizer.json, so the report counts tokens with the student's own tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "the": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))


def leaky_run(tmp: Path, top: bool = False) -> tuple[Path, Path]:
    """(run folder, $HOME): a complete run whose every config names absolute local paths."""
    home = tmp / "home"
    seeds = home / "data" / "my_seeds.jsonl"
    seeds.parent.mkdir(parents=True)
    seeds.write_text('{"instruction": "Write a poem.", "instances": [{"input": "", "output": "Roses."}]}\n')
    teacher, student = home / "models" / "teacher-7b", tmp / "models" / "student-1b"
    teacher.mkdir(parents=True)
    tokenizer_at(student)
    template = sorted(PACKAGE.glob("templates/self_instruct.completion.jinja2"))[0]
    run = make_run(tmp / "run", top=top)
    if top:
        (run / "completed").write_text("2026-11-22T10:06:00+0000\n")
        edit(run / "config.json", lambda c: c.update(argv=["gen", "run", "--seeds", str(seeds), "--out", str(run)],
                                                       config={**c["config"], "seeds": str(seeds)}))

    def instructions(c):
        c["config"].update(seeds=str(seeds), template=str(template), teacher=f"transformers:{teacher}")
        c["argv"] = ["gen", "instructions", "--seeds", str(seeds), f"--template={template}", "--teacher",
                     f"transformers:{teacher}", "--out", str(run / "instructions")]
    edit(run / "instructions" / "config.json", instructions)
    edit(run / "instructions" / "summary.json", lambda s: s.update(teacher=f"transformers:{teacher}",
                                                                   seeds_file=str(seeds)))
    edit(run / "instances" / "config.json", lambda c: c.update(
        argv=["gen", "instances", str(run / "instructions"), "--out", str(run / "instances")],
        config={**{k: v for k, v in c["config"].items() if k != "temperature"},  # not an option of gen instances
                "input": str(run / "instructions")}))
    edit(run / "curated" / "config.json", lambda c: c.update(
        argv=["gen", "curate", str(run / "instances"), "--out", str(run / "curated"),
              "--cache-dir", str(home / ".cache" / "instructgen")]))
    (run / "curated" / "curate.yaml").write_text(
        f"# gen curate: the resolved chain this folder ran on {run / 'instances'}\n"
        f"# re-run with: gen curate INPUT --out DIR --config curate.yaml\n"
        f"# cache: {home / '.cache' / 'instructgen'}\nfilters:\n- filter: minhash\n  threshold: 0.8\n")
    edit(run / "train" / "config.json", lambda c: c.update(
        config={**c["config"], "student": str(student), "data": str(run / "curated" / "kept.jsonl")},
        argv=["gen", "train", str(run / "curated"), "--student", str(student), "--out", str(run / "train")]))
    edit(run / "train" / "metrics.json", lambda m: m.update(adapter=str(run / "train" / "adapter")))
    return run, home


def leaks(folder_or_files, tmp: Path, home: Path) -> list[str]:
    """Every `file: path` where a produced file names the test folder, $HOME, the package, the interpreter's
    prefix, or any other `/`-rooted path that exists on this machine."""
    files = [folder_or_files] if Path(folder_or_files).is_file() else \
        [p for p in Path(folder_or_files).rglob("*") if p.is_file()]
    needles = {str(tmp), os.path.realpath(tmp), str(home), str(PACKAGE), sys.prefix, os.path.expanduser("~")}
    found = []
    for p in files:
        data = p.read_bytes()
        found += [f"{p.name}: {n}" for n in needles if n.encode() in data]
        if p.suffix in TEXT:
            found += [f"{p.name}: {m}" for m in ABSOLUTE.findall(data.decode("utf-8"))
                      if os.path.exists("/" + m.split("/")[1])]
    return found


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A run (no top-level config, so every stage's own argv is a reproduce command), published locally and
    reported, by real processes."""
    tmp = tmp_path_factory.mktemp("leaky")
    run, home = leaky_run(tmp)
    out = tmp / "out"
    r = gen("publish", str(run), "--repo", "alice/ds", "--local-dir", str(out), home=home)
    assert r.returncode == 0, r.stderr
    r = gen("report", str(run), home=home)
    assert r.returncode == 0, r.stderr
    return tmp, run, home, out


def test_local_build_names_no_local_path(published):
    tmp, run, home, out = published
    assert leaks(out, tmp, home) == []
    # the test would see a leak: the run folder itself is full of them
    assert leaks(run / "instructions" / "config.json", tmp, home)


def test_report_html_names_no_local_path_and_shows_the_run_name(published):
    tmp, run, home, out = published
    page = (run / "report.html").read_text()
    assert leaks(run / "report.html", tmp, home) == []
    assert "run folder run" in page and "<td>run/curated</td>" in page
    assert "the student-1b tokenizer" in page  # the student's own tokenizer, named by its folder only
    assert leaks(out / "report.html", tmp, home) == []


def test_configs_hold_relative_paths_basenames_and_placeholders(published):
    _, _, _, out = published
    ins = json.loads((out / "instructgen/instructions/config.json").read_text())
    assert ins["config"]["seeds"] == "my_seeds.jsonl"
    assert ins["config"]["template"] == "<packaged>/templates/self_instruct.completion.jinja2"
    assert ins["config"]["teacher"] == "transformers:teacher-7b"
    assert ins["argv"] == ["gen", "instructions", "--seeds", "my_seeds.jsonl",
                           "--template=<packaged>/templates/self_instruct.completion.jinja2", "--teacher",
                           "transformers:teacher-7b", "--out", "instructions"]
    assert json.loads((out / "instructgen/instances/config.json").read_text())["config"]["input"] == "instructions"
    assert json.loads((out / "instructgen/curated/stats.json").read_text())["input"] == "instances"
    train = json.loads((out / "instructgen/train/config.json").read_text())["config"]
    assert train["student"] == "student-1b" and train["data"] == "curated/kept.jsonl"
    assert json.loads((out / "instructgen/train/metrics.json").read_text())["adapter"] == "train/adapter"
    curate = (out / "instructgen/curated/curate.yaml").read_text()
    assert curate.startswith("# gen curate: the resolved chain this folder ran on instances\n# re-run with:")
    assert "# cache: instructgen\n" in curate
    assert "seeds: my_seeds.jsonl" in (out / "instructgen/instructions/config.yaml").read_text()


def reproduce_block(card: str) -> list[str]:
    return card.split("## Reproduce", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0].splitlines()


def test_card_reproduce_commands_are_relative_and_parse(published):
    """Issue 14: each stage's command as it was run (its argv, paths relative to the run folder) and a runnable
    one that reads the published config; then the `gen publish` command that built the card."""
    from instructgen.cli import build_parser
    tmp, run, home, out = published
    card = (out / "README.md").read_text()
    lines = [c for c in reproduce_block(card) if c.startswith(("gen ", "# as run: "))]
    assert lines == [
        "# as run: gen instructions --seeds my_seeds.jsonl "
        "'--template=<packaged>/templates/self_instruct.completion.jinja2' --teacher transformers:teacher-7b "
        "--out run/instructions",
        "gen instructions --config instructgen/instructions/config.yaml --out run/instructions",
        "# as run: gen instances run/instructions --out run/instances",
        "gen instances run/instructions --config instructgen/instances/config.yaml --out run/instances",
        "# as run: gen curate run/instances --out run/curated --cache-dir instructgen",
        "gen curate run/instances --config instructgen/curated/curate.yaml --out run/curated",
        "# as run: gen train run/curated --student student-1b --out run/train",
        "gen train run/curated --config instructgen/train/config.yaml --out run/train",
        "gen publish run --repo alice/ds"]
    parser = build_parser()
    for c in lines:
        args = shlex.split(c.removeprefix("# as run: "))
        parser.parse_args(args[1:])  # every flag is one the command has
        for a in args:  # each path in the run folder exists there when the folder is called `run`
            if a.startswith("run/"):
                assert (run.parent / a).exists(), a
    # the runnable ones: their --config is published, and the command accepts it. Run by the `gen` entry point:
    # `python -m instructgen` in that folder would import its instructgen/ folder of configs as the package
    entry = Path(sys.executable).with_name("gen")
    for c in lines[1:-1:2]:
        args = shlex.split(c)
        config = args[args.index("--config") + 1]
        assert (out / config).is_file(), config
        if entry.exists():
            r = subprocess.run([str(entry), *args[1:], "--print-config"], capture_output=True, text=True, cwd=out,
                               env=dict(os.environ, HOME=str(home), HF_HUB_OFFLINE="1"), timeout=120)
            assert r.returncode == 0 and "Traceback" not in r.stderr, (c, r.stderr)
    assert "| instructions: seed tasks | 143 (my_seeds.jsonl) |" in card


def page_reproduce_block(page: str) -> list[str]:
    import html
    return html.unescape(page.split('<pre class="reproduce">', 1)[1].split("</pre>", 1)[0]).splitlines()


def test_report_page_and_card_print_the_same_reproduce_block(published):
    """One reproduce block (report/collect.py `reproduce_block`) for the card and both report pages: the page
    published beside the card prints the card's lines exactly, `gen report` on the run the same less the
    `gen publish` line (no publish ran); none names a local path."""
    tmp, run, home, out = published
    card = [c for c in reproduce_block((out / "README.md").read_text()) if c.startswith(("gen ", "# as run: "))]
    assert len(card) == 9 and card[-1] == "gen publish run --repo alice/ds"
    assert page_reproduce_block((out / "report.html").read_text()) == card
    assert page_reproduce_block((run / "report.html").read_text()) == card[:-1]
    for c in card:
        assert not [m for m in ABSOLUTE.findall(c) if os.path.exists("/" + m.split("/")[1])], c


def test_whole_gen_run_folder_card_and_configs(tmp_path):
    run, home = leaky_run(tmp_path, top=True)
    out = tmp_path / "out"
    r = gen("publish", str(run), "--repo", "alice/ds", "--local-dir", str(out), home=home)
    assert r.returncode == 0, r.stderr
    assert leaks(out, tmp_path, home) == []
    card = (out / "README.md").read_text()
    assert reproduce_block(card)[-3:] == ["# as run: gen run --seeds my_seeds.jsonl --out run",
                                          "gen run --config instructgen/run/config.yaml --out run",
                                          "gen publish run --repo alice/ds"]
    top = json.loads((out / "instructgen/run/config.json").read_text())
    assert top["argv"] == ["gen", "run", "--seeds", "my_seeds.jsonl", "--out", "."]
    assert top["config"]["seeds"] == "my_seeds.jsonl"


def test_relative_invocation_and_single_stage_folder(tmp_path):
    """`gen publish` and `gen report` typed with relative paths on one stage folder: the same, no local path."""
    run, home = leaky_run(tmp_path)
    r = gen("publish", "run/curated", "--repo", "alice/ds", "--dry-run", home=home, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert leaks(run / "curated" / "publish", tmp_path, home) == []
    card = (run / "curated" / "publish" / "README.md").read_text()
    assert reproduce_block(card)[-3:] == ["# as run: gen curate instances --out run --cache-dir instructgen",
                                          "gen curate instances --config instructgen/curated/curate.yaml --out run",
                                          "gen publish run --repo alice/ds"]  # --dry-run is not in the card
    r = gen("report", ".", home=home, cwd=run / "curated")
    assert r.returncode == 0, r.stderr
    assert leaks(run / "curated" / "report.html", tmp_path, home) == []
    assert "instructgen report: curated" in (run / "curated" / "report.html").read_text()


def test_run_folder_with_spaces_and_a_url_teacher(tmp_path):
    """A run folder whose path holds spaces is still rewritten whole; a teacher URL is left as it is."""
    run, home = leaky_run(tmp_path / "my runs" / "day 1")
    edit(run / "instances" / "config.json", lambda c: c["config"].update(teacher="openai:http://127.0.0.1:9/v1"))
    out = tmp_path / "out"
    r = gen("publish", str(run), "--repo", "alice/ds", "--local-dir", str(out), home=home)
    assert r.returncode == 0, r.stderr
    assert leaks(out, tmp_path, home) == []
    assert json.loads((out / "instructgen/instances/config.json").read_text())["config"] == {
        **json.loads((run / "instances/config.json").read_text())["config"], "input": "instructions"}
    assert "openai:http://127.0.0.1:9/v1" in (out / "README.md").read_text()


# ------------------------------------------------------------------------------------------------ --local-dir

@pytest.fixture
def small(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return make_run(tmp_path / "run", stages=("instructions", "instances"), n=12), home


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(r: subprocess.CompletedProcess, *words: str) -> str:
    """The one error line of a refusal (exit 2, no traceback), which names each of `words`."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("gen publish: error: ")
    for w in words:
        assert w in r.stderr, (w, r.stderr)
    return r.stderr


def no_temp_left(parent: Path) -> None:
    assert not [p.name for p in parent.iterdir() if ".tmp" in p.name], list(parent.iterdir())


def build(run: Path, home: Path, out: Path) -> subprocess.CompletedProcess:
    return gen("publish", str(run), "--repo", "a/b", "--local-dir", str(out), home=home)


def test_earlier_build_holding_user_files_is_refused_and_they_survive(small, tmp_path):
    run, home = small
    out = tmp_path / "ds"
    assert build(run, home, out).returncode == 0
    (out / "notes.md").write_text("my notes")
    (out / "data" / "extra-00000.parquet").write_bytes(b"mine")
    (out / "figures" / "mine").mkdir()
    before = files_of(out)
    err = refused(build(run, home, out), "notes.md", "data/extra-00000.parquet", "figures/mine/")
    assert "did not write" in err
    assert files_of(out) == before and (out / "figures" / "mine").is_dir()
    no_temp_left(tmp_path)


def test_more_than_three_user_files_are_counted(small, tmp_path):
    run, home = small
    out = tmp_path / "ds"
    assert build(run, home, out).returncode == 0
    for i in range(5):
        (out / f"mine-{i}.txt").write_text(str(i))
    before = files_of(out)
    refused(build(run, home, out), "mine-0.txt", "mine-2.txt", "and 2 more")
    assert files_of(out) == before


def test_earlier_build_of_ours_is_replaced_and_its_stale_files_go(small, tmp_path):
    run, home = small
    out = tmp_path / "ds"
    assert build(run, home, out).returncode == 0
    first = files_of(out)
    # an earlier build that had a second shard: listed in its manifest, so ours to remove
    (out / "data" / "train-00001-of-00002.parquet").write_bytes(b"old shard")
    manifest = json.loads((out / "instructgen/manifest.json").read_text())
    manifest["files"].append("data/train-00001-of-00002.parquet")
    (out / "instructgen/manifest.json").write_text(json.dumps(manifest))
    r = build(run, home, out)
    assert r.returncode == 0, r.stderr
    assert files_of(out) == first
    no_temp_left(tmp_path)


def test_empty_existing_folder_is_used(small, tmp_path):
    run, home = small
    out = tmp_path / "empty"
    out.mkdir()
    r = build(run, home, out)
    assert r.returncode == 0, r.stderr
    assert (out / "README.md").is_file() and (out / "instructgen/manifest.json").is_file()


@pytest.mark.parametrize("what", ["hf-model", "corrupt-manifest", "foreign-manifest"])
def test_folder_that_is_not_our_build_is_refused(small, tmp_path, what):
    run, home = small
    out = tmp_path / "ds"
    (out / "instructgen").mkdir(parents=True)
    (out / "config.json").write_text('{"model_type": "llama"}')
    (out / "model.safetensors").write_bytes(b"weights")
    if what == "corrupt-manifest":
        (out / "instructgen/manifest.json").write_text('{"tool": "instructgen", "files": [')
    elif what == "foreign-manifest":  # a manifest of some other tool, listing everything
        (out / "instructgen/manifest.json").write_text(json.dumps(
            {"tool": "other", "files": ["config.json", "model.safetensors", "instructgen/manifest.json"]}))
    before = files_of(out)
    refused(build(run, home, out), "not an earlier `gen publish` build", str(out))
    assert files_of(out) == before
    no_temp_left(tmp_path)


def test_symlink_inside_an_earlier_build_is_refused_and_its_target_kept(small, tmp_path):
    run, home = small
    out = tmp_path / "ds"
    assert build(run, home, out).returncode == 0
    precious = tmp_path / "precious.txt"
    precious.write_text("keep")
    readme = out / "README.md"
    readme.unlink()
    readme.symlink_to(precious)  # listed in the manifest, but a link we did not make
    refused(build(run, home, out), "README.md")
    assert readme.is_symlink() and precious.read_text() == "keep"


@pytest.mark.parametrize("where", ["run", "inside", "stage", "holds"])
def test_local_dir_overlapping_the_run_is_refused(small, tmp_path, where):
    run, home = small
    out = {"run": run, "inside": run / "pub", "stage": run / "instances", "holds": tmp_path}[where]
    before = files_of(tmp_path)
    refused(build(run, home, out), "--local-dir")
    assert files_of(tmp_path) == before and not (run / "pub").exists()


def test_local_dir_that_is_a_file_is_refused(small, tmp_path):
    run, home = small
    out = tmp_path / "ds.txt"
    out.write_text("mine")
    refused(build(run, home, out), "is a file")
    assert out.read_text() == "mine"
    no_temp_left(tmp_path)


@pytest.mark.parametrize("target", ["empty", "dangling", "earlier-build"])
def test_local_dir_that_is_a_symlink_is_refused(small, tmp_path, target):
    run, home = small
    real = tmp_path / "real"
    if target == "empty":
        real.mkdir()
    elif target == "earlier-build":
        assert build(run, home, real).returncode == 0
    link = tmp_path / "link"
    link.symlink_to(real)
    before = files_of(real) if real.exists() else None
    refused(build(run, home, link), "symbolic link")
    assert link.is_symlink() and (files_of(real) if real.exists() else None) == before
    no_temp_left(tmp_path)


def test_local_dir_under_a_read_only_folder_is_refused(small, tmp_path):
    run, home = small
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        # root ignores file modes: a folder of sysfs, which nobody may create files in, stands in for one
        out = ro / "ds" / "sub" if os.geteuid() != 0 else Path("/sys/instructgen-test/ds")
        refused(build(run, home, out), str(out), "nothing was written")
        assert not out.exists() and list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_local_dir_under_a_file_is_refused(small, tmp_path):
    run, home = small
    (tmp_path / "afile").write_text("mine")
    refused(build(run, home, tmp_path / "afile" / "ds"), "cannot write there")
    assert (tmp_path / "afile").read_text() == "mine"


def test_empty_local_dir_is_refused(small):
    run, home = small
    refused(gen("publish", str(run), "--repo", "a/b", "--local-dir", "", home=home), "--local-dir: empty path")


def test_dry_run_folder_holding_user_files_is_refused(small):
    run, home = small
    assert gen("publish", str(run), "--repo", "a/b", "--dry-run", home=home).returncode == 0
    (run / "publish" / "keep.txt").write_text("mine")
    refused(gen("publish", str(run), "--repo", "a/b", "--dry-run", home=home), "keep.txt")
    assert (run / "publish" / "keep.txt").read_text() == "mine"

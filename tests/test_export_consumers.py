"""Each export as its consumer's own code reads it: trl 1.16's SFTTrainer data preparation (in this
environment), datasets 3.6 / 4.0 and LLaMA-Factory 0.9.5 / axolotl 0.19 in side venvs made by
`python benchmarks/consumers.py setup` (those tests skip when the venvs are absent).

What trl trains on is counted token by token from the labels its data collator builds: the test fails if
the prompt of a `prompt-completion` example is trained on, or if trl's label set differs from `gen train`'s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from instructgen.export import export_tasks
from instructgen.records import Instance, RecordError, Task, read_tasks
from instructgen.trainer.data import IGNORE_INDEX, encode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "trainer"))
from tiny import build_model, one_thread  # noqa: E402

TASKS = [Task(id="t0", instruction="Repeat the word apple three times.", instances=[Instance("", "apple apple apple")],
              meta={"system": "Answer tersely."}),
         Task(id="t1", instruction="Repeat the word river three times.", instances=[Instance("", "river river river")])]
VENVS = Path(os.environ.get("INSTRUCTGEN_CONSUMER_VENVS", "/tmp/venvs"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("tiny"))


def trl_labels(tiny: Path, path: Path, tmp_path: Path) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) per example, as trl's SFTTrainer prepares and collates the file."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer
    tok = AutoTokenizer.from_pretrained(tiny)
    ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf"))
    with one_thread():
        trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny), processing_class=tok,
                             train_dataset=ds, args=SFTConfig(output_dir=str(tmp_path / "trl"), report_to=[],
                                                              max_length=256, use_cpu=True))
    out = []
    for row in trainer.train_dataset:
        b = trainer.data_collator([row])
        out.append((b["input_ids"][0].tolist(), b["labels"][0].tolist()))
    return out


def trained(ids, labels) -> list[int]:
    return [i for i, lab in zip(ids, labels) if lab != IGNORE_INDEX]


def test_what_trl_trains_on_for_each_export(tiny, tmp_path):
    """prompt-completion: the answer only (never a prompt or system token); prompt-completion-text: exactly
    gen train's labels; messages and text: every token (trl's language-modelling case); sharegpt: the roles
    `human`/`gpt` rendered literally, which is why trl must not be given it."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny)
    rows = {}
    for fmt in ("messages", "prompt-completion", "prompt-completion-text", "text", "sharegpt"):
        export_tasks(TASKS, fmt, tmp_path / f"{fmt}.jsonl", model=str(tiny))
        rows[fmt] = trl_labels(tiny, tmp_path / f"{fmt}.jsonl", tmp_path)
    ours = [encode(tok, m, 256) for m in ([{"role": "system", "content": "Answer tersely."},
                                           {"role": "user", "content": TASKS[0].instruction},
                                           {"role": "assistant", "content": "apple apple apple"}],
                                          [{"role": "user", "content": TASKS[1].instruction},
                                           {"role": "assistant", "content": "river river river"}])]
    for i, (enc, answer) in enumerate(zip(ours, ["apple apple apple", "river river river"])):
        gen_train = trained(enc["input_ids"], enc["labels"])
        assert tok.decode(gen_train) == answer + "<|im_end|>"
        # prompt-completion (conversational): trl masks the whole prompt; it also trains the newline ChatML
        # writes after <|im_end|>, which gen train leaves out (the only difference)
        ids, labels = rows["prompt-completion"][i]
        n_prompt = sum(1 for x in enc["labels"] if x == IGNORE_INDEX)
        assert ids[:n_prompt] == enc["input_ids"][:n_prompt]
        assert all(lab == IGNORE_INDEX for lab in labels[:n_prompt]), "trl trains on the prompt"
        assert tok.decode(trained(ids, labels)) == answer + "<|im_end|>\n"
        # prompt-completion-text: the same token ids and the same trained tokens as gen train
        ids, labels = rows["prompt-completion-text"][i]
        assert ids == enc["input_ids"] and trained(ids, labels) == gen_train
        # messages and text: every token is trained, system and prompt included
        for fmt in ("messages", "text"):
            ids, labels = rows[fmt][i]
            assert labels == ids and len(trained(ids, labels)) > len(gen_train) + 5, fmt
        assert rows["text"][i][0] == enc["input_ids"]
        assert tok.decode(rows["messages"][i][0]).startswith("<|im_start|>system\nAnswer tersely." if i == 0
                                                             else "<|im_start|>user\n")
        ids, _ = rows["sharegpt"][i]
        assert "<|im_start|>human\n" in tok.decode(ids) and "<|im_start|>gpt\n" in tok.decode(ids)


def test_rendered_exports_are_refused_by_our_reader(tiny, tmp_path):
    """A pre-rendered export cannot be told apart from a raw prompt, so gen train refuses it rather than
    wrap a second chat template around it; the file names the model by folder name, not by local path."""
    export_tasks(TASKS, "prompt-completion-text", tmp_path / "p.jsonl", model=str(tiny))
    assert str(tiny.parent) not in (tmp_path / "p.jsonl").read_text()
    assert json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])["rendered_for"] == tiny.name
    with pytest.raises(RecordError, match=r"p\.jsonl:1: this record was rendered with the chat template"):
        read_tasks(tmp_path / "p.jsonl")


# --------------------------------------------------------------------------- side venvs (benchmarks/consumers.py)

def side_venv(name: str) -> Path:
    py = VENVS / name / "bin" / "python"
    if not py.exists():
        pytest.skip(f"no side venv {py}: run `python benchmarks/consumers.py setup` to make it")
    return py


def run_check(py: Path, what: str, folder: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               PYTHONPATH=str(VENVS / "lf" / "stubs"),  # LLaMA-Factory's import-only torchaudio stand-in
               DISABLE_VERSION_CHECK="1")  # LLaMA-Factory's own switch: our transformers is past its <=5.6 pin
    r = subprocess.run([str(py), str(ROOT / "benchmarks" / "consumers.py"), what, str(folder)], capture_output=True,
                       text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("venv", ["ds3", "ds4"])
def test_parquet_and_saved_folder_load_in_datasets_3_and_4(venv, tmp_path):
    py = side_venv(venv)
    export_tasks(TASKS, "parquet", tmp_path / "x.parquet")
    export_tasks(TASKS, "save-to-disk", tmp_path / "disk")
    got = run_check(py, "datasets", tmp_path)
    assert got["version"].split(".")[0] == venv[-1]
    want = [{"id": "t0", "system": "Answer tersely.", "n_turns": 3}, {"id": "t1", "system": "", "n_turns": 2}]
    assert got["parquet"] == got["save-to-disk"] == want


def test_llamafactory_reads_each_export_with_its_dataset_info_entry(tmp_path):
    """LLaMA-Factory 0.9.5's own parser (dataset_info.json) and converter: the system prompt, the user turn and
    the answer arrive in its _system / _prompt / _response columns for every export it reads."""
    py = side_venv("lf/venv")
    for fmt, name in [("alpaca", "a.json"), ("messages", "m.jsonl"), ("sharegpt", "s.jsonl"), ("jsonl", "j.jsonl"),
                      ("parquet", "x.parquet"), ("save-to-disk", "disk")]:
        export_tasks(TASKS, fmt, tmp_path / name)
    got = run_check(py, "llamafactory", tmp_path)
    want = [{"system": "Answer tersely.", "prompt": [["user", TASKS[0].instruction]],
             "response": [["assistant", "apple apple apple"]]},
            {"system": "", "prompt": [["user", TASKS[1].instruction]], "response": [["assistant", "river river river"]]}]
    assert set(got) == {"a", "m", "s", "j", "x", "disk"}
    for name, rows in got.items():
        assert rows == want, name


def test_axolotl_trains_on_the_answer_of_each_export_with_its_snippet(tiny, tmp_path):
    """axolotl 0.19's own loader and the prompt strategy each snippet names, configured by the snippet beside
    each export: chat exports train the answer and its end-of-turn token, never the system prompt or the user
    turn; `text` (type: completion) trains every token; alpaca trains axolotl's own Alpaca response."""
    py = side_venv("ax/venv")
    for fmt, name in [("messages", "m.jsonl"), ("sharegpt", "s.jsonl"), ("jsonl", "j.jsonl"),
                      ("parquet", "x.parquet"), ("save-to-disk", "disk"), ("alpaca", "a.json")]:
        export_tasks(TASKS, fmt, tmp_path / name)
    export_tasks(TASKS, "text", tmp_path / "t.jsonl", model=str(tiny))
    (tmp_path / "tokenizer").symlink_to(tiny)
    got = run_check(py, "axolotl", tmp_path)
    assert set(got) == {"m", "s", "j", "x", "disk", "a", "t"}
    for name in ("m", "s", "j", "x", "disk"):
        assert [r["trained"] for r in got[name]] == ["apple apple apple<|im_end|>", "river river river<|im_end|>"], name
        assert "Answer tersely." in got[name][0]["text"], name
    assert [r["trained"].strip() for r in got["a"]][1].startswith("river river river")
    assert "Repeat the word" not in got["a"][1]["trained"]
    assert got["t"][0]["trained"] == got["t"][0]["text"] and "Answer tersely." in got["t"][0]["trained"]

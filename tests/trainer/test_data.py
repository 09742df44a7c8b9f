"""Rendering, label masking (token by token), truncation and the held-out split."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from instructgen.config import ConfigError
from instructgen.records import RecordError
from instructgen.trainer.data import (DEFAULT_CHAT_TEMPLATE, IGNORE_INDEX, encode, encode_all, fingerprint,
                                      load_examples, set_chat_template, split_heldout)

sys.path.insert(0, str(Path(__file__).parent))
from tiny import build_tokenizer, records  # noqa: E402

MESSAGES = [{"role": "user", "content": "Repeat the word apple three times."},
            {"role": "assistant", "content": "apple apple apple"}]


def test_labels_token_by_token_with_the_students_chat_template():
    tok = build_tokenizer()
    enc = encode(tok, MESSAGES, max_length=128)
    prompt = tok("<|im_start|>user\nRepeat the word apple three times.<|im_end|>\n<|im_start|>assistant\n",
                 add_special_tokens=False)["input_ids"]
    response = tok("apple apple apple", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert enc["input_ids"] == prompt + response
    assert enc["labels"] == [IGNORE_INDEX] * len(prompt) + response
    for i, (tid, lab) in enumerate(zip(enc["input_ids"], enc["labels"])):
        assert lab == (IGNORE_INDEX if i < len(prompt) else tid), f"token {i} {tok.decode([tid])!r}"
    # the trained tokens are the response and EOS; the newline the template writes after EOS is not trained
    trained = [t for t in enc["labels"] if t != IGNORE_INDEX]
    assert tok.decode(trained) == "apple apple apple<|im_end|>"
    assert enc["labels"][-1] == tok.eos_token_id and enc["input_ids"][-1] == tok.eos_token_id
    assert not enc["truncated"] and enc["length"] == len(prompt) + len(response)


def test_default_template_for_a_model_without_one_appends_eos():
    tok = build_tokenizer(chat_template=None)
    assert set_chat_template(tok) == "default" and tok.chat_template == DEFAULT_CHAT_TEMPLATE
    enc = encode(tok, MESSAGES, max_length=128)
    n_prompt = enc["labels"].count(IGNORE_INDEX)
    assert tok.decode(enc["input_ids"][:n_prompt]) == \
        "### Instruction:\nRepeat the word apple three times.\n\n### Response:\n"
    assert tok.decode(enc["labels"][n_prompt:]) == "apple apple apple<|im_end|>"
    assert all(lab == IGNORE_INDEX for lab in enc["labels"][:n_prompt])


def test_template_without_eos_gets_eos_appended():
    tok = build_tokenizer(chat_template="{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                                        "{% if add_generation_prompt %}assistant: {% endif %}")
    enc = encode(tok, MESSAGES, max_length=128)
    trained = [t for t in enc["labels"] if t != IGNORE_INDEX]
    assert trained[-1] == tok.eos_token_id and trained.count(tok.eos_token_id) == 1
    assert tok.decode(trained[:-1]).strip() == "apple apple apple"


def test_keeps_the_students_own_template_and_reads_a_template_file(tmp_path):
    tok = build_tokenizer()
    own = tok.chat_template
    assert set_chat_template(tok) == "student" and tok.chat_template == own
    f = tmp_path / "t.jinja"
    f.write_text("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{% endfor %}"
                 "{% if add_generation_prompt %}[assistant] {% endif %}")
    assert set_chat_template(tok, str(f)) == str(f) and tok.chat_template.startswith("{% for m")
    with pytest.raises(ConfigError, match="no such file"):
        set_chat_template(tok, str(tmp_path / "missing.jinja"))


def test_prompt_that_is_not_a_prefix_is_refused():
    tok = build_tokenizer(chat_template="{% for m in messages %}{{ m['content'] }}|{% endfor %}"
                                        "{% if add_generation_prompt %}ASSISTANT{% endif %}")
    with pytest.raises(ConfigError, match="not a prefix"):
        encode(tok, MESSAGES, max_length=128)


def test_truncation_keeps_the_start_and_counts():
    tok = build_tokenizer()
    full = encode(tok, MESSAGES, max_length=128)
    cut = encode(tok, MESSAGES, max_length=len(full["input_ids"]) - 2)
    assert cut["truncated"] and cut["length"] == len(full["input_ids"])
    assert cut["input_ids"] == full["input_ids"][:-2] and cut["labels"] == full["labels"][:-2]
    only_prompt = encode(tok, MESSAGES, max_length=5)
    assert all(x == IGNORE_INDEX for x in only_prompt["labels"])
    ex = [{"messages": MESSAGES}] * 3
    stats = encode_all(tok, ex, max_length=5)
    assert stats.rows == [] and stats.no_target == 3 and stats.truncated == 3


def test_split_heldout_is_by_task_deterministic_and_leaves_training_data():
    examples = [{"id": f"{i}-{j}", "instruction": f"task {i}", "input": "", "output": "x", "messages": []}
                for i in range(30) for j in range(2)]
    train, held = split_heldout(examples, share=0.05, minimum=4, seed=1)
    assert len(held) == 4 and len(train) == 56
    assert {e["instruction"] for e in train}.isdisjoint({e["instruction"] for e in held})
    assert split_heldout(examples, 0.05, 4, 1) == (train, held)
    assert split_heldout(examples, 0.05, 4, 2)[1] != held
    big = split_heldout(examples, share=0.2, minimum=4, seed=1)[1]
    assert len(big) == 12
    few = examples[:4]  # two tasks: one is held out, one trains
    t, h = split_heldout(few, 0.05, 4, 0)
    assert len(t) == 2 and len(h) == 2
    with pytest.raises(ConfigError, match="at least two tasks"):
        split_heldout(examples[:2], 0.05, 4, 0)


def test_load_examples_from_alpaca_json_and_errors(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps(records()[:3]))
    ex = load_examples(p)
    assert [e["messages"][1]["content"] for e in ex] == ["apple apple apple", "river river river",
                                                         "stone stone stone"]
    assert fingerprint(ex) == fingerprint(load_examples(p))
    p2 = tmp_path / "d2.json"
    p2.write_text(json.dumps(records()[:2] + [{"instruction": "x", "input": "", "output": "changed"}]))
    assert fingerprint(load_examples(p2)) != fingerprint(ex)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps([{"instruction": "Say hi to me please.", "input": "", "output": ""}]))
    with pytest.raises(RecordError, match="no training example"):
        load_examples(empty)
    with pytest.raises(RecordError, match="no such file"):
        load_examples(tmp_path / "missing.json")


def test_load_examples_from_a_stage_folder_and_messages_jsonl(tmp_path):
    from instructgen.records import Instance, Task, write_jsonl
    stage = tmp_path / "curated"
    stage.mkdir()
    (stage / "config.json").write_text(json.dumps({"stage": "curate", "config": {}}))
    kept = Task(id="a", instruction="Name a color.", instances=[Instance("", "Blue"), Instance("", "Red")])
    dropped = Task(id="b", instruction="Name a fruit.", instances=[Instance("", "Apple")]).drop("too_short")
    write_jsonl(stage / "kept.jsonl", [kept, dropped])
    with pytest.raises(RecordError, match="not complete"):
        load_examples(stage)
    (stage / "completed").write_text("now\n")
    ex = load_examples(stage)
    assert [(e["id"], e["output"]) for e in ex] == [("a-0", "Blue"), ("a-1", "Red")]  # dropped records skipped
    msgs = tmp_path / "train.jsonl"
    msgs.write_text(json.dumps({"messages": [{"role": "user", "content": "Say hi."},
                                             {"role": "assistant", "content": "Hi!"}]}) + "\n")
    assert load_examples(msgs)[0]["messages"] == [{"role": "user", "content": "Say hi."},
                                                   {"role": "assistant", "content": "Hi!"}]


def test_every_export_trains_the_same_examples_system_prompt_included(tmp_path):
    """gen train reads each export gen export writes back to the same examples (system turn first), and a
    multi-turn conversation is refused, as gen export refuses it."""
    from instructgen.export import export_tasks
    from instructgen.records import read_tasks
    src = tmp_path / "src.json"
    src.write_text(json.dumps([dict(r, system="Answer tersely.") for r in records()[:3]]))
    want = load_examples(src)
    assert want[0]["messages"] == [{"role": "system", "content": "Answer tersely."},
                                   {"role": "user", "content": "Repeat the word apple three times."},
                                   {"role": "assistant", "content": "apple apple apple"}]
    tasks = read_tasks(src)
    for fmt, name in [("alpaca", "a.json"), ("messages", "m.jsonl"), ("sharegpt", "s.jsonl"),
                      ("prompt-completion", "p.jsonl"), ("jsonl", "j.jsonl"), ("parquet", "x.parquet"),
                      ("save-to-disk", "disk")]:
        export_tasks(tasks, fmt, tmp_path / name)
        got = load_examples(tmp_path / name)
        assert [e["messages"] for e in got] == [e["messages"] for e in want], fmt
        if fmt not in ("alpaca", "messages", "sharegpt"):  # these three carry no id column
            assert fingerprint(got) == fingerprint(want), fmt
    assert load_examples(src, system="Be kind.")[0]["messages"][0] == {"role": "system", "content": "Be kind."}
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": MESSAGES + MESSAGES}) + "\n")
    with pytest.raises(RecordError, match=r"chat\.jsonl:1: field 'messages' is a multi-turn conversation"):
        load_examples(chat)


def test_fingerprint_without_a_system_prompt_is_unchanged():
    """Runs made before system prompts existed keep their identity (resume, not refusal)."""
    from instructgen.records import text_hash
    ex = [{"id": "a", "output": "apple apple apple", "messages": MESSAGES}]
    assert fingerprint(ex) == text_hash("a\x1eRepeat the word apple three times.\x1eapple apple apple")
    with_sys = [dict(ex[0], messages=[{"role": "system", "content": "Be brief."}] + MESSAGES)]
    assert fingerprint(with_sys) != fingerprint(ex)


def test_render_example_is_the_split_encode_trains_on():
    from instructgen.trainer.data import render_example
    tok = build_tokenizer()
    msgs = [{"role": "system", "content": "Be brief."}] + MESSAGES
    prompt, response = render_example(tok, msgs)
    assert response == "apple apple apple<|im_end|>"  # cut after EOS: ChatML's newline after it is not trained
    enc = encode(tok, msgs, max_length=256)
    ids = tok(prompt, add_special_tokens=False)["input_ids"] + tok(response, add_special_tokens=False)["input_ids"]
    assert enc["input_ids"] == ids
    assert tok.decode([t for t in enc["labels"] if t != IGNORE_INDEX]) == response

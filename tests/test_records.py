import json

import pytest

from instructgen.records import (Instance, RecordError, Task, read_records, read_seed_tasks, read_tasks,
                                 repair_torn_tail, write_jsonl)


def test_self_instruct_seed_file_reads_unchanged_and_round_trips(shared_data, tmp_path):
    src = shared_data / "self_instruct_seed_tasks.jsonl"
    tasks = read_seed_tasks(src)
    assert len(tasks) == 175 and sum(t.is_classification for t in tasks) == 26
    raw = [json.loads(line) for line in src.read_text().splitlines()]
    for t, r in zip(tasks, raw):
        assert (t.id, t.instruction, t.meta["name"]) == (r["id"], r["instruction"], r["name"])
        assert [(i.input, i.output) for i in t.instances] == [(i["input"], i["output"]) for i in r["instances"]]
    write_jsonl(tmp_path / "rt.jsonl", tasks)
    again = read_tasks(tmp_path / "rt.jsonl")
    assert [t.to_dict() for t in again] == [t.to_dict() for t in tasks]


def test_alpaca_json_messages_prompt_completion_and_txt(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([
        {"instruction": "Give a synonym of happy.", "input": "", "output": "Glad"},
        {"instruction": "Sum the numbers.", "input": "2, 3", "output": "5"}]))
    a = read_tasks(tmp_path / "a.json")
    assert a[0].instances == [Instance("", "Glad")] and a[1].instances == [Instance("2, 3", "5")]
    (tmp_path / "m.jsonl").write_text(json.dumps({"messages": [
        {"role": "system", "content": "be nice"}, {"role": "user", "content": "Hi there, who are you?"},
        {"role": "assistant", "content": "A helper."}]}) + "\n")
    m = read_tasks(tmp_path / "m.jsonl")
    assert m[0].instruction == "Hi there, who are you?" and m[0].instances[0].output == "A helper."
    (tmp_path / "p.jsonl").write_text(json.dumps({"id": "x", "prompt": "Q?", "completion": "A", "template": "t"}) + "\n")
    p = read_tasks(tmp_path / "p.jsonl")
    assert p[0].id == "x" and p[0].meta["template"] == "t"
    (tmp_path / "i.txt").write_text("List three fruits.\n\nName a river in Asia.\n")
    assert [t.instruction for t in read_tasks(tmp_path / "i.txt")] == ["List three fruits.", "Name a river in Asia."]


@pytest.mark.parametrize("line, message", [
    ('{"instruction": "", "instances": []}', "field 'instruction' is empty"),
    ('{"instruction": "ok then", "instances": "nope"}', "field 'instances' must be a list"),
    ('{"instruction": "ok then", "instances": [{"input": 3, "output": ""}]}', "instances[0].input"),
    ('{"instruction": "ok then", "instances": [], "is_classification": "yes"}', "is_classification"),
    ('{"instruction": 5, "input": "", "output": ""}', "field 'instruction' must be a string"),
    ('{"foo": 1}', "unrecognised record"),
    ('[1, 2]', "expected a JSON object"),
    ('{"instruction": "broken', "not valid JSON"),
])
def test_malformed_line_names_file_line_and_field(tmp_path, line, message):
    f = tmp_path / "seeds.jsonl"
    f.write_text('{"id": "a", "instruction": "A fine task here.", "instances": []}\n\n' + line + "\n")
    with pytest.raises(RecordError) as e:
        read_tasks(f)
    assert f"{f}:3" in str(e.value) and message in str(e.value)


def test_duplicate_ids_and_empty_seed_file_are_errors(tmp_path):
    f = tmp_path / "d.jsonl"
    row = {"id": "a", "instruction": "A fine task here.", "instances": []}
    f.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(RecordError, match=r"d.jsonl:2: duplicate id 'a'"):
        read_tasks(f)
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(RecordError, match="holds no tasks"):
        read_seed_tasks(tmp_path / "e.jsonl")
    with pytest.raises(RecordError, match="no such file"):
        read_tasks(tmp_path / "missing.jsonl")


def test_torn_tail_is_cut_and_incomplete_run_folder_is_refused(tmp_path):
    f = tmp_path / "log.jsonl"
    write_jsonl(f, [Task(id="a", instruction="one two three four")])
    with open(f, "a") as fh:
        fh.write('{"id": "b", "instr')
    assert repair_torn_tail(f) > 0
    assert [t.id for t in read_tasks(f)] == ["a"]
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    with pytest.raises(RecordError, match="not complete"):
        read_records(run)


def test_parquet_and_saved_hf_dataset(tmp_path):
    import datasets
    ds = datasets.Dataset.from_list([{"instruction": "Name a color of the sky.", "input": "", "output": "Blue"}])
    ds.to_parquet(str(tmp_path / "x.parquet"))
    ds.save_to_disk(str(tmp_path / "saved"))
    for p in (tmp_path / "x.parquet", tmp_path / "saved"):
        t = read_tasks(p)
        assert t[0].instruction == "Name a color of the sky." and t[0].instances[0].output == "Blue"


SYS, USER, ASST = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a red fruit."},
                   {"role": "assistant", "content": "Apple."})


def test_a_leading_system_turn_or_field_is_kept_as_the_records_system_prompt(tmp_path):
    src = tmp_path / "chat.jsonl"
    rows = [{"messages": [SYS, USER, ASST]},
            {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Name a red fruit."},
                               {"from": "gpt", "value": "Apple."}]},
            {"prompt": [SYS, USER], "completion": [ASST]},  # trl's conversational prompt-completion
            {"instruction": "Name a red fruit.", "input": "", "output": "Apple.", "system": "Be brief."},
            {"prompt": "Name a red fruit.", "completion": "Apple.", "system": "Be brief."},
            {"instruction": "Name a red fruit.", "instances": [{"input": "", "output": "Apple."}],
             "meta": {"system": "Be brief."}}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = read_tasks(src)
    assert [(t.instruction, t.instances[0].output, t.meta["system"]) for t in tasks] == \
        [("Name a red fruit.", "Apple.", "Be brief.")] * len(rows)
    src.write_text(json.dumps({"messages": [USER, ASST]}) + "\n")
    assert read_tasks(src)[0].meta == {}


@pytest.mark.parametrize("row, message", [
    ({"messages": [USER, ASST, {"role": "user", "content": "And a yellow one?"}, ASST]},
     "field 'messages' is a multi-turn conversation (2 user turns); instructgen keeps one exchange"),
    ({"conversations": [{"from": "human", "value": "Hi."}, {"from": "gpt", "value": "Hello."},
                        {"from": "human", "value": "Bye."}]}, "field 'conversations' is a multi-turn conversation"),
    ({"messages": [USER, SYS, ASST]}, "field 'messages' is out of order at messages[1] (role system; expected"),
    ({"messages": [USER, ASST, ASST]}, "out of order at messages[2] (role assistant;"),
    ({"messages": [USER, {"role": "tool", "content": "42"}]}, "field 'messages[1].role' is \"tool\"; expected one of"),
    ({"prompt": [USER, ASST, USER], "completion": [ASST]}, "field 'prompt' holds an assistant turn"),
    ({"prompt": [USER], "completion": "Apple."}, "field 'completion' must be a list of turns like 'prompt'"),
    ({"instruction": "Name one.", "output": "Apple.", "history": [["Hi", "Hello"]]},
     "field 'history' holds earlier turns of a multi-turn conversation"),
    ({"instruction": "Name one.", "output": "Apple.", "system": 3}, "field 'system' must be a string, got a number"),
    ({"messages": [SYS]}, "field 'messages' has no user turn"),
    ({"id": "x", "prompt": "<|im_start|>user\nHi<|im_end|>\n", "completion": "Hello", "rendered_for": "m"},
     "rendered with the chat template of 'm'"),
])
def test_a_multi_turn_conversation_is_refused_naming_line_and_field_never_cut(tmp_path, row, message):
    """Every reader used to keep the first exchange of a longer conversation and drop the rest silently."""
    src = tmp_path / "chat.jsonl"
    src.write_text(json.dumps(row) + "\n")
    with pytest.raises(RecordError) as e:
        read_tasks(src)
    assert message in str(e.value) and str(e.value).startswith(f"{src}:1: ")


def test_a_stage_folder_is_read_from_its_most_processed_output(tmp_path):
    """stage_outputs() comes from instructgen.stage.STAGES in pipeline order, most processed first: a folder
    holding a curate, an instances and an instructions output is read from kept.jsonl; one holding none names
    every file it looked for."""
    from instructgen.records import stage_outputs
    assert stage_outputs() == ("kept.jsonl", "tasks.jsonl", "instructions.jsonl")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "completed").write_text("")
    with pytest.raises(RecordError, match="holds none of kept.jsonl, tasks.jsonl, instructions.jsonl"):
        read_records(run)
    for name in reversed(stage_outputs()):
        write_jsonl(run / name, [Task(id=f"from-{name}", instruction="one two three four")])
        assert [t.id for t in read_records(run)] == [f"from-{name}"]  # the newest, most processed file wins

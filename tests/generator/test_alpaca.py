"""The Alpaca one-pass preset: pinned prompt, the pure parser on real-looking completions, the preset's constants,
the bootstrap loop with the Alpaca recipe (fake teacher, orchestration only) and a short embedded-teacher run."""

from __future__ import annotations

import json
import random
import re

import pytest

from instructgen.config import generation_config
from instructgen.export import export
from instructgen.generator.alpaca import AlpacaRecipe, parse_alpaca_items
from instructgen.generator.bootstrap import PACKAGED_SEEDS, generate_instructions
from instructgen.generator.teachers import Completion
from instructgen.records import Instance, Task, read_seed_tasks, read_tasks
from instructgen.templates import load_template

ALPACA_PROMPT = """\
We are collecting 20 varied tasks to teach an AI assistant to follow instructions. Each task has an instruction,
an input and the output a careful assistant would give.

Guidelines:
1. Vary the verbs and the kinds of task: questions, classification, rewriting, editing, brainstorming,
   reasoning, writing, coding and more.
2. Write each instruction in one or two sentences, in English, some as questions and some as commands.
3. The assistant can only read and write text: no pictures, sound, web browsing or actions in the world.
4. Give an input only when the instruction needs one (a text, a list, a question); make it concrete and real,
   under 100 words. Otherwise write <noinput> as the input.
5. The output is a correct, complete answer to the instruction and input, under 100 words.

List of 20 tasks:
###
1. Instruction: Name a fruit that is yellow.
1. Input:
<noinput>
1. Output:
Banana
###
2. Instruction: Add the two numbers.
2. Input:
17, 25
2. Output:
42
###
3. Instruction: Fix the spelling in the sentence.
3. Input:
I recieved the leter.
3. Output:
I received the letter.
###
4. Instruction:"""

SHOWN = [Task(id="s1", instruction="Name a fruit that is yellow.", instances=[Instance("", "Banana")]),
         Task(id="s2", instruction="Add the two numbers.", instances=[Instance("17, 25", "42")]),
         Task(id="s3", instruction="Fix the spelling in the sentence.",
              instances=[Instance("I recieved the leter.", "I received the letter.")])]


def test_rendered_prompt_is_pinned():
    assert AlpacaRecipe().render(load_template("alpaca.completion"), SHOWN) == ALPACA_PROMPT


# A continuation of a prompt ending in "4. Instruction:", shaped like the embedded model's output.
COMPLETION = """ Suggest a name for a new coffee shop.
4. Input:
<noinput>
4. Output:
The Daily Grind
###
5. Instruction: Convert the sentence to the past tense.
5. Input:
She walks to the station
every morning.
5. Output:
She walked to the station every morning.
###
6. Instruction: Give the opposite of the word.
6. Output:
cold
###
7. Instruction: Write a haiku about rain.
7. Input:
<noinput>
7. Output:

###
8. Instruction: List three capital cit"""


def test_parse_items_noinput_multiline_missing_input_and_empty_output():
    items = AlpacaRecipe().parse(load_template("alpaca.completion"), COMPLETION, 3)
    assert [(c.instruction, c.instances, c.error) for c in items] == [
        ("Suggest a name for a new coffee shop.", [Instance("", "The Daily Grind")], None),
        ("Convert the sentence to the past tense.",
         [Instance("She walks to the station\nevery morning.", "She walked to the station every morning.")], None),
        ("Give the opposite of the word.", [Instance("", "cold")], None),
        ("Write a haiku about rain.", [], "empty_output"),
        ("List three capital cit", [], "malformed_item"),  # cut mid-item: the loop drops it as truncated_item
    ]


def test_parse_items_without_separators_and_with_a_chat_preamble():
    text = ("Sure! Here are more tasks:\n\n4. Instruction: Name a planet.\n4. Input: <noinput>\n4. Output: Mars\n"
            "5. Instruction: Double the number.\n5. Input: 21\n5. Output: 42\n")
    items = parse_alpaca_items(text)
    assert [(c.instruction, c.instances, c.error) for c in items] == [
        ("Name a planet.", [Instance("", "Mars")], None), ("Double the number.", [Instance("21", "42")], None)]


@pytest.mark.parametrize("garbage", ["", "\n\n###\n", "I cannot help with that.", "### Instruction: nothing"])
def test_parse_garbage_gives_nothing(garbage):
    assert parse_alpaca_items(garbage) == []


def test_parse_a_field_without_an_instruction_is_malformed_and_plural_field_names_are_read():
    items = parse_alpaca_items("4. Output:\nfloating answer\n###\n5. Instructions: Say hi.\n5. Output:\nHi")
    assert [(c.instruction, c.error) for c in items] == [("", "malformed_item"), ("Say hi.", None)]


def test_chat_template_completion_is_parsed_without_the_item_prefix(tmp_path):
    chat = tmp_path / "mine.chat.jinja2"
    chat.write_text("Write tasks like these:{% for t in tasks %}\n{{ loop.index }}. Instruction: {{ t.instruction }}"
                    "{% endfor %}")
    tmpl = load_template(chat)
    assert AlpacaRecipe().render(tmpl, SHOWN[:1]) == [
        {"role": "user", "content": "Write tasks like these:\n1. Instruction: Name a fruit that is yellow."}]
    items = AlpacaRecipe().parse(tmpl, "2. Instruction: Name a river.\n2. Input:\n<noinput>\n2. Output:\nNile", 1)
    assert [(c.instruction, c.instances) for c in items] == [("Name a river.", [Instance("", "Nile")])]


def test_preset_constants_are_alpacas():
    c = generation_config({"preset": "alpaca"})
    assert (c.num_prompt_instructions, c.num_machine_instructions, c.temperature, c.top_p, c.max_new_tokens) == \
        (3, 0, 1.0, 1.0, 3072)
    assert c.template == "alpaca.completion" and c.drop_truncated == "last_item" and c.rouge_threshold == 0.7
    assert len(c.blacklist) == 18 and {"video", "audio", "music", "flowchart", "diagram"} <= set(c.blacklist)


# ------------------------------------------------------------------------------------ the loop, fake teacher

WORDS = ("river bread chess tide jazz solar bird budget wool market tea comet garden rome battery sleep paper "
         "volcano tax lemon violin glacier harbor candle desert orbit pepper ladder mirror tunnel meadow copper "
         "lantern quilt walnut canyon ferry pollen marble thunder cactus anchor saddle velvet biscuit").split()
VERBS = ["Explain", "List", "Compare", "Summarize", "Describe", "Rank", "Contrast", "Outline"]


def fake_instruction(rng: random.Random) -> str:
    return f"{rng.choice(VERBS)} " + " ".join(rng.sample(WORDS, 6)) + "."


class FakeAlpacaTeacher:
    """Orchestration only: continues "N. Instruction:" with numbered triples, one blacklisted, one malformed;
    every third completion is cut by the length limit mid-item."""

    name = "fake:alpaca"

    def __init__(self):
        self.prompts, self.calls = [], 0

    def generate(self, prompts, sampling):
        self.calls += 1
        out = []
        for p in prompts:
            self.prompts.append(p)
            n = int(re.findall(r"(\d+)\. Instruction:$", p)[0])
            rng = random.Random(f"{p}|{sampling.seed}")
            items = []
            for k in range(5):
                instr = fake_instruction(rng)
                inp = f"A note on {instr.split()[1]}." if k % 2 else "<noinput>"
                items.append((instr, inp, f"An answer about {instr.split()[2]}."))
            items[1] = ("Describe a video about " + " ".join(rng.sample(WORDS, 3)) + " in detail.", "<noinput>", "A video.")
            items[2] = (items[2][0], items[2][1], None)  # no Output field
            text = ""
            for k, (instr, inp, outp) in enumerate(items):
                num = n + k
                text += (f" {instr}\n" if k == 0 else f"{num}. Instruction: {instr}\n") + f"{num}. Input:\n{inp}\n"
                text += f"{num}. Output:\n{outp}\n###\n" if outp is not None else "###\n"
            length = len(self.prompts) % 3 == 0
            if length:
                text += f"{n + 5}. Instruction: Half a"
            out.append(Completion(text, "length" if length else "stop", 500, 300))
        return out


def test_alpaca_preset_run_keeps_exportable_triples_and_counts_every_drop(tmp_path):
    cfg = generation_config({"preset": "alpaca", "num": 12, "batch_size": 3, "teacher": "fake"})
    teacher = FakeAlpacaTeacher()
    s = generate_instructions(cfg, tmp_path / "run", teacher=teacher, quiet=True)
    assert s["kept"] == 12
    kept = read_tasks(tmp_path / "run" / "instructions.jsonl")
    assert all(len(t.instances) == 1 and t.instances[0].output.startswith("An answer about") for t in kept)
    assert any(t.instances[0].input for t in kept) and any(not t.instances[0].input for t in kept)
    reasons = s["rejected_by_reason"]
    assert reasons["malformed_item"] >= 1 and reasons["blacklist:video"] >= 1 and reasons["truncated_item"] >= 1
    rejected = read_tasks(tmp_path / "run" / "rejected.jsonl")
    assert all(t.verdict.reason for t in rejected)
    assert all(t.instruction != "Half a" or t.verdict.reason == "truncated_item" for t in rejected)
    # 3 demonstrations per prompt, all seeds, shown with their instances and <noinput>
    seed_ids = {t.id for t in read_seed_tasks(PACKAGED_SEEDS)}
    assert all(len(t.provenance["shown"]) == 3 and set(t.provenance["shown"]) <= seed_ids for t in kept + rejected)
    assert all(p.endswith("4. Instruction:") and "1. Output:\n" in p for p in teacher.prompts)
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["preset"] == "alpaca" and config["temperature"] == 1.0 and config["template"] == "alpaca.completion"
    # exportable directly, without gen instances
    n = export(tmp_path / "run", "alpaca", tmp_path / "alpaca.json")
    data = json.loads((tmp_path / "alpaca.json").read_text())
    assert n == len(data) == 12 and all(d["input"] != "<noinput>" for d in data)


@pytest.mark.slow
def test_embedded_teacher_alpaca_preset_produces_parseable_triples(tmp_path, embedded_teacher):
    """The real 135M teacher on the Alpaca prompt (a short budget instead of 3072 tokens): the completions parse
    into triples and every candidate is kept with its instance or dropped with a reason."""
    cfg = generation_config({"preset": "alpaca", "num": 1, "batch_size": 2, "max_new_tokens": 96,
                             "max_batches": 1})
    try:
        s = generate_instructions(cfg, tmp_path / "run", teacher=embedded_teacher, quiet=True)
    except RuntimeError as e:  # a tiny model may keep nothing in one call; what it wrote must still be explained
        assert "teacher calls and kept 0/1" in str(e)
        s = None
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    parsed = [r for r in log if r["verdict"]["reason"] != "unparseable"]
    assert parsed, "no completion parsed into an Alpaca item"
    assert all(r["verdict"]["kept"] or r["verdict"]["reason"] for r in log)
    kept = [r for r in log if r["verdict"]["kept"]]
    assert all(r["instances"] and r["instances"][0]["output"].strip() for r in kept)
    if s is not None:
        assert s["kept"] == 1

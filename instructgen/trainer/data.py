"""From task records to token ids and labels: the student's chat template renders each example, the loss is
on the response only, and the response ends with the EOS token, which is trained.

One example = the user turn (instruction and input, rendered from `templates/user_turn.jinja2` by
`instructgen.examples.iter_examples`) and the assistant turn (the instance output). The prompt is the chat
template applied to the user turn with the generation prompt; the response is what the template adds for the
assistant turn, cut after its first EOS token (SmolLM's ChatML ends a turn with `<|im_end|>\\n`: the newline
after EOS is never generated, so it is not trained) or with EOS appended when the template writes none. The
prompt and the response are tokenized separately, exactly as generation sees them: prompt tokens, then
generated tokens.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..config import ConfigError
from ..records import RecordError, text_hash

IGNORE_INDEX = -100  # label of a token the loss skips (PyTorch CrossEntropyLoss ignore_index)

# Used when the student has no chat template (a base model): plain text markers, so no new token (and no
# embedding resize) is needed. Saved with the adapter, so inference renders prompts the same way.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '### Response:\\n' + message['content'] + eos_token + '\\n\\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\\n' }}{% endif %}"
)


def load_examples(data: str | Path, user_template: str = "user_turn", system: str | None = None) -> list[dict]:
    """Training examples ({id, instruction, input, output, system, messages}) from a stage folder or records
    file, read exactly as `gen export` reads them (`export.read_examples`): the record's system prompt (or
    `system`) as a leading system turn, a multi-turn conversation refused by the reader, a `gen instructions`
    folder followed to its finished `gen instances` stage."""
    from ..export import read_examples, unique_ids

    examples, tasks, data = read_examples(data, user_template, system)
    if not examples:
        raise RecordError(data, None, f"no training example: none of its {len(tasks)} records is kept with a "
                                      "non-empty output")
    unique_ids(examples)  # the held-out split goes by id: a repeated one would drop its twin from training
    return examples


def fingerprint(examples: Sequence[dict]) -> str:
    """A short hash of the examples' ids and turns: a changed dataset is a different run. (The turns are joined
    as before system prompts existed, so an unchanged dataset without one keeps its fingerprint.)"""
    return text_hash(*("\x1e".join([e["id"], *(m["content"] for m in e["messages"] if m["role"] != "assistant"),
                                     e["output"]]) for e in examples))


def set_chat_template(tokenizer, path: str | None = None) -> str:
    """Give the tokenizer the chat template training uses; returns where it came from: the file, "student"
    (its own) or "default" (DEFAULT_CHAT_TEMPLATE, for a model without one)."""
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"chat_template {p}: no such file")
        tokenizer.chat_template = p.read_text(encoding="utf-8")
        return str(p)
    if getattr(tokenizer, "chat_template", None):
        return "student"
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    return "default"


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The prompt text for the turns before the assistant's, ending with the generation prompt."""
    return tokenizer.apply_chat_template([m for m in messages if m["role"] != "assistant"], tokenize=False,
                                         add_generation_prompt=True)


def render_example(tokenizer, messages: list[dict]) -> tuple[str, str]:
    """(prompt, response) text of one example as training sees it: the prompt ends with the generation prompt;
    the response is what the template adds for the assistant turn, cut after its first EOS (the newline ChatML
    writes after `<|im_end|>` is never generated) or with EOS appended when the template writes none. What
    `gen export --format text | prompt-completion-text` writes; `encode` tokenizes the same split."""
    prompt, response = _split(tokenizer, messages)
    eos = tokenizer.eos_token
    return prompt, (response[: response.index(eos) + len(eos)] if eos in response else response + eos)


def _split(tokenizer, messages: list[dict]) -> tuple[str, str]:
    """(prompt, the rest of the rendered conversation); refuses a template whose prompt is not a prefix of the
    whole conversation, and a tokenizer without EOS."""
    prompt = render_prompt(tokenizer, messages)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise ConfigError("the chat template's prompt (add_generation_prompt=True) is not a prefix of the full "
                          "conversation, so prompt and response cannot be told apart; pass chat_template with "
                          "a template where it is")
    if tokenizer.eos_token_id is None:
        raise ConfigError("the student's tokenizer has no EOS token; training could not teach it to stop")
    return prompt, full[len(prompt):]


def encode(tokenizer, messages: list[dict], max_length: int) -> dict:
    """Token ids and labels of one example (pure given the tokenizer).

    Returns {input_ids, labels, length, truncated}: labels are IGNORE_INDEX on the prompt and equal to the ids
    on the response, which ends with EOS; `length` is the untruncated length; the first `max_length` tokens are
    kept."""
    prompt, response = _split(tokenizer, messages)
    eos = tokenizer.eos_token_id
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if eos in response_ids:
        response_ids = response_ids[: response_ids.index(eos) + 1]
    else:
        response_ids = response_ids + [eos]
    ids = prompt_ids + response_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + response_ids
    return {"input_ids": ids[:max_length], "labels": labels[:max_length], "length": len(ids),
            "truncated": len(ids) > max_length}


def split_heldout(examples: Sequence[dict], share: float, minimum: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out max(minimum, share * n) examples by task (all instances of a task fall on one side, so no
    held-out instruction was trained on); at least one task is left to train on."""
    by_task: dict[str, list[dict]] = {}
    for e in examples:
        by_task.setdefault(e["instruction"], []).append(e)
    tasks = list(by_task)
    if len(tasks) < 2:
        raise ConfigError(f"DATA has {len(examples)} example(s) from {len(tasks)} task(s): at least two tasks "
                          "are needed, one to train on and one held out for the before/after evaluation")
    random.Random(seed).shuffle(tasks)
    want = max(minimum, round(share * len(examples)))
    held: list[dict] = []
    for t in tasks[:-1]:
        if len(held) >= want:
            break
        held.extend(by_task[t])
    held_ids = {e["id"] for e in held}
    return [e for e in examples if e["id"] not in held_ids], held


@dataclass
class Encoded:
    """Encoded examples and what encoding them found (the preflight report's numbers)."""

    rows: list[dict]  # {input_ids, labels} of examples with at least one trained token
    lengths: list[int]  # untruncated lengths of every example
    truncated: int  # examples longer than max_length
    no_target: int  # examples with no trained token left after truncation (dropped)
    trained_tokens: int
    total_tokens: int  # tokens fed to the model after truncation


def encode_all(tokenizer, examples: Sequence[dict], max_length: int) -> Encoded:
    rows, lengths, truncated, no_target, trained, total = [], [], 0, 0, 0, 0
    for e in examples:
        enc = encode(tokenizer, e["messages"], max_length)
        lengths.append(enc["length"])
        truncated += enc["truncated"]
        n = sum(1 for x in enc["labels"] if x != IGNORE_INDEX)
        if n == 0:
            no_target += 1
            continue
        trained += n
        total += len(enc["input_ids"])
        rows.append({"input_ids": enc["input_ids"], "labels": enc["labels"]})
    return Encoded(rows, lengths, truncated, no_target, trained, total)

"""From task records to training examples: one example per instance, the user turn rendered from a template
file (`templates/user_turn.jinja2` by default), the assistant turn the instance output."""

from __future__ import annotations

from typing import Iterable, Iterator

from .records import Task
from .templates import load_template


def iter_examples(tasks: Iterable[Task], user_template: str = "user_turn") -> Iterator[dict]:
    """Yield {id, instruction, input, output, messages} for every instance with a non-empty output of every
    kept task; a task with no instance yields nothing (it has no answer to train on)."""
    tmpl = load_template(user_template)
    for t in tasks:
        if not t.kept:
            continue
        for j, inst in enumerate(t.instances):
            if not inst.output.strip():
                continue
            user = tmpl.render(instruction=t.instruction, input=inst.input)
            yield {"id": f"{t.id}-{j}" if len(t.instances) > 1 else t.id, "instruction": t.instruction,
                   "input": inst.input, "output": inst.output,
                   "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": inst.output}]}

"""The Alpaca one-pass recipe (Taori et al. 2023, Stanford Alpaca `generate_instruction.py`): one prompt shows 3
seed tasks as numbered (instruction, input, output) items separated by "###" and asks for 20 complete tasks;
the completion is parsed into candidates that carry their instance, so the kept records are exportable without
`gen instances`. The bootstrap loop (`generate_instructions`) does the rest: the 18-word blacklist, ROUGE-L
novelty and dropping the last item of a length-cut completion.
"""

from __future__ import annotations

import re
from typing import Sequence

from ..records import Instance, Task
from ..templates import PromptTemplate
from .bootstrap import Candidate

NOINPUT = "<noinput>"
_FIELD = re.compile(r"(?im)^[ \t#]*(\d+)[ \t]*\.[ \t]*(instruction|input|output)s?[ \t]*:")
_SEPARATOR = re.compile(r"(?m)^[ \t]*#{3,}[ \t]*$")


def _field_text(s: str) -> str:
    return _SEPARATOR.sub("", s).strip()


def parse_alpaca_items(text: str) -> list[Candidate]:
    """Parse numbered "N. Instruction: / N. Input: / N. Output:" items into candidates (pure).

    Every "N. Instruction:" line starts an item, whether or not a "###" line separates it from the previous one;
    text before the first one (a chat preamble) is ignored. `<noinput>` (or a missing Input field) is an empty
    input. An item without an instruction or an output is still returned, with `error` set, so a caller that
    drops the last item of a length-cut completion drops the right one and every drop has a reason."""
    marks = list(_FIELD.finditer(text))
    items: list[dict[str, str]] = []
    for i, m in enumerate(marks):
        kind = m.group(2).lower()
        body = text[m.end(): marks[i + 1].start() if i + 1 < len(marks) else len(text)]
        if kind == "instruction" or not items or kind in items[-1]:
            items.append({})
        items[-1][kind] = _field_text(body)
    out = []
    for it in items:
        inp = it.get("input", "")
        inp = "" if inp.lower() in (NOINPUT, "<no input>") else inp
        instruction, output = it.get("instruction", ""), it.get("output", "")
        error = ("malformed_item" if not instruction or "output" not in it else
                 "empty_output" if not output else None)
        out.append(Candidate(instruction, [Instance(inp, output)] if output or inp else [], error=error))
    return out


class AlpacaRecipe:
    """Alpaca: the prompt shows complete seed tasks; the completion continues the numbered list of triples."""

    name = "alpaca"

    def render(self, template: PromptTemplate, shown: Sequence[Task]):
        tasks = []
        for t in shown:
            inst = t.instances[0] if t.instances else Instance()
            tasks.append({"instruction": t.instruction, "input": inst.input, "output": inst.output})
        return template.render(tasks=tasks)

    def parse(self, template: PromptTemplate, text: str, n_shown: int) -> list[Candidate]:
        # a completion template ends with "N. Instruction:", so the text starts inside item N
        full = text if template.is_chat else f"{n_shown + 1}. Instruction:{text}"
        return parse_alpaca_items(full)

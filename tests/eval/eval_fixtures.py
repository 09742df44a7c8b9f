"""Small literal fixtures shared by the eval tests."""

from __future__ import annotations

import json
from pathlib import Path

# Short IFEval prompts the tiny student answers in milliseconds (lm-eval's instruction ids and kwargs).
IFEVAL_ROWS = [
    {"key": 1, "prompt": "Repeat the word apple three times. Do not use any commas.",
     "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
    {"key": 2, "prompt": "Repeat the word river in lowercase letters only.",
     "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]},
    {"key": 3, "prompt": "Repeat the word stone. Answer with less than 5 words.",
     "instruction_id_list": ["length_constraints:number_words"], "kwargs": [{"relation": "less than", "num_words": 5}]},
    {"key": 4, "prompt": "Repeat the word cloud three times, then end with the phrase 'Is there anything else?'",
     "instruction_id_list": ["startend:end_checker"], "kwargs": [{"end_phrase": "Is there anything else?"}]},
]


def write_ifeval(path: Path, rows=IFEVAL_ROWS) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path

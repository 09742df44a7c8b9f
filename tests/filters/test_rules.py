import pytest

from instructgen.filters.base import run_chain
from instructgen.filters.rules import BlacklistFilter, FirstCharFilter, LengthFilter, PrefixFilter
from instructgen.records import Instance, Task


@pytest.mark.parametrize("text, reason", [
    ("Name three fruits.", "too_short:instruction"),  # 3 words: rejected (Self-Instruct: <= 3)
    ("Name three red fruits.", None),
    (" ".join(["word"] * 150), None),
    (" ".join(["word"] * 151), "too_long:instruction"),
    ("Describe the IMAGES in the article.", "blacklist:images"),
    ("Tell me how to go to the station.", "blacklist:go to"),
    ("Explain the mapping between keys and values.", None),  # word boundary: mapping is not map
    ("Write a program that sorts a list.", "prefix:write_a_program"),
    ("- Give me three ideas for dinner.", "starts_with_punctuation"),
    ("Écris une phrase en français maintenant.", "starts_non_ascii"),
])
def test_self_instruct_rules(text, reason):
    chain = [LengthFilter(), BlacklistFilter(), FirstCharFilter(), PrefixFilter()]  # each from its default Params
    tasks, stats = run_chain(chain, [Task(id="t", instruction=text)])
    assert tasks[0].verdict.reason == reason
    assert sum(sum(s.dropped.values()) for s in stats) == (reason is not None)


def test_fields_are_configurable():
    t = Task(id="t", instruction="A perfectly fine instruction.", instances=[Instance("x", "See the map.")])
    assert BlacklistFilter.of(fields=["output"]).score_batch([t]) == ["blacklist:map"]
    assert LengthFilter.of(min_words=1, max_words=2, fields=["input"]).score_batch([t]) == [None]

import math

import pytest

from instructgen.report.text import (flesch_reading_ease, leading_boilerplate, syllables, token_counter, verb_object,
                                     word_count)


@pytest.mark.parametrize("text, expected", [
    ("Write a poem about the sea.", ("write", "poem")),
    ("Given a list of numbers, find the largest number.", ("find", "number")),
    ("Can you tell me a joke?", ("tell", "joke")),
    ("Please summarize the following article in two sentences.", ("summarize", "article")),
    ("Classify the sentiment of the tweet.", ("classify", "sentiment")),
    ("Give me three examples of metaphors.", ("give", "example")),
    ("Generate stories for children.", ("generate", "story")),
    ("Summarize the news.", ("summarize", "news")),
    ("Sort these numbers: 3, 1, 2", ("sort", "number")),
    ("Explain how rainbows form.", ("explain", None)),
    ("Answer the following question about history.", ("answer", "question")),
    ("Question: who wrote Hamlet?", (None, None)),
    ("What is the capital of France?", (None, None)),
    ("In this task, you are given a sentence.", (None, None)),
    ("The following sentence has an error.", (None, None)),
    ("", (None, None)),
    ("1. Do it", (None, None)),
    ("Instruction: Write a haiku about rain.", ("write", "haiku")),  # a field label is not the verb
    ("Toolformer: Find the weather in Paris.", ("find", "weather")),
])
def test_verb_object(text, expected):
    assert verb_object(text) == expected


def test_syllables_and_flesch():
    assert [syllables(w) for w in ("the", "make", "table", "beautiful", "rhythm")] == [1, 1, 2, 3, 1]
    easy = flesch_reading_ease("The cat sat on the mat. It was a good day.")
    hard = flesch_reading_ease("Institutional epistemological considerations necessitate comprehensive "
                               "methodological reconceptualization of interdisciplinary collaborations.")
    assert easy > 90 and hard < 0
    # the formula itself: 2 sentences, 11 words, 11 syllables
    assert easy == pytest.approx(206.835 - 1.015 * 11 / 2 - 84.6 * 11 / 11)
    assert flesch_reading_ease("123 456") is None


def test_token_counter_uses_a_local_tokenizer_else_estimates(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    tok = Tokenizer(models.WordLevel({"hello": 0, "world": 1, "[UNK]": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    exact = token_counter(str(tmp_path))
    assert exact.exact and exact.count(["hello world", "hello there friend"]) == [2, 3]
    est = token_counter(str(tmp_path / "nothing-here"))
    assert not est.exact and "estimate" in est.name
    assert est.count(["abcdefghi", ""]) == [math.ceil(9 / 4), 0]
    assert word_count("  two   words ") == 2


def test_leading_boilerplate_is_found_and_cut():
    texts = [f"Toolformer can call external APIs.\n{v} item {i}." for i, v in
             enumerate(["Find", "Write", "Give", "List"] * 3)] + ["Write a poem."]
    boiler = leading_boilerplate(texts)
    assert boiler == ["Toolformer can call external APIs.\n"]
    assert verb_object(texts[0]) == ("toolformer", "can") and verb_object(texts[0], boiler) == ("find", "item")
    assert verb_object("Write a poem.", boiler) == ("write", "poem")
    # an instruction set that merely shares its verbs has no boilerplate; nor does a lone repeated sentence
    assert leading_boilerplate(["Write a poem.", "Write a story.", "Write a song.", "Give a list."]) == []
    assert leading_boilerplate(["Hello.", "Hello.", "Hello."]) == []  # nothing would be left after it

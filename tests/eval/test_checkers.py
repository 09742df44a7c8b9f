"""IFBench's and IFEval's own checkers, run offline: verdicts on hand-written answers, the floor, the shims."""

from __future__ import annotations

import sys

import pytest

from instructgen.eval import checkers as C
from instructgen.eval.suites import load_suite


@pytest.fixture(scope="module")
def ifbench():
    return C.Checkers("ifbench")


@pytest.fixture(scope="module")
def ifeval():
    return C.Checkers("ifeval")


@pytest.fixture(scope="module")
def ifbench_items():
    return {it["id"]: it["example"] for it in load_suite("ifbench").items}


# (IFBench key, instruction, answer that follows it, answer that does not)
IFBENCH_CASES = [
    ("0", "count:keywords_multiple", "kaleidoscope " + "nebula " * 2 + "whisper " * 3 + "labyrinth " * 5 +
     "paradox " * 7, "Burning it all down is never the answer; build something better instead."),
    ("288", "format:title_case", "The Ohio Remnant Republic. Dr. Smith Leads The Farmers Of Columbus.",
     "The Ohio Remnant republic is led by farmers."),
    ("296", "format:no_whitespace", "No.Setsareclassesinclasstheoriesbutnotallclassesaresets.",
     "No. Every set is a class, but not every class is a set."),
    ("45", "count:word_count_range", " ".join(["word"] * 40), "Too short."),
    ("83", "format:list", "Preludes: short pieces!?!?Caprichos: free-form pieces!?!?Romances: lyrical songs",
     "- Preludes\n- Caprichos"),
]


@pytest.mark.parametrize("key,iid,good,bad", IFBENCH_CASES, ids=[c[1] for c in IFBENCH_CASES])
def test_ifbench_verdicts(ifbench, ifbench_items, key, iid, good, bad):
    ex = ifbench_items[key]
    assert ex["instruction_id_list"] == [iid]
    assert ifbench.check(ex, good) == ([True], [True])
    assert ifbench.check(ex, bad) == ([False], [False])


def test_ifbench_loose_forgives_a_preamble_line_and_strict_does_not(ifbench, ifbench_items):
    assert ifbench.check(ifbench_items["296"], "Here you go:\nNo.Everysetisaclass.") == ([False], [True])


def test_ifbench_check_leaves_the_suite_example_intact(ifbench, ifbench_items):
    ex = ifbench_items["83"]
    nones = sum(v is None for v in ex["kwargs"][0].values())
    ifbench.check(ex, "a!?!?b")
    ifbench.check(ex, "a!?!?b")  # strict strips None kwargs in place: on our copy only, so twice is the same
    assert sum(v is None for v in ex["kwargs"][0].values()) == nones > 0


IFEVAL_CASES = [
    ({"key": 1, "instruction_id_list": ["length_constraints:number_sentences"], "prompt": "Fewer than 3 sentences.",
      "kwargs": [{"num_sentences": 3, "relation": "less than"}]},
     "Ohio is in the U.S. Midwest. Its capital is Columbus, home of Dr. Brown.",  # punkt: "U.S." and "Dr." stay
     "Ohio is a state. It is flat. It has lakes. It has cities."),
    ({"key": 2, "instruction_id_list": ["change_case:capital_word_frequency"], "prompt": "At least 2 all-caps words.",
      "kwargs": [{"capital_frequency": 2, "capital_relation": "at least"}]},
     "This is VERY IMPORTANT news.", "This is Very important news."),
    ({"key": 3, "instruction_id_list": ["punctuation:no_comma"], "prompt": "No commas.", "kwargs": [{}]},
     "The weather is sunny and warm.", "The weather is sunny, warm and dry."),
    ({"key": 4, "instruction_id_list": ["language:response_language"], "prompt": "Answer in English.",
      "kwargs": [{"language": "en"}]},
     "The weather today is sunny and warm across the whole region.",
     "Hoy el tiempo es soleado y cálido en toda la región."),
]


@pytest.mark.parametrize("ex,good,bad", IFEVAL_CASES, ids=[c[0]["instruction_id_list"][0] for c in IFEVAL_CASES])
def test_ifeval_verdicts(ifeval, ex, good, bad):
    assert ifeval.check(ex, good) == ([True], [True])
    assert ifeval.check(ex, bad) == ([False], [False])


def test_score_four_numbers_per_type_and_floor(ifeval):
    exs = [c[0] for c in IFEVAL_CASES]
    s = C.score(ifeval, exs, ["This is VERY IMPORTANT news.", "This is VERY IMPORTANT news.",
                              "This is VERY IMPORTANT news.", "This is VERY IMPORTANT news."])
    # sentences < 3 yes, caps yes, no comma yes, English yes
    assert s["metrics"] == {"prompt_level_strict": 1.0, "inst_level_strict": 1.0, "prompt_level_loose": 1.0,
                            "inst_level_loose": 1.0}
    # the floor answer "I cannot help with that." is one sentence, no comma, English, no capital word
    assert s["floor"]["answer"] == C.FLOOR_ANSWER == "I cannot help with that."
    assert s["floor"]["prompt_level_strict"] == 0.75
    assert s["per_instruction"]["change_case:capital_word_frequency"] == {
        "n": 1, "strict": 1.0, "loose": 1.0, "floor_strict": 0.0, "floor_loose": 0.0}
    assert (s["n_prompts"], s["n_scored"], s["n_unscored"]) == (4, 4, 0)


def test_empty_answer_follows_nothing(ifeval):
    s = C.score(ifeval, [IFEVAL_CASES[2][0]], [""])  # "no commas" holds for "", but a blank answer never passes
    assert s["metrics"]["prompt_level_strict"] == 0.0


def test_instruction_level_counts_each_instruction(ifeval):
    ex = {"key": 9, "instruction_id_list": ["punctuation:no_comma", "change_case:english_lowercase"],
          "prompt": "p", "kwargs": [{}, {}]}
    s = C.score(ifeval, [ex], ["No Commas Here."])
    assert s["metrics"]["prompt_level_strict"] == 0.0 and s["metrics"]["inst_level_strict"] == 0.5


def test_stopwords_prompts_are_unscored_offline(ifbench, ifbench_items):
    import nltk
    try:
        nltk.data.find("corpora/stopwords")
        pytest.skip("this machine has NLTK's stopwords corpus, so ratio:stop_words is scoreable")
    except LookupError:
        pass
    key = next(k for k, ex in ifbench_items.items() if ex["instruction_id_list"] == ["ratio:stop_words"])
    s = C.score(ifbench, [ifbench_items[key], ifbench_items["296"]], ["some answer", "No.Sets."])
    assert s["n_unscored"] == 1 and s["unscored"][0]["key"] == key
    assert "stopwords" in s["unscored"][0]["reason"]
    assert s["n_scored"] == 1 and s["metrics"]["prompt_level_strict"] == 1.0


def test_a_checker_crash_counts_as_not_followed(ifeval, monkeypatch):
    cls = ifeval.registry["punctuation:no_comma"]
    monkeypatch.setattr(cls, "check_following", lambda self, value: 1 / 0)
    s = C.score(ifeval, [IFEVAL_CASES[2][0]], ["fine answer"])
    assert s["metrics"]["prompt_level_strict"] == 0.0
    assert s["checker_errors"][0]["error"].startswith("ZeroDivisionError")


def test_punkt_is_built_atomically_from_the_package(tmp_path, monkeypatch):
    root = C.ensure_punkt(tmp_path / "nltk_data")
    english = root / "tokenizers" / "punkt_tab" / "english"
    assert sorted(p.name for p in english.iterdir()) == sorted(C.PUNKT_FILES)
    assert (root / "tokenizers" / "punkt").is_dir()
    assert not [p for p in english.parent.iterdir() if p.name.endswith(".tmp")]
    # the sizes of NLTK's own punkt_tab/english files
    assert (english / "abbrev_types.txt").stat().st_size == 619
    assert (english / "sent_starters.txt").stat().st_size == 241
    assert (english / "ortho_context.tab").stat().st_size == 236303
    import nltk
    from nltk.data import FileSystemPathPointer
    monkeypatch.setattr(nltk.data, "path", [str(root)] + nltk.data.path)  # nltk reads only from its data roots
    from nltk.tokenize.punkt import PunktSentenceTokenizer, load_punkt_params
    tok = PunktSentenceTokenizer(load_punkt_params(FileSystemPathPointer(str(english))))
    assert tok.tokenize("Dr. Smith went to Washington. He was tired.") == [
        "Dr. Smith went to Washington.", "He was tired."]
    assert C.ensure_punkt(root) == root  # a second call is a no-op


def test_offline_restores_the_downloaders():
    import nltk
    before = nltk.download
    with C.offline():
        assert nltk.download("punkt_tab") is True  # a no-op: nothing is fetched
    assert nltk.download is before
    assert "spacy" not in sys.modules or hasattr(sys.modules["spacy"], "__file__")  # no stub left behind

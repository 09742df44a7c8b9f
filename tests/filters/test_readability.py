import pytest

from instructgen.filters.readability import ReadabilityFilter, ensure_cmudict
from instructgen.records import Instance, Task


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    import nltk
    monkeypatch.setattr(nltk, "download", lambda *a, **k: pytest.fail("nltk.download called"))


def test_cmudict_is_provided_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCTGEN_CACHE", str(tmp_path))
    import nltk
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])
    root = ensure_cmudict()
    assert root == tmp_path / "nltk_data" and (root / "corpora" / "cmudict" / "cmudict").stat().st_size > 1_000_000
    assert ensure_cmudict() is None  # found on the second call


def test_scores_are_stored_and_only_unreadable_text_is_dropped():
    f = ReadabilityFilter.of(min_reading_ease=-40, max_grade=30, min_words=12, fields=["instruction", "output"])
    f.prepare({})
    plain = Task(id="a", instruction="Write a short story about a dog who finds his way home after a storm.",
                 instances=[Instance("", "ok")])
    soup = Task(id="b", instruction=" ".join(["institutionalization internationalization"] * 20))
    short = Task(id="c", instruction="Antidisestablishmentarianism explained.")
    tasks = f.apply([plain, soup, short])
    assert [t.kept for t in tasks] == [True, False, True]
    assert plain.scores["reading_ease_instruction"] > 50 and "grade_output" in plain.scores
    assert soup.verdict.reason == "reading_ease<-40:instruction"
    assert short.scores["reading_ease_instruction"] < -40  # scored, but too short to judge

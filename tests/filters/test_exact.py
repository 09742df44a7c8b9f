from instructgen.filters.exact import ExactDedupFilter, normalize
from instructgen.records import Instance, Task


def test_normalize_ignores_case_punctuation_spacing_and_width():
    assert normalize("Hello,  World!") == normalize("hello world") == "hello world"
    assert normalize("Ｃａｆé — “ok”") == "café ok"  # NFKC folds full-width letters
    assert normalize("a+b") == "a b" and normalize("") == ""


def test_first_copy_is_kept_and_named():
    tasks = [Task(id="a", instruction="Name a colour."), Task(id="b", instruction="name a colour"),
             Task(id="c", instruction="Name a color."),
             Task(id="d", instruction="Name a colour.", instances=[Instance("warm", "red")])]
    ExactDedupFilter.of(fields=["instruction", "input"]).apply(tasks)
    assert [t.kept for t in tasks] == [True, False, True, True]
    assert tasks[1].verdict.duplicate_of == "a" and tasks[1].verdict.reason == "exact_duplicate"

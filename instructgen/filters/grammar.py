"""Grammar: LanguageTool issues per 100 words (language_tool_python), against a LanguageTool server or a local
install. Nothing is ever downloaded: language_tool_python fetches a LanguageTool zip when asked for a local
server it does not find, so a local server is started only when an installed one is found (LTP_JAR_DIR_PATH, or
a LanguageTool-* folder under LTP_PATH / ~/.cache/language_tool_python) and Java is on PATH.

When the filter is enabled and no LanguageTool is reachable, `prepare` stops the run before any work with a
message saying how to provide one; with `on_missing: skip` the run goes on and the stats note says
"skipped: LanguageTool not reachable" - never a silent pass.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..records import Task
from .base import Decision, RecordFilter, SelectParams, doc, field_texts

ENV_URL = "LANGUAGETOOL_URL"
SKIPPED_NOTE = "skipped: LanguageTool not reachable"
HOW_TO = ("Provide one: run a LanguageTool server (e.g. `java -cp languagetool-server.jar "
          "org.languagetool.server.HTTPServer --port 8081`, or the erikvl87/languagetool Docker image) and pass "
          f"--languagetool-url http://localhost:8081 or set {ENV_URL}; or install LanguageTool locally with Java "
          "(LTP_JAR_DIR_PATH or LTP_PATH, see language_tool_python); or set `on_missing: skip` or "
          "`enabled: false` on the grammar filter in your --config.")


class GrammarUnavailable(RuntimeError):
    pass


def issues_per_100_words(matches: Iterable, text: str, ignore_categories: Sequence[str] = (),
                         ignore_rules: Sequence[str] = ()) -> tuple[float, int]:
    """(issues per 100 words, issues counted) for LanguageTool matches on `text` (objects with `category` and
    `rule_id`, as language_tool_python's `Match`), leaving out the ignored categories and rules."""
    cats, rules = set(ignore_categories), set(ignore_rules)
    n = sum(1 for m in matches if m.category not in cats and m.rule_id not in rules)
    words = len(text.split())
    return (100.0 * n / words if words else 0.0), n


def normalize_url(url: str) -> str:
    """Server root: language_tool_python appends /v2/ itself, so a trailing /v2 or /v2/ is removed."""
    url = url.strip().rstrip("/")
    return url[: -len("/v2")] if url.endswith("/v2") else url


def probe(url: str, timeout: float) -> str | None:
    """None when `url` answers LanguageTool's /v2/languages with a JSON list, else why not."""
    try:
        with urllib.request.urlopen(normalize_url(url) + "/v2/languages", timeout=timeout) as r:
            data = json.loads(r.read().decode("utf-8"))
        return None if isinstance(data, list) else "unexpected answer to /v2/languages"
    except (urllib.error.URLError, OSError, ValueError) as e:
        return str(getattr(e, "reason", e))


def local_install() -> str | None:
    """The installed LanguageTool version language_tool_python would use, or None (never downloads)."""
    if shutil.which("java") is None:
        return None
    if os.environ.get("LTP_JAR_DIR_PATH"):
        return "jar_dir"
    root = Path(os.environ.get("LTP_PATH", Path.home() / ".cache" / "language_tool_python"))
    if not root.is_dir() or not any(root.glob("LanguageTool*")):
        return None
    from language_tool_python.download_lt import LocalLanguageTool
    latest = LocalLanguageTool.get_latest_installed_version()
    return latest.version_name if latest else None


@dataclass
class GrammarParams(SelectParams):
    max_issues_per_100_words: float = doc("drop a field with more LanguageTool issues per 100 words", default=5.0)
    url: str | None = doc(f"LanguageTool server root (http://host:8081); None = --languagetool-url, then "
                          f"${ENV_URL}, then a local install", default=None)
    on_missing: str = doc("error: stop before any work when no LanguageTool is reachable | skip: run without "
                          "this filter and say so in the stats", default="error")
    language: str = doc("LanguageTool language code", default="en-US")
    ignore_categories: list[str] = doc("LanguageTool categories not counted (TYPOS: names, jargon and code "
                                       "identifiers trip the spell checker)", default_factory=lambda: ["TYPOS"])
    ignore_rules: list[str] = doc("LanguageTool rule ids not counted", default_factory=list)
    min_words: int = doc("fields with fewer words are scored but never dropped", default=5)
    workers: int = doc("concurrent requests to the server", default=4)
    timeout_s: float = doc("seconds to wait for the server to answer the reachability probe", default=5.0)
    fields: list[str] = doc("fields checked, each on its own", default_factory=lambda: ["instruction"])


class GrammarFilter(RecordFilter):
    """Drop a field with more than `max_issues_per_100_words` LanguageTool issues per 100 words. Stores
    `grammar_issues_per_100_words_<field>` (the worst instance); `keep_top` ranks by the first field's rate
    (lower: better)."""

    name = "grammar"
    writes = ("grammar_issues_per_100_words_{f}",)
    Params = GrammarParams
    higher_is_better = False

    @property
    def score_key(self) -> str:
        return f"grammar_issues_per_100_words_{self.fields[0]}"

    def setup(self) -> None:
        if self.p.on_missing not in ("error", "skip"):
            raise ValueError(f"on_missing must be 'error' or 'skip', got {self.p.on_missing!r}")
        if self.p.workers < 1:
            raise ValueError("workers must be at least 1")
        self.tool = None
        self.note = None
        self.where: str | None = None

    def connect(self, url: str | None) -> None:
        """Open a LanguageTool client (remote `url`, else a local install); raises GrammarUnavailable."""
        import language_tool_python
        if url:
            why = probe(url, self.p.timeout_s)
            if why:
                raise GrammarUnavailable(f"LanguageTool server {url} is not reachable ({why}).")
            self.tool = language_tool_python.LanguageTool(self.p.language, remote_server=normalize_url(url))
            self.where = self.details["server"] = normalize_url(url)
            return
        version = local_install()
        if version is None:
            raise GrammarUnavailable(f"no LanguageTool server given (--languagetool-url, ${ENV_URL} or `url:`) "
                                     "and no local LanguageTool install with Java found.")
        kw = {} if version == "jar_dir" else {"language_tool_download_version": version}
        self.tool = language_tool_python.LanguageTool(self.p.language, **kw)
        self.where = self.details["server"] = f"local LanguageTool {version}"

    def prepare(self, ctx: dict) -> None:
        from ..config import ConfigError
        url = self.p.url or ctx.get("languagetool_url") or os.environ.get(ENV_URL)
        try:
            self.connect(url)
        except GrammarUnavailable as e:
            if self.p.on_missing == "skip":
                self.note = SKIPPED_NOTE
                return
            raise ConfigError(f"grammar filter: {e} {HOW_TO}") from None

    def close(self) -> None:
        if self.tool is not None:
            self.tool.close()
            self.tool = None

    def score(self, text: str) -> float:
        rate, _ = issues_per_100_words(self.tool.check(text), text, self.p.ignore_categories, self.p.ignore_rules)
        return rate

    def score_batch(self, tasks: list[Task]) -> list[Decision]:
        if self.tool is None:
            if self.note == SKIPPED_NOTE:
                return [None] * len(tasks)
            raise RuntimeError("GrammarFilter.apply before prepare(): no LanguageTool connected")
        jobs = [(i, f, text) for i, t in enumerate(tasks) for f in self.fields for text in field_texts(t, f)
                if text.strip()]
        with ThreadPoolExecutor(self.p.workers) as pool:  # requests wait on the server, not on this CPU
            rates = list(pool.map(lambda job: self.score(job[2]), jobs))
        reasons: dict[int, str] = {}
        worst: dict[tuple[int, str], float] = {}
        limit = self.p.max_issues_per_100_words
        for (i, f, text), rate in zip(jobs, rates):
            worst[i, f] = max(rate, worst.get((i, f), 0.0))
            if i not in reasons and rate > limit and len(text.split()) >= self.p.min_words:
                reasons[i] = f"grammar>{limit:g}/100w:{f}"
        for (i, f), rate in worst.items():
            tasks[i].scores[f"grammar_issues_per_100_words_{f}"] = rate
        return [reasons.get(i) for i in range(len(tasks))]

"""Grammar: scoring on LanguageTool-shaped matches through the real client against a local HTTP server that
speaks LanguageTool's /v2 API, and the unreachable paths for real (nothing is ever downloaded)."""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from instructgen.config import ConfigError
from instructgen.filters.grammar import (SKIPPED_NOTE, GrammarFilter, issues_per_100_words, local_install,
                                         normalize_url)
from instructgen.records import Task


def lt_match(text: str, word: str, category="GRAMMAR", rule="SOME_RULE") -> dict:
    """One match in LanguageTool's /v2/check JSON shape."""
    off = text.index(word)
    return {"message": f"Possible error: {word}", "shortMessage": "", "replacements": [{"value": "the"}],
            "offset": off, "length": len(word),
            "context": {"text": text[:80], "offset": off, "length": len(word)}, "sentence": text,
            "type": {"typeName": "Other"},
            "rule": {"id": rule, "description": "d", "issueType": "grammar", "category": {"id": category, "name": "c"}},
            "ignoreForIncompleteSentence": False, "contextForSureMatch": 0}


class FakeLanguageTool(BaseHTTPRequestHandler):
    """Answers /v2/languages and /v2/check; every 'teh' is a GRAMMAR issue, every 'speling' a TYPOS issue."""
    checked: list[str] = []

    def _send(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/v2/languages"):
            return self._send([{"name": "English (US)", "code": "en", "longCode": "en-US"}])
        self.send_error(404)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        form = urllib.parse.parse_qs(self.rfile.read(n).decode())
        text = form["text"][0]
        FakeLanguageTool.checked.append(text)
        matches = [lt_match(text, "teh") for _ in range(text.split().count("teh"))]
        matches += [lt_match(text, "speling", category="TYPOS", rule="MORFOLOGIK_RULE_EN_US")
                    for _ in range(text.split().count("speling"))]
        self._send({"software": {"name": "LanguageTool"}, "language": {"code": "en-US"}, "matches": matches})

    def log_message(self, *a):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeLanguageTool)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    FakeLanguageTool.checked = []
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def never_download(monkeypatch):
    from language_tool_python import download_lt
    monkeypatch.setattr(download_lt.ReleaseLocalLanguageTool, "download",
                        lambda self: pytest.fail("LanguageTool download attempted"))
    monkeypatch.delenv("LANGUAGETOOL_URL", raising=False)


def test_issue_rate_counts_matches_per_100_words_minus_ignored():
    m = [SimpleNamespace(category="GRAMMAR", rule_id="A"), SimpleNamespace(category="TYPOS", rule_id="B"),
         SimpleNamespace(category="STYLE", rule_id="C")]
    text = " ".join(["word"] * 50)
    assert issues_per_100_words(m, text) == (6.0, 3)
    assert issues_per_100_words(m, text, ignore_categories=["TYPOS"], ignore_rules=["C"]) == (2.0, 1)
    assert issues_per_100_words([], "") == (0.0, 0)


def test_url_normalisation():
    assert normalize_url("http://h:8081/v2/") == normalize_url("http://h:8081") == "http://h:8081"


def test_scores_and_drops_through_the_real_client(server):
    f = GrammarFilter.of(max_issues_per_100_words=10, min_words=5, workers=2)
    f.prepare({"languagetool_url": server + "/v2"})
    good = Task(id="a", instruction="Please write a short note to teh team about the plan.")  # 1 in 11 words
    bad = Task(id="b", instruction="teh cat sat on teh mat with teh hat")  # 3 in 9 words
    typo = Task(id="c", instruction="Write a speling speling speling test for the class today.")  # TYPOS ignored
    short = Task(id="d", instruction="teh teh")
    f.apply([good, bad, typo, short])
    assert [t.kept for t in (good, bad, typo, short)] == [True, False, True, True]
    assert good.scores["grammar_issues_per_100_words_instruction"] == pytest.approx(100 / 11)
    assert bad.verdict.reason == "grammar>10/100w:instruction"
    assert typo.scores["grammar_issues_per_100_words_instruction"] == 0.0
    assert short.scores["grammar_issues_per_100_words_instruction"] == 100.0  # scored, too short to judge
    assert len(FakeLanguageTool.checked) == 4 and f.note is None


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_server_stops_before_work_with_how_to():
    f = GrammarFilter.of(url=f"http://127.0.0.1:{free_port()}", timeout_s=2)
    with pytest.raises(ConfigError, match="not reachable.*--languagetool-url.*on_missing: skip"):
        f.prepare({})


def test_no_server_and_no_local_install_is_an_error_without_download(monkeypatch, tmp_path):
    monkeypatch.setenv("LTP_PATH", str(tmp_path / "nothing"))
    monkeypatch.delenv("LTP_JAR_DIR_PATH", raising=False)
    assert local_install() is None
    with pytest.raises(ConfigError, match="no local LanguageTool"):
        GrammarFilter.of().prepare({})
    assert not (tmp_path / "nothing").exists()


def test_on_missing_skip_runs_and_says_so(monkeypatch):
    f = GrammarFilter.of(url=f"http://127.0.0.1:{free_port()}", on_missing="skip", timeout_s=2)
    f.prepare({})
    tasks = [Task(id="a", instruction="teh teh teh teh teh teh")]
    assert f.apply(tasks) == tasks and tasks[0].kept and f.note == SKIPPED_NOTE
    assert not tasks[0].scores

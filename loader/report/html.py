"""The report as one self-contained HTML page: figures embedded as data URIs, inline CSS,
no script and no external resource, so that it opens from disk with no server or network."""

from __future__ import annotations

import base64
import json
import re
import struct
from html import escape
from itertools import groupby

import numpy as np
import pandas as pd

from .data import ExperimentData
from .plotting import SavedFigure

STYLE = """
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 0 24px 48px; color: #1b1b1b; line-height: 1.45; }
h1 { margin: 24px 0 4px; } h2 { border-bottom: 2px solid #d0d7de; padding-bottom: 4px; margin-top: 40px; }
h3 { margin-top: 28px; } nav ul { columns: 2; } code, pre { font-family: "DejaVu Sans Mono", monospace; }
pre { background: #f6f8fa; padding: 12px; overflow-x: auto; font-size: 12px; max-height: 480px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: right; vertical-align: top; }
th { background: #f6f8fa; text-align: center; } td { text-align: left; } td.n { text-align: right; }
table.facts th { text-align: left; } .wide { overflow-x: auto; }
figure { margin: 16px 0 28px; } figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { font-size: 13px; color: #444; margin-top: 4px; }
.verdict { padding: 10px 14px; border-radius: 6px; font-weight: bold; margin: 8px 0; }
.ok { background: #dafbe1; border: 1px solid #2da44e; } .bad { background: #ffebe9; border: 1px solid #cf222e; }
.none { background: #f6f8fa; border: 1px solid #8c959f; } .note { color: #555; font-size: 13px; }
"""


def _png_size(png: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def figure_html(saved: SavedFigure) -> str:
    width, height = _png_size(saved.png)
    data = base64.b64encode(saved.png).decode("ascii")
    return (f'<figure id="fig-{escape(saved.name)}"><img src="data:image/png;base64,{data}" width="{width}" '
            f'height="{height}" alt="{escape(saved.title)}">'
            f'<figcaption><b>{escape(saved.title)}.</b> {escape(saved.caption)} '
            f'<a href="{escape(saved.name)}.png">PNG</a> · <a href="{escape(saved.name)}.svg">SVG</a></figcaption>'
            f'</figure>')


_NUMERIC = re.compile(r"^[-−+]?[\d.,]+(e[-+]?\d+)?( ?%)?$")


def _cell(value: object) -> str:
    """A value as shown: – for missing, floats to 4 significant digits (whole above 1,000)."""
    if value is None or (not isinstance(value, (str, bytes, list, dict, tuple)) and pd.isna(value)):
        return "–"
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return f"{number:,.0f}" if abs(number) >= 1000 else f"{number:.4g}"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _td(value: object) -> str:
    text = _cell(value)
    if isinstance(value, str):
        numeric = _NUMERIC.match(value) is not None
    else:
        numeric = text != "–" and not isinstance(value, bool) and isinstance(value, (int, float, np.number))
    return f'<td class="n">{escape(text)}</td>' if numeric else f"<td>{escape(text)}</td>"


def table_html(table: pd.DataFrame) -> str:
    """A table with numbers right-aligned; two header rows when the columns are (group, name) pairs."""
    if table.empty:
        return '<p class="note">(none)</p>'
    if isinstance(table.columns, pd.MultiIndex):
        top, bottom = [], []
        for group, members in groupby(table.columns, key=lambda c: c[0]):
            names = list(members)
            if len(names) == 1 and not names[0][1]:
                top.append(f'<th rowspan="2">{escape(str(group))}</th>')
            else:
                top.append(f'<th colspan="{len(names)}">{escape(str(group))}</th>')
                bottom += [f"<th>{escape(str(n[1]))}</th>" for n in names]
        head = f"<tr>{''.join(top)}</tr><tr>{''.join(bottom)}</tr>"
    else:
        head = "<tr>" + "".join(f"<th>{escape(str(c))}</th>" for c in table.columns) + "</tr>"
    body = "".join("<tr>" + "".join(_td(v) for v in row) + "</tr>" for row in table.itertuples(index=False))
    return f'<div class="wide"><table><thead>{head}</thead><tbody>{body}</tbody></table></div>'


def facts_html(rows: list[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(_cell(v))}</td></tr>" for k, v in rows)
    return f'<table class="facts">{body}</table>'


def verdict_html(data: ExperimentData) -> str:
    stored = data.stored_verdict
    if stored is not None:
        source = "stored by the loader at the end of the run"
        reproduced, breaches = stored.get("reproduced"), [b.get("text", "") for b in stored.get("breaches", [])]
        judged = bool(stored.get("thresholds"))
    else:
        source = "computed from the runs with the thresholds stored in the experiment's configuration"
        reproduced, breaches = data.verdict.reproduced, [b.text for b in data.verdict.breaches]
        judged = data.verdict.thresholds.any
    if not judged:
        banner = ('<div class="verdict none">No thresholds (injection:fail_on) were configured: '
                  'judge the figures below yourself.</div>')
    elif reproduced:
        banner = '<div class="verdict ok">Reproduced the trace within injection:fail_on.</div>'
    else:
        banner = ('<div class="verdict bad">Did NOT reproduce the trace: '
                  + escape("; ".join(breaches)) + "</div>")
    return f'{banner}<p class="note">Verdict {escape(source)}.</p>'


def provenance_rows(data: ExperimentData) -> list[tuple[str, object]]:
    experiment, runs = data.experiment, data.runs
    config = experiment.config or {}
    summary = experiment.summary or {}
    rows: list[tuple[str, object]] = [
        ("experiment", f"{experiment.name} (id {experiment.experiment_id})"),
        ("mode", experiment.mode), ("description", experiment.description or "–"),
        ("started at", experiment.started_at), ("ended at", experiment.ended_at or "not ended (running or crashed)"),
        ("platform", (config.get("openwhisk") or {}).get("apihost")),
        ("trace directory", data.provenance.get("tracedir")),
        ("traces / users / actions",
         f"{runs['trace_name'].nunique()} / {runs['user_name'].nunique()} / {runs['action_name'].nunique()}"),
        ("planned invocations", len(runs)),
    ]
    if experiment.seed is not None:
        rows.append(("seed", experiment.seed))
    if summary.get("stopped"):
        rows.append(("stopped", "yes: the loader was stopped before the end of the traces"))
    if summary.get("trace_errors"):
        rows.append(("trace errors", "; ".join(map(str, summary["trace_errors"]))))
    if "workload_path" in data.provenance:
        rows.append(("workload provenance", data.provenance["workload_path"] + " (read when the report was made)"))
    elif "workload_error" in data.provenance:
        rows.append(("workload provenance", data.provenance["workload_error"]))
    else:
        rows.append(("workload provenance", "no workload.json in or above the trace directory"))
    return rows


def details(summary_text: str, value: object) -> str:
    text = json.dumps(value, indent=2, sort_keys=True, default=str)
    return f"<details><summary>{escape(summary_text)}</summary><pre>{escape(text)}</pre></details>"


def page(title: str, toc: list[tuple[str, str]], body: list[str], footer: str) -> str:
    links = "".join(f'<li><a href="#{escape(anchor)}">{escape(text)}</a></li>' for anchor, text in toc)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<link rel=\"icon\" href=\"data:,\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            f"<h1>{escape(title)}</h1><nav><ul>{links}</ul></nav>\n" + "\n".join(body)
            + f'\n<footer class="note"><p>{escape(footer)}</p></footer>\n</body></html>\n')

"""The cohort summary (``snakemake summary``): one row per slide of the sample sheet with its
state, clicks, instances by status, time taken and model, and for a slide without a table the
reason found in its job log; written as CSV, JSON and one HTML page.

A slide's state is ``done`` (its instance table exists: tables appear only when complete),
``failed`` (its log holds an error), ``incomplete`` (a log without an error: the job was killed,
ran out of memory or time, or still runs) or ``not_run`` (no log).
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from nuclick_core.errors import NuclickError
from nuclick_core.io.files import write_text_atomic
from nuclick_core.io.instances import read_provenance
from nuclick_core.io.status import STATUSES

STATES = ("done", "failed", "incomplete", "not_run")
_ERROR = re.compile(r"^\S+ \S+ (?:ERROR|CRITICAL) (.*)$")


def failure_reason(log: Path) -> str | None:
    """The error a job log ends with: the last ``ERROR`` line of ``nuclick``, else the last line
    of a Python traceback; None when the log holds no error."""
    lines = [ln.rstrip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [m.group(1) for ln in lines if (m := _ERROR.match(ln))]
    if errors:
        return errors[-1]
    if any(ln.startswith("Traceback (most recent call last)") for ln in lines):
        return lines[-1]
    return None


def slide_row(sample: dict[str, Any], results: Path, logs: Path) -> dict[str, Any]:
    """The summary row of one sample sheet row."""
    name = str(sample["sample"])
    table, log = results / name / "instances.parquet", logs / "segment" / f"{name}.log"
    row: dict[str, Any] = {
        "sample": name,
        "slide": sample["slide"],
        "object": sample.get("object") or "nucleus",
        "state": "not_run",
        "clicks": None,
        "statuses": {},
        "seconds": None,
        "clicks_per_second": None,
        "model": None,
        "model_sha256": None,
        "reason": "",
        "log": str(log),
    }
    if table.is_file():
        try:
            provenance = read_provenance(table)
            statuses = Counter(pq.read_table(table, columns=["status"]).column(0).to_pylist())
        except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
            row.update(state="failed", reason=f"unreadable table {table}: {exc}; rerun the slide")
            return row
        stats = provenance.get("run", {})
        seconds = stats.get("seconds_wall")
        clicks = sum(statuses.values())
        row.update(
            state="done",
            clicks=clicks,
            statuses=dict(sorted(statuses.items())),
            seconds=None if seconds is None else round(seconds, 2),
            clicks_per_second=round(clicks / seconds, 1) if seconds else None,
            model=provenance.get("model", {}).get("name"),
            model_sha256=provenance.get("model", {}).get("sha256"),
        )
    elif log.is_file():
        reason = failure_reason(log)
        row["state"] = "failed" if reason else "incomplete"
        row["reason"] = reason or (
            "the job stopped without an error (killed, out of memory or time, or still "
            "running); rerun with --rerun-incomplete, and see the scheduler's log for a kill"
        )
    else:
        row["reason"] = "no job log: the slide was not run yet"
    return row


def cohort_summary(samples: Path, results: Path, logs: Path) -> dict[str, Any]:
    """Rows and totals of the cohort of ``samples`` (the workflow's sample sheet)."""
    try:
        sheet = pd.read_csv(samples, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise NuclickError(f"cannot read sample sheet {samples}: {exc}") from exc
    if "sample" not in sheet.columns or "slide" not in sheet.columns:
        raise NuclickError(f"sample sheet {samples} needs the columns sample and slide")
    sheet = sheet[sheet["sample"].str.strip() != ""]
    rows = [slide_row(r, results, logs) for r in sheet.to_dict("records")]
    statuses: Counter[str] = Counter(dict.fromkeys(STATUSES, 0))  # every status, 0 included
    for r in rows:
        statuses.update(r["statuses"])
    states = Counter(r["state"] for r in rows)
    totals = {
        "slides": len(rows),
        **{s: states.get(s, 0) for s in STATES},
        "clicks": sum(r["clicks"] or 0 for r in rows),
        "statuses": dict(statuses),
        "seconds": round(sum(r["seconds"] or 0 for r in rows), 2),
    }
    return {"samples": str(samples), "totals": totals, "slides": rows}


def _csv(summary: dict[str, Any]) -> str:
    statuses = list(summary["totals"]["statuses"])
    fields = ["sample", "slide", "object", "state", "clicks", *[f"n_{s}" for s in statuses]]
    fields += ["seconds", "clicks_per_second", "model", "model_sha256", "reason", "log"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fields, lineterminator="\n")
    writer.writeheader()
    for r in summary["slides"]:
        counts = {
            f"n_{s}": r["statuses"].get(s, 0) if r["state"] == "done" else "" for s in statuses
        }
        writer.writerow({k: v for k, v in r.items() if k in fields} | counts)
    return out.getvalue()


def _html(summary: dict[str, Any]) -> str:
    t = summary["totals"]
    statuses = list(t["statuses"])
    esc = html.escape

    def cells(r: dict[str, Any]) -> str:
        values = [r["sample"], r["state"], r["clicks"] if r["clicks"] is not None else ""]
        values += [r["statuses"].get(s, "") for s in statuses]
        values += [r["seconds"] or "", r["model"] or "", r["reason"]]
        return "".join(f"<td>{esc(str(v))}</td>" for v in values)

    order = sorted(summary["slides"], key=lambda r: (r["state"] == "done", r["sample"]))
    head = ["slide", "state", "clicks", *statuses, "seconds", "model", "reason"]
    body = "\n".join(f'<tr class="{r["state"]}">{cells(r)}</tr>' for r in order)
    line = ", ".join(f"{t[s]} {s.replace('_', ' ')}" for s in STATES)
    status_line = ", ".join(f"{n:,} {s}" for s, n in t["statuses"].items() if n) or "none"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Cohort summary</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}}
tr.failed{{background:#fdd}}tr.incomplete,tr.not_run{{background:#ffd}}</style></head><body>
<h1>Cohort summary: {t["slides"]} slides</h1>
<p>{esc(line)}. {t["clicks"]:,} clicks: {esc(status_line)}. {t["seconds"]:,.0f} s of runs.
Sample sheet: {esc(summary["samples"])}. Slides that need a look come first.</p>
<table><tr>{"".join(f"<th>{esc(h)}</th>" for h in head)}</tr>
{body}
</table></body></html>
"""


def write_cohort_summary(
    summary: dict[str, Any], csv_path: Path, json_path: Path, html_path: Path
) -> None:
    """Write the summary as CSV (one row per slide, a column per status), JSON and HTML."""
    write_text_atomic(csv_path, _csv(summary))
    write_text_atomic(json_path, json.dumps(summary, indent=2) + "\n")
    write_text_atomic(html_path, _html(summary))

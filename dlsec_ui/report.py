"""The report of a scan run: one self-contained HTML file that works offline, and a PDF of it.

Contents: a plain-language summary for non-specialists, the scorecard (one tile per finding), every finding with
its evidence chart, threshold, citation and what would reduce it, the comparison with other scanned models (when
asked), the MITRE ATLAS mapping (ids and names from `dlsec_core.atlas`), and the exact settings, seeds and
versions to rerun it.

Offline: plotly.js is inlined once (`plotly.offline.get_plotlyjs()`), nothing is loaded from a URL (no `src`, no
stylesheet link); the only URLs are links to the ATLAS entries a reader may click (`<a href>`), never fetched on
load. The PDF is the same HTML printed by Debian's Chromium in headless mode (`--print-to-pdf`): a maintained
browser that needs no GPU and no network, already a test dependency; kaleido 1.x would need a Chrome too and tries
to download one.

Stored with the run: `report.html` and `report.pdf` are artifacts of the run (`RunStore.artifact_dir`, i.e.
`$DLSEC_HOME/runs/<run-id>/`), deleted with it.

Command line (this module, because `dlsec_core` must not import plotly, and the report is drawn with it):

    python -m dlsec_ui.report RUN_ID [--pdf] [--compare] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import plotly.io as pio
from plotly.offline import get_plotlyjs

from dlsec_core.atlas import ATLAS_SOURCE, NO_ENTRY, Kind, lookup, tactics_of
from dlsec_core.errors import DlsecError, NotFoundError
from dlsec_core.runs import RunRecord, RunStore
from dlsec_core.store import Store
from dlsec_core.studies.scan import PRESETS, ScanResult
from dlsec_ui.scorecard import (
    SEVERITY_COLOURS,
    ScannedModel,
    comparison_figure,
    finding_figure,
    headline,
    headline_label,
    plain_explanation,
    plain_summary,
    scan_of,
    scanned_models,
    tradeoff_figure,
)

HTML_NAME = "report.html"
PDF_NAME = "report.pdf"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_DEFAULT = Path("/usr/bin/chromium")  # Debian's, where tests/e2e/conftest.py finds it
PDF_TIMEOUT_S = 120
ATLAS_URL = "https://atlas.mitre.org/{kind}/{id}"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 1000px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
.meta { color: #555; } .small { font-size: 0.85em; color: #555; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 10px; }
.tile { border-radius: 8px; padding: 10px 12px; color: #111; border-left: 10px solid; background: #f7f7f7;
        text-decoration: none; display: block; }
.tile .sev { font-weight: 700; font-size: 0.8em; letter-spacing: 0.05em; }
.tile .num { font-size: 1.7em; font-weight: 700; } .tile .tags { font-size: 0.75em; color: #444; }
.finding { border: 1px solid #ddd; border-radius: 8px; padding: 0.6em 1em; margin: 1em 0; }
.badge { color: white; border-radius: 4px; padding: 1px 6px; font-weight: 700; font-size: 0.8em; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { border: 1px solid #ddd; padding: 3px 8px;
        text-align: left; vertical-align: top; }
pre { background: #f5f5f5; padding: 0.6em; overflow-x: auto; font-size: 0.85em; white-space: pre-wrap; }
.summary li { margin-bottom: 0.3em; }
@media print { body { margin: 0; max-width: none; } .tile, .chart, tr { break-inside: avoid; }
               .modebar-container { display: none; } h2, h3 { break-after: avoid; } }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return "—" if value is None else str(value)


def _badge(severity: Any) -> str:
    return f'<span class="badge" style="background:{SEVERITY_COLOURS[severity]}">{_e(str(severity).upper())}</span>'


def _chart(fig: Any, div_id: str) -> str:
    """A chart drawn by the inlined plotly.js (loaded once in the head)."""
    return '<div class="chart">' + pio.to_html(
        fig, full_html=False, include_plotlyjs=False, div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    ) + "</div>"  # fmt: skip


def _atlas_link(atlas_id: str) -> str:
    entry = lookup(atlas_id)
    if entry.kind is Kind.LOCAL:
        return f"{_e(entry.id)} {_e(entry.name)} (local tag)"
    kind = "mitigations" if entry.kind is Kind.MITIGATION else "techniques"
    return f'<a href="{ATLAS_URL.format(kind=kind, id=entry.id)}">{_e(entry.id)}</a> {_e(entry.name)}'


def _table(record: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_fmt(v))}</td></tr>" for k, v in record.items())
    return f"<table>{rows}</table>"


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("plotly",):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


def render_report(run: RunRecord, result: ScanResult, *, others: Sequence[ScannedModel] = ()) -> str:
    """The whole report as one HTML string (self-contained, offline)."""
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts: list[str] = []
    add = parts.append
    add(f"<h1>Security scan report: {_e(result.model_name)}</h1>")
    add(
        f'<p class="meta">Model <code>{_e(result.model_id)}</code> on <b>{_e(result.dataset)}</b> · '
        f"{_e(result.preset)} preset · seed {result.seed} · run <code>{_e(run.id)}</code> finished "
        f"{_e(run.finished_at or '')} in {result.seconds:.1f} s · report written {made} by dlsec.</p>"
    )

    summary = plain_summary(result)
    add("<h2>Summary in plain words</h2>")
    add(f"<p><b>{_e(summary[0])}</b> Worst finding: {_badge(result.worst)}.</p>")
    add('<ul class="summary">' + "".join(f"<li>{_e(line)}</li>" for line in summary[1:]) + "</ul>")
    add(
        "<p class='small'>Severities: green = context, no weakness flagged; yellow = minor; orange = a weakness; "
        "red = serious. Each comes from a documented threshold with its citation, given with the finding below. "
        f"Attack budgets: {_e(result.eps_note)}.</p>"
    )

    add("<h2>Scorecard</h2><div class='tiles'>")
    for f in result.findings:
        tags = " ".join(f.atlas_ids) or "no ATLAS technique (context)"
        add(
            f'<a class="tile" href="#finding-{_e(f.id)}" style="border-color:{SEVERITY_COLOURS[f.severity]}">'
            f'<div class="sev" style="color:{SEVERITY_COLOURS[f.severity]}">{_e(str(f.severity).upper())}</div>'
            f"<div>{_e(f.title)}</div><div class='num'>{_e(headline(f))}</div>"
            f"<div class='small'>{_e(headline_label(f))}</div><div class='tags'>{_e(tags)}</div></a>"
        )
    add("</div>")

    add("<h2>Findings and their evidence</h2>")
    for i, f in enumerate(result.findings):
        add(f'<div class="finding" id="finding-{_e(f.id)}"><h3>{_badge(f.severity)} {_e(f.title)}</h3>')
        add(f"<p>{_e(f.summary)}</p>")
        if explanation := plain_explanation(f):
            add(f"<p class='small'>{_e(explanation)}</p>")
        cited = f" ({_e(f.grade.citation)})" if f.grade.citation else ""
        add(f"<p><b>Why this severity:</b> {_e(f.grade.rule)}{cited}</p>")
        if (fig := finding_figure(f)) is not None:
            add(_chart(fig, f"chart-finding-{i}"))
        if f.reduce:
            add(f"<p><b>What would reduce it:</b> {_e(f.reduce)}</p>")
        if f.atlas_ids:
            add("<p><b>MITRE ATLAS:</b> " + " · ".join(_atlas_link(a) for a in f.atlas_ids) + "</p>")
        if f.checks:
            add("<p><b>Honesty checks:</b></p><ul>")
            add("".join(f"<li>{_e(c.get('title', ''))}: {_e(c.get('sentence', ''))}</li>" for c in f.checks))
            add("</ul>")
        add(f"<details open><summary>Evidence (numbers)</summary>{_table(f.evidence)}</details></div>")

    models = [m for m in others if m.run.id != run.id]
    if models:
        this = ScannedModel(run, result)
        add("<h2>Compared with other scanned models</h2>")
        add(
            "<p class='small'>Each model's latest finished scan in the same store. Trade-offs show here: "
            "adversarial training can raise membership leakage (Song, Shokri, Mittal 2019), differential privacy "
            "can cost robustness.</p>"
        )
        add(_chart(comparison_figure([this, *models]), "chart-comparison"))
        add(_chart(tradeoff_figure([this, *models]), "chart-tradeoff"))

    add("<h2>MITRE ATLAS mapping</h2>")
    used: dict[str, list[str]] = {}
    for f in result.findings:
        for a in f.atlas_ids:
            used.setdefault(a, []).append(f.title)
    rows = []
    for a, titles in used.items():
        entry = lookup(a)
        kind = "local tag (not an ATLAS id)" if entry.kind is Kind.LOCAL else str(entry.kind)
        tactics = ", ".join(lookup(t).name for t in tactics_of(a)) if entry.kind is Kind.TECHNIQUE else ""
        rows.append(
            f"<tr><td>{_atlas_link(a)}</td><td>{_e(kind)}</td><td>{_e(tactics)}</td>"
            f"<td>{_e('; '.join(titles))}</td></tr>"
        )
    add("<table><tr><th>id and name</th><th>kind</th><th>tactics</th><th>findings</th></tr>" + "".join(rows))
    add(f"</table><p class='small'>Source: {_e(ATLAS_SOURCE)}. {_e(NO_ENTRY)}</p>")

    add("<h2>Rerun it</h2>")
    preset = PRESETS.get(result.preset)
    command = f"python -m dlsec_core scan {result.model_id} --preset {result.preset} --seed {result.seed}"
    add(
        f"<p>With the same model (export it with <code>python -m dlsec_core export {_e(result.model_id)} DIR</code>, "
        f"import it elsewhere), the same seed and versions reproduce every number:</p><pre>{_e(command)}\n"
        f"python -m dlsec_ui.report RUN_ID --pdf</pre>"
    )
    add(
        "<p><b>Versions</b> the run used (and the report's own):</p>"
        + _table({**run.versions, **_versions()})
    )
    add(f"<p><b>Seed</b> {result.seed} (PGD's random starts and restarts, Square's random squares).</p>")
    settings = {
        "run config": run.config,
        "preset": dataclasses.asdict(preset) if preset else result.preset,
        "seed": result.seed,
        "versions (of the run)": run.versions,
        "report drawn with": _versions(),
        "worker": run.worker,
        "created / started / finished": [run.created_at, run.started_at, run.finished_at],
    }
    add(f"<pre>{_e(json.dumps(settings, indent=2, ensure_ascii=False))}</pre>")

    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>Security scan report: {_e(result.model_name)}</title><style>{CSS}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head>\n<body>\n{body}\n</body></html>\n"
    )


def write_report(runs: RunStore, run_id: str, *, compare: bool = False) -> Path:
    """Render the report of a finished scan run and store it as the run's artifact `report.html`."""
    run = runs.get(run_id)
    result = scan_of(run)
    others = scanned_models(runs) if compare else []
    text = render_report(run, result, others=others)
    return runs.write_artifact(run.id, HTML_NAME, text.encode("utf-8"))


def stored_report(runs: RunStore, run_id: str, name: str = HTML_NAME) -> Path | None:
    """The report file stored with the run, None when none was written yet."""
    return next((p for p in runs.artifacts(run_id) if p.name == name), None)


class NoChromiumError(DlsecError):
    """No Chromium to print the PDF with."""


def find_chromium() -> Path | None:
    """Debian's Chromium (as the e2e tests find it), or another on PATH; `DLSEC_CHROMIUM` names one explicitly."""
    explicit = os.environ.get("DLSEC_CHROMIUM")
    if explicit is not None:
        path = Path(explicit)
        return path if path.is_file() and os.access(path, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return Path(found)
    return CHROMIUM_DEFAULT if CHROMIUM_DEFAULT.exists() else None


def html_to_pdf(html_path: Path, pdf_path: Path) -> Path:
    """Print an HTML file to PDF with headless Chromium (offline; waits for the charts to draw)."""
    chromium = find_chromium()
    if chromium is None:
        where = os.environ.get("DLSEC_CHROMIUM") or ", ".join([*CHROMIUM_NAMES, str(CHROMIUM_DEFAULT)])
        raise NoChromiumError(
            f"No PDF: no Chromium was found (looked for {where}). Install Debian's chromium "
            "(apt-get install -y chromium) to make PDFs; the HTML report does not need it."
        )
    with tempfile.TemporaryDirectory() as profile:
        command = [
            str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-pdf-header-footer", f"--user-data-dir={profile}",
            "--virtual-time-budget=10000", f"--print-to-pdf={pdf_path}", html_path.resolve().as_uri(),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=PDF_TIMEOUT_S, check=False)
    if done.returncode != 0 or not pdf_path.exists() or pdf_path.stat().st_size == 0:
        raise DlsecError(
            f"Chromium could not print the report (exit {done.returncode}): {done.stderr[-300:]}"
        )
    return pdf_path


def write_pdf(runs: RunStore, run_id: str, *, compare: bool = False) -> Path:
    """The PDF of the run's report (the HTML is written first when missing), stored as `report.pdf`."""
    html_path = stored_report(runs, run_id) or write_report(runs, run_id, compare=compare)
    pdf = runs.artifact_dir(run_id) / PDF_NAME
    tmp = pdf.with_name(".report.pdf.tmp")  # a half-printed PDF never replaces a good one
    html_to_pdf(html_path, tmp)
    tmp.replace(pdf)
    return pdf


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dlsec_ui.report",
        description="Write the self-contained HTML report (and a PDF) of a finished scan run, stored with the run.",
    )
    parser.add_argument(
        "run", metavar="RUN_ID", help="a finished scan run (python -m dlsec_core runs list --study scan)"
    )
    parser.add_argument("--pdf", action="store_true", help="also print a PDF with headless Chromium")
    parser.add_argument("--compare", action="store_true", help="add the other scanned models side by side")
    parser.add_argument("--out", type=Path, help="also copy the files into this folder")
    parser.add_argument("--home", type=Path, help="the store (default: $DLSEC_HOME or ~/.dlsec)")
    args = parser.parse_args(argv)
    try:
        runs = RunStore(Store(args.home) if args.home else Store())
        paths = [write_report(runs, args.run, compare=args.compare)]
        if args.pdf:
            try:
                paths.append(write_pdf(runs, args.run))
            except NoChromiumError as err:
                print(err, file=sys.stderr)
        for path in paths:
            if args.out:
                args.out.mkdir(parents=True, exist_ok=True)
                path = Path(shutil.copy2(path, args.out / f"scan-{args.run[:8]}-{path.name}"))
            print(path)
    except (DlsecError, NotFoundError) as err:
        print(err, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

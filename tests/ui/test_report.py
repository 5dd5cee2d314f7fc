"""The scan report: one self-contained HTML file (no URL is loaded: the only URLs are links to ATLAS entries a
reader may click), with the summary, every finding and chart, the ATLAS mapping and the settings to rerun it; the
command line writes it with the run; the PDF turns into pages; without Chromium a sentence says so.

The real-browser check (every chart drawn, no request leaves the file) is tests/e2e/test_scorecard_browser.py."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from dlsec_core.atlas import lookup
from dlsec_core.runs import RunStore
from dlsec_core.store import Store
from dlsec_ui import report
from dlsec_ui.scorecard import finding_figure, headline, scan_of
from tests.scan_runs import finished_scan, train_digits

ROOT = Path(__file__).resolve().parents[2]
PDF_PAGES = ROOT / "artifacts" / "report_pdf"


class Links(HTMLParser):
    """Every URL-bearing attribute, the tags, the ids and the headings of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.tags: list[str] = []
        self.ids: list[str] = []
        self._in_h2 = False
        self.h2: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "data", "poster", "background"):
                self.urls.append((tag, name, value or ""))
            if name == "id" and value:
                self.ids.append(value)
        self._in_h2 = tag == "h2"

    def handle_data(self, data: str) -> None:
        if self._in_h2 and data.strip():
            self.h2.append(data.strip())
            self._in_h2 = False


def parse(text: str) -> Links:
    links = Links()
    links.feed(text)
    return links


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("report") / "home"
    plain = train_digits(home, "plain")
    robust = train_digits(home, "robust", recipe="fgsm-rs", eps=0.1)
    finished_scan(home, robust.id)
    return home, finished_scan(home, plain.id)


def test_the_report_is_self_contained_and_complete(scanned: tuple[Path, str]) -> None:
    home, run_id = scanned
    runs = RunStore(Store(home))
    path = report.write_report(runs, run_id, compare=True)
    assert path.parent == runs.artifact_dir(run_id) and path.name == "report.html"  # stored with the run
    text = path.read_text(encoding="utf-8")
    page = parse(text)
    # nothing is loaded from anywhere: no src at all, no stylesheet link; the only hrefs are anchors inside the
    # file and links to ATLAS entries (clicked by a reader, never fetched)
    assert not [u for u in page.urls if u[1] != "href"], page.urls
    assert "link" not in page.tags and "iframe" not in page.tags and "img" not in page.tags
    hrefs = [v for _, _, v in page.urls]
    assert all(h.startswith("#") or h.startswith("https://atlas.mitre.org/") for h in hrefs), hrefs
    assert all(
        h[1:] in page.ids for h in hrefs if h.startswith("#")
    )  # every tile's link lands on its finding
    assert "@import" not in text and "url(http" not in text
    assert "plotly.js v" in text and text.count("Plotly.newPlot") >= 1  # plotly.js inlined, once
    assert text.count("plotly.js v") == 1
    # the summary first, then the scorecard, every finding, the comparison, ATLAS, the settings
    assert page.h2[0] == "Summary in plain words"
    assert page.h2[1:] == ["Scorecard", "Findings and their evidence", "Compared with other scanned models",
                           "MITRE ATLAS mapping", "Rerun it"]  # fmt: skip
    result = scan_of(runs.get(run_id))
    charts = sum(finding_figure(f) is not None for f in result.findings) + 2
    assert text.count('class="chart"') == charts
    for f in result.findings:
        assert f"finding-{f.id}" in page.ids and headline(f) in text
        for atlas_id in f.atlas_ids:
            assert lookup(atlas_id).name in text
    run = runs.get(run_id)
    for name in ("dlsec", "torch", "opacus"):
        assert f"<tr><th>{name}</th><td>{run.versions[name]}</td></tr>" in text
    assert f"--seed {result.seed}" in text and f"<b>Seed</b> {result.seed}" in text


def test_the_command_line_writes_the_report_with_its_run(
    scanned: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home, run_id = scanned
    assert report.main([run_id, "--home", str(home), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(tmp_path / f"scan-{run_id[:8]}-report.html")]
    assert (RunStore(Store(home)).artifact_dir(run_id) / "report.html").exists()
    assert report.main(["0123456789ab", "--home", str(home)]) == 2
    assert "0123456789ab" in capsys.readouterr().err


def test_without_chromium_a_sentence_says_so(
    scanned: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home, run_id = scanned
    monkeypatch.setenv("DLSEC_CHROMIUM", str(tmp_path / "no-chromium-here"))
    with pytest.raises(report.NoChromiumError, match="no Chromium was found"):
        report.write_pdf(RunStore(Store(home)), run_id)
    assert report.main([run_id, "--home", str(home), "--pdf"]) == 0  # the HTML is still written
    captured = capsys.readouterr()
    assert "no Chromium was found" in captured.err and "apt-get install -y chromium" in captured.err
    assert captured.out.strip().endswith("report.html")


@pytest.mark.skipif(report.find_chromium() is None, reason="no Chromium to print the PDF with")
@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) is not installed")
def test_the_pdf_turns_into_pages(scanned: tuple[Path, str]) -> None:
    from PIL import Image, ImageStat

    home, run_id = scanned
    pdf = report.write_pdf(RunStore(Store(home)), run_id)
    assert pdf.name == "report.pdf" and pdf.read_bytes()[:5] == b"%PDF-"
    shutil.rmtree(PDF_PAGES, ignore_errors=True)
    PDF_PAGES.mkdir(parents=True)
    subprocess.run(
        ["pdftoppm", "-png", "-r", "50", str(pdf), str(PDF_PAGES / "page")], check=True, timeout=120
    )
    pages = sorted(PDF_PAGES.glob("page-*.png"))
    assert len(pages) >= 3  # summary and scorecard, findings with charts, ATLAS and settings
    for png in pages:  # look at them: artifacts/report_pdf/page-*.png
        stat = ImageStat.Stat(Image.open(png).convert("L"))
        assert stat.stddev[0] > 5, f"{png.name} is blank"
    rgb = np.asarray(Image.open(pages[0]).convert("RGB")).astype(int)
    assert ((rgb[..., 0] > 150) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)).any()  # a red HIGH badge drew

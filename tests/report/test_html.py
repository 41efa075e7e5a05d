"""index.html: self-contained, every referenced file exists, renders in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from harness.report.build import build_report
from harness.report.html import Section, page, table


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


@pytest.fixture(scope="module")
def report(tmp_path_factory, run_a, run_b):
    out = tmp_path_factory.mktemp("html") / "report"
    return build_report([run_a, run_b], out_dir=out, n_boot=100, gradcam=False)


def test_every_reference_exists_and_is_relative(report):
    text = (report.out_dir / "index.html").read_text()
    parser = _Refs()
    parser.feed(text)
    files = [r for r in parser.refs if not r.startswith("#")]
    assert any(r.startswith("figures/") for r in files)
    for ref in files:
        assert not re.match(r"^(https?:)?//", ref), f"external reference {ref}"
        assert (report.out_dir / ref).is_file(), ref
    for anchor in (r[1:] for r in parser.refs if r.startswith("#")):
        assert f'id="{anchor}"' in text
    assert "script" not in parser.tags and "<style>" in text


def test_sections_and_figures(report):
    text = (report.out_dir / "index.html").read_text()
    for title in ("Table 9", "Classification", "Segmentation", "End to end", "Training curves", "Runs and files"):
        assert title in text
    names = {p.name for p in (report.out_dir / "figures").glob("*.png")}
    assert {"confusion.png", "roc.png", "pr.png", "dice_hist.png", "dice_by_size.png", "table9_comparison.png",
            "error_propagation.png", "training_A.png", "training_B.png"} <= names
    assert any(n.startswith("overlay_A") for n in names) and any(n.startswith("overlay_B") for n in names)
    assert "Balanced Accuracy" in text and "Dice ≥ 0.9" in text


def test_missing_image_files_do_not_break_the_report(tmp_path, fake_root):
    run = tmp_path / "run"
    shutil.copytree(fake_root / "a_s2", run)
    shutil.rmtree(run / "pred_masks")
    csv = (run / "predictions.csv").read_text().replace(str(fake_root / "data"), str(tmp_path / "gone"))
    (run / "predictions.csv").write_text(csv)
    result = build_report([run], n_boot=20, gradcam=False)
    assert (run / "report" / "index.html").exists() and result.out_dir == run / "report"


def test_html_escapes_text():
    import pandas as pd

    html = page("a <b>", ["x & y"], [Section("s", "T<1>", [table(pd.DataFrame({"c": ["<script>"]}))])])
    assert "<script>" not in html and "&lt;script&gt;" in html and "T&lt;1&gt;" in html


@pytest.mark.chromium
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs headless Chromium")
def test_screenshot_with_chromium(report, tmp_path):
    shot = tmp_path / "shot.png"
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--screenshot={shot}", "--window-size=1400,2000", (report.out_dir / "index.html").resolve().as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one
    from PIL import Image

    img = Image.open(shot).convert("L")
    assert img.size == (1400, 2000)
    assert len(np.unique(np.asarray(img.resize((70, 100))))) > 20  # text, tables, figures: not one colour

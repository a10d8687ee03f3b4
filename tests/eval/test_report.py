"""The report folder: every number in report.json, every plot embedded in a page that stands alone,
and that page rendered by headless Chromium with every plot decoded."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from edgesal.eval.audit import compare, evaluate
from edgesal.eval.options import EvalOptions
from edgesal.export import ExportOptions, export_saliency
from edgesal.methods import MethodOptions
from tests.eval.models import REGION, region_classifier, region_images

IMG = re.compile(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)">')


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    model = export_saliency(
        region_classifier(),
        ExportOptions(methods=["vanilla", "integrated"], params=MethodOptions(steps=4)),
    )
    images = region_images(3)
    options = EvalOptions(
        steps=5, road_fractions=(0.5,), sensitivity_samples=2, sanity_images=1, tolerance=1.5
    )
    evaluate(model, images, out, options, boxes={n: list(REGION) for n in images})
    return out


def test_report_json_holds_every_number(folder):
    report = json.loads((folder / "report.json").read_text())
    assert report["kind"] == "eval" and len(report["images"]) == 3
    for scores in report["images"][0]["methods"].values():
        for key in ("deletion_auc", "insertion_auc", "deletion", "insertion", "road_morf"):
            assert key in scores
        assert {"pointing", "max_sensitivity", "road_lerf_mean"} <= set(scores)
    assert set(report["images"][0]["controls"]) == {"random", "sobel"}
    summary = report["summary"]["methods"]["vanilla"]
    assert summary["pointing"]["accuracy"] == 1.0 and summary["deletion_auc"]["n"] == 3
    sanity = report["sanity"]
    assert set(sanity["verdicts"]) == {"vanilla", "integrated", "sobel"}
    assert {"cascading", "independent", "random_logit", "layers", "threshold"} <= set(sanity)


def test_page_is_self_contained_and_embeds_every_png(folder):
    page = (folder / "report.html").read_text()
    assert "<script" not in page and "http" not in page and "href" not in page
    embedded = {name: base64.b64decode(data) for name, data in IMG.findall(page)}
    files = {p.name: p.read_bytes() for p in folder.rglob("*.png") if ".work" not in p.parts}
    expected = {
        "curves_deletion_insertion.png",
        "curves_road.png",
        "score_histograms.png",
        "sanity_cascading.png",
        "sanity_independent.png",
        "sanity_grid.png",
        "noise0.png",  # an overlay strip
    }
    assert expected <= set(files)
    assert embedded == files  # every PNG on the page, byte for byte, and nothing else
    for data in embedded.values():
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run_chromium(tmp_path, *flags: str, page) -> subprocess.CompletedProcess:
    browser = _chromium()
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", *flags, page.as_uri(),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.skipif(
    _chromium() is None, reason="needs Debian's chromium (apt-get install chromium)"
)
def test_headless_chromium_renders_every_plot(folder, tmp_path):
    """A copy of the page with a probe writes what Chromium decoded (each image's natural width)
    and the page height into the DOM; a screenshot of the whole page must then contain every
    plot, found by template matching."""
    page = (folder / "report.html").read_text()
    probe = (
        "<script>window.addEventListener('load', () => { document.body.dataset.probe = "
        "JSON.stringify({height: document.documentElement.scrollHeight, images: "
        "[...document.images].map(i => [i.alt, i.naturalWidth, i.complete])}); });</script>"
    )
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", probe + "</body>"))
    dom = _run_chromium(tmp_path, "--dump-dom", "--window-size=1400,900", page=probed)
    match = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert match, dom.stderr[-2000:]
    probe = json.loads(match.group(1).replace("&quot;", '"'))
    assert len(probe["images"]) == len(IMG.findall(page)) >= 7
    assert all(width > 0 and complete for _, width, complete in probe["images"]), probe
    shot = tmp_path / "shot.png"
    height = probe["height"] + 50
    _run_chromium(
        tmp_path, f"--screenshot={shot}", f"--window-size=1400,{height}", "--hide-scrollbars",
        page=folder / "report.html",
    )  # fmt: skip
    screen = cv2.imread(str(shot), cv2.IMREAD_GRAYSCALE)
    assert screen is not None and screen.shape == (height, 1400)
    for name, data in IMG.findall(page):
        plot = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_GRAYSCALE)
        score = cv2.matchTemplate(_small(screen), _small(plot), cv2.TM_CCOEFF_NORMED).max()
        assert score > 0.9, f"{name} is not visible in the screenshot (match {score:.2f})"


def _small(image: np.ndarray) -> np.ndarray:
    """Blurred, then halved: thin plot lines match whatever their pixel phase."""
    blurred = cv2.GaussianBlur(image.astype(np.float32), (7, 7), 2.0)
    return cv2.resize(blurred, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)


def test_compare_report(tmp_path):
    a = export_saliency(region_classifier(), ExportOptions(method="vanilla"))
    b = export_saliency(region_classifier(seed=1), ExportOptions(method="vanilla"))
    result = compare(a, b, region_images(3), tmp_path, EvalOptions())
    assert result["summary"]["top1_agreement"] == 1.0
    vanilla = result["summary"]["methods"]["vanilla"]
    assert 0.3 < vanilla["spearman"]["mean"] < 1.0  # other conv weights, same region
    same = compare(a, a, region_images(3), tmp_path / "same", EvalOptions())
    assert same["summary"]["methods"]["vanilla"]["spearman"]["mean"] == pytest.approx(1.0)
    assert same["summary"]["methods"]["vanilla"]["top_k_iou"]["mean"] == pytest.approx(1.0)
    page = (tmp_path / "report.html").read_text()
    assert "fidelity_histograms.png" in page and len(IMG.findall(page)) == 4

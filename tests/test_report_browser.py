"""The report as a person sees it: opened from disk in headless Chromium (Debian's ``chromium``).

Every image must load, nothing may be reported on the console or fail to load, and nothing
may be fetched but the page itself and its embedded data.  Screenshots of the whole page are
kept in ``test-output/report/`` at the repository's root (look at them).
"""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from tests.browser import Chromium, find_chromium
from tests.injector_support import ROOT
from tests.test_report import figures_of

pytestmark = pytest.mark.timeout(600)

OUTPUT = ROOT / "test-output" / "report"


@pytest.fixture(scope="module")
def chromium():
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium on the PATH: scripts/setup.sh installs Debian's chromium package for the tests")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with Chromium.start(binary, stderr_path=OUTPUT / "chromium-stderr.log") as browser:
        yield browser


def _render(experiments, names, out) -> None:
    result = subprocess.run([sys.executable, "-m", "loader.report", *names, "--out", str(out),
                             "--config", str(experiments.config_path)],
                            check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("which", ["one", "two"])
def test_report_opens_in_chromium_with_every_image_and_no_error(results_experiments, chromium, tmp_path, which):
    names = results_experiments.names[:1] if which == "one" else results_experiments.names
    out = tmp_path / "report"
    _render(results_experiments, names, out)
    page = chromium.load((out / "index.html").as_uri())
    screenshot = OUTPUT / f"report-{which}.png"
    screenshot.write_bytes(page.screenshot_png)
    print(f"screenshot: {screenshot}")

    assert page.title == "FaaSLoad report: " + ", ".join(names)
    assert page.problems == [], f"console errors, exceptions or failed loads: {page.problems}"
    figures = len(figures_of(results_experiments)) * len(names) + (1 if len(names) > 1 else 0)
    assert len(page.images) == figures
    for image in page.images:
        assert image["complete"] and image["width"] > 600 and image["height"] > 200, image
    external = [u for u in page.requested_urls if not u.startswith(("file://", "data:"))]
    assert external == [], "the report must not reach the network"
    assert [u for u in page.requested_urls if u.startswith("file://")] == [(out / "index.html").as_uri()]

    from PIL import Image
    shot = Image.open(io.BytesIO(page.screenshot_png))
    assert shot.width == 1280 and shot.height > 3000  # the whole page, not the first screen
    colours = shot.convert("RGB").resize((64, 256)).getcolors(64 * 256)
    assert colours is not None and len(colours) > 50, "the page shows figures, not a blank screen"

"""``python -m loader.report`` on real experiments (a short injection against localwhisk, twice)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys

import pytest

from tests.injector_support import ROOT

pytestmark = pytest.mark.timeout(600)

ALL_FIGURES = ("rate", "lateness", "latency_cdfs", "cold_starts", "statuses", "resources", "timeline")


def figures_of(experiments) -> tuple[str, ...]:
    """Without any resource sample (no cgroups for the monitor here), a note replaces the last two."""
    return ALL_FIGURES if experiments.monitored else ALL_FIGURES[:-2]


def report(experiments, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loader.report", *args, "--config", str(experiments.config_path)],
                          check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)


def digests(directory) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_report_of_one_experiment_is_self_contained_complete_and_reproducible(results_experiments, tmp_path):
    name = results_experiments.names[0]
    result = report(results_experiments, name, "--out", str(tmp_path / "one"))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "one"
    assert result.stdout.strip() == str(out / "index.html")
    for stem in figures_of(results_experiments):
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (out / f"{stem}.svg").read_bytes()[:2000]
    page = (out / "index.html").read_text()
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == len(figures_of(results_experiments))
    assert not re.search(r'(src|href)="(https?:)?//', page), "no external resource"
    assert "<script" not in page
    # the verdict comes first, then configuration and provenance
    assert page.index("<h3>Verdict</h3>") < page.index("<h3>Configuration and provenance</h3>")
    assert "No thresholds (injection:fail_on) were configured" in page
    limited = results_experiments.throttled_user
    assert f"<td>{limited}/echo</td>" in page  # every function has its row in the per-function table
    functions = (out / "functions.csv").read_text().splitlines()
    assert len(functions) == 1 + 4 and functions[0].startswith("function,invocations,success_share,cold_starts,")
    throttled = [line for line in functions if line.startswith(f"{limited}/echo,")]
    assert throttled and throttled[0].split(",")[1] == "10"
    assert "<td>throttled</td>" in page and "Too many requests in the last minute" in page

    again = report(results_experiments, name, "--out", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    assert digests(out) == digests(tmp_path / "again"), "the same data gives the same bytes"


def test_report_groups_functions_beyond_top_and_compares_experiments(results_experiments, tmp_path):
    first, second = results_experiments.names
    out = tmp_path / "two"
    result = report(results_experiments, first, second, "--out", str(out), "--top", "2")
    assert result.returncode == 0, result.stderr
    page = (out / "index.html").read_text()
    assert page.index('id="comparison"') < page.index('id="experiment-1"') < page.index('id="experiment-2"')
    assert "other (2 functions)" in page
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 1 + 2 * len(figures_of(results_experiments))
    for stem in figures_of(results_experiments):
        assert (out / f"e1_{stem}.png").exists() and (out / f"e2_{stem}.svg").exists()
    comparison = (out / "comparison.csv").read_text().splitlines()
    assert comparison[0] == f"metric,{first},{second},{second} − {first},{second} vs {first} (%)"
    planned = next(line for line in comparison if line.startswith("planned invocations,"))
    assert [float(v) for v in planned.split(",")[1:4]] == [results_experiments.planned] * 2 + [0]
    assert "Kolmogorov-Smirnov" in page and "Functions in every experiment" in page


def test_report_refuses_unknown_experiments_and_activations(results_experiments, tmp_path):
    missing = report(results_experiments, "no-such-experiment", "--out", str(tmp_path / "x"))
    assert missing.returncode == 2
    assert missing.stderr.startswith("loader.report: no experiment named 'no-such-experiment'; the latest are: ")
    bad = report(results_experiments, results_experiments.names[0], "--activation", "0" * 32,
                 "--out", str(tmp_path / "y"))
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"loader.report: activation(s) in none of the experiments: {'0' * 32}"
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()

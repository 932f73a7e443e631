"""Unit tests of the results modules on frames built here: grouping, percentiles, tables, verdict, CSV fields."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from loader.export import _csv_field
from loader.report import tables
from loader.report.data import function_labels, measured_fidelity, percentile, thresholds_of, top_groups
from loader.verdict import ERROR_STATUSES, Fidelity, Thresholds, fidelity_from_summary, judge


def test_percentile_is_nearest_rank():
    values = pd.Series([5, 1, 4, 2, 3, None], dtype="Float64")
    assert percentile(values, 50) == 3 and percentile(values, 99) == 5 and percentile(values, 0) == 1
    assert percentile(np.arange(1, 101), 95) == 95 and percentile([], 50) is None


def test_top_groups_keep_the_most_invoked_and_group_the_rest():
    functions = pd.Series(["a/x"] * 3 + ["b/x"] * 3 + ["c/y"] * 5 + ["d/z"], dtype="string")
    groups, order = top_groups(functions, 2)
    assert order == ("c/y", "a/x", "other (2 functions)")  # ties broken by name
    assert groups.tolist() == ["a/x"] * 3 + ["other (2 functions)"] * 3 + ["c/y"] * 5 + ["other (2 functions)"]
    assert top_groups(functions, 3)[1][-1] == "other (1 function)"
    assert top_groups(functions, 4)[1] == ("c/y", "a/x", "b/x", "d/z")


def _runs() -> pd.DataFrame:
    n = 20
    return pd.DataFrame({
        "run_id": range(1, n + 1), "function": ["f/a"] * 15 + ["g/b"] * 5,
        "status": pd.array(["success"] * 12 + ["application_error", "throttled", "lost"] + ["success"] * 5, dtype="string"),
        "status_reason": pd.array([None] * 12 + ["boom", "429", "no record"] + [None] * 5, dtype="string"),
        "sent_offset_us": pd.array(list(range(n)), dtype="Int64"),
        "lateness_us": pd.array([1000 * (i + 1) for i in range(n)], dtype="Int64"),
        "lateness_ms": [float(i + 1) for i in range(n)],
        "cold_start": pd.array([True] + [False] * 12 + [None, None] + [True] + [False] * 4, dtype="boolean"),
        "e2e_latency_ms": pd.array([float(10 * (i + 1)) for i in range(13)] + [None, None] + [1.0] * 5, dtype="Float64"),
        "duration_ms": pd.array(list(range(1, 14)) + [None, None] + [2] * 5, dtype="Int64"),
        "wait_time_ms": pd.array([0] * 13 + [None, None] + [1] * 5, dtype="Int64"),
        "init_time_ms": pd.array([50] + [None] * 14 + [60] + [None] * 4, dtype="Int64"),
        "peak_memory_mib": [20.0] * 13 + [np.nan, np.nan] + [30.0] * 5,
        "cpu_ms": [1.0] * 13 + [np.nan, np.nan] + [2.0] * 5,
    })


def test_function_table_counts_and_percentiles():
    table = tables.function_table(_runs())
    assert table["function"].tolist() == ["f/a", "g/b"]
    first = table.iloc[0]
    assert first["invocations"] == 15 and first["success_share"] == round(12 / 15, 4) and first["cold_starts"] == 1
    assert (first["e2e_latency_p50_ms"], first["e2e_latency_p95_ms"], first["e2e_latency_p99_ms"]) == (70, 130, 130)
    assert first["init_time_p50_ms"] == 50 and first["peak_memory_max_mib"] == 20.0
    shown = tables.function_display(table)
    assert shown.columns[4] == ("e2e latency (ms)", "p50") and shown.iloc[0, 2] == "80.0 %"


def test_status_table_gives_shares_and_a_reason():
    status = tables.status_table(_runs())
    assert status.to_dict("records")[0] == {"status": "application_error", "runs": 1, "share": "5.00 %",
                                            "example reason": "boom"}
    assert status.set_index("status").loc["success", "runs"] == 17


def test_fidelity_and_verdict():
    fidelity = measured_fidelity(_runs())
    assert (fidelity.planned, fidelity.issued, fidelity.throttled, fidelity.errors, fidelity.lost) == (20, 20, 1, 1, 1)
    assert fidelity.lateness_p99_ms == 20.0 and fidelity.lateness_max_ms == 20.0
    verdict = judge(fidelity, Thresholds(lateness_p99_ms=5, throttled_share=0, error_share=0.1, issued_share=1))
    assert [b.key for b in verdict.breaches] == ["lateness_p99_ms", "throttled_share"] and not verdict.reproduced
    assert verdict.text() == ("verdict: did NOT reproduce the trace: lateness_p99_ms 20 (fail_on: at most 5); "
                              "throttled_share 0.05 (fail_on: at most 0)")
    assert judge(fidelity, Thresholds(error_share=0.05)).reproduced
    assert judge(fidelity, Thresholds()).text() == "verdict: no thresholds (injection:fail_on) to judge against"
    unsent = Fidelity(planned=10, issued=9, lateness_p99_ms=1.0, lateness_max_ms=2.0, throttled=0, errors=0, lost=0)
    assert judge(unsent, Thresholds(issued_share=1)).breaches[0].text == "issued_share 0.9 (fail_on: at least 1)"
    assert ERROR_STATUSES == ("application_error", "developer_error", "internal_error", "http_error",
                              "connection_error", "store_error")
    summary = {"planned": 20, "issued": 19, "statuses": {"success": 17, "throttled": 2},
               "lateness_ms": {"p50": 0.2, "p90": 0.5, "p99": 3.5, "max": 9.0, "mean": 0.4}}
    from_summary = fidelity_from_summary(summary)
    assert (from_summary.issued_share, from_summary.throttled_share, from_summary.lateness_p99_ms) == (0.95, 0.1, 3.5)
    nothing_sent = Fidelity(planned=5, issued=0, lateness_p99_ms=None, lateness_max_ms=None, throttled=0, errors=0,
                            lost=0)
    assert [b.key for b in judge(nothing_sent, Thresholds(lateness_p99_ms=5, lost_share=0)).breaches] == [
        "lateness_p99_ms"]
    assert thresholds_of({"injection": {"fail_on": {"lateness_p99_ms": 5, "throttled_share": 0}}}) == \
        Thresholds(lateness_p99_ms=5.0, throttled_share=0.0)
    assert thresholds_of(None) == Thresholds()


def test_distribution_tests_are_seeded():
    class Data:  # the two attributes the comparison reads
        def __init__(self, label, shift):
            rng = np.random.default_rng(7 + shift)
            self.label = label
            frame = _runs()
            self.runs = pd.concat([frame] * 10, ignore_index=True)
            for column, _, _ in tables.DISTRIBUTIONS:
                self.runs[column] = rng.lognormal(3 + shift, 0.5, len(self.runs))
    experiments = [Data("a", 0), Data("b", 1)]
    first = tables.distribution_tests(experiments)
    assert first.equals(tables.distribution_tests(experiments))
    row = first.iloc[1]
    assert row["distribution"] == "e2e latency (ms)" and row["KS p"] < 1e-6 and row["Δ median"] > 0


@pytest.mark.parametrize("value, text", [(None, ""), (pd.NA, ""), (math.nan, ""), ("", '""'), ('say "hi", ok', '"say ""hi"", ok"'),
                                         (True, "True"), (np.int64(7), "7"), (0.1, "0.1"), (1e-300, "1e-300"),
                                         (pd.Timestamp(1_767_225_600_123_456_000, tz="UTC"),
                                          "2026-01-01T00:00:00.123456+00:00")])
def test_csv_fields_keep_null_empty_text_and_exact_numbers_apart(value, text):
    assert _csv_field(value) == text


def test_function_labels_by_pair_trace_or_action():
    runs = pd.DataFrame({"user_name": pd.array(["u1", "u1", "u2"], dtype="string"),
                         "action_name": pd.array(["echo", "echo", "echo"], dtype="string"),
                         "trace_name": pd.array(["u1-echo-azA", "u1-echo-azB", "u2-echo-azC"], dtype="string")})
    assert function_labels(runs, "function").tolist() == ["u1/echo", "u1/echo", "u2/echo"]
    assert function_labels(runs, "trace").tolist() == ["u1-echo-azA", "u1-echo-azB", "u2-echo-azC"]
    assert function_labels(runs, "action").tolist() == ["echo"] * 3
    with pytest.raises(ValueError, match="group_by must be 'function', 'trace' or 'action', not 'user'"):
        function_labels(runs, "user")


def test_every_run_status_has_a_color_in_the_report():
    """A status without a color would vanish from the status figure (store_error came after the report)."""
    from loader.report.plotting import STATUS_COLORS
    from loader.storage.rows import RunStatus
    assert set(STATUS_COLORS) == {status.value for status in RunStatus}

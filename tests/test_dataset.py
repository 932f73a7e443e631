"""``loader.dataset``: the real experiments as pandas DataFrames, opened every documented way."""

from __future__ import annotations

from urllib.parse import quote

import pandas as pd
import pytest
import yaml

from loader.dataset import DatasetError, NoSuchExperiment, open_dataset
from loader.report.data import percentile
from loader.storage.summary import percentile as summary_percentile

pytestmark = pytest.mark.timeout(600)


def test_runs_parameters_and_resources_as_frames(results_experiments):
    first, _ = results_experiments.names
    with open_dataset(results_experiments.config_path) as ds:
        experiments = ds.experiments()
        assert list(experiments["name"]) == list(results_experiments.names)
        assert experiments["config"].iloc[0]["experiment"]["name"] == first  # jsonb as dicts
        runs = ds.runs(first)
        params = ds.parameters(first)
        wide = ds.parameters(first, wide=True)
        usage = ds.resource_usage(first)
        samples = ds.resources(first)
        by_id = ds.runs(int(experiments["experiment_id"].iloc[0]))
        experiment = ds.experiment(first)

    assert len(runs) == results_experiments.planned and by_id.equals(runs)
    assert str(runs["start_at"].dtype) == "datetime64[ns, UTC]" and str(runs["sent_at"].dtype) == "datetime64[ns, UTC]"
    for column, dtype in (("duration_ms", "Int64"), ("lateness_us", "Int64"), ("cold_start", "boolean"),
                          ("extract_ms", "Float64"), ("status", "string"), ("e2e_latency_ms", "Float64")):
        assert str(runs[column].dtype) == dtype, column
    assert "start_ms" not in runs.columns and "end_ms" not in runs.columns
    statuses = runs["status"].value_counts().to_dict()
    assert statuses.get("throttled", 0) >= 4 and statuses.get("application_error") == 2
    throttled = runs[runs["status"] == "throttled"]
    assert throttled["duration_ms"].isna().all() and throttled["sent_at"].notna().all()  # NULL stays NA, never 0
    assert set(throttled["user_name"]) == {results_experiments.throttled_user}
    done = runs[runs["end_at"].notna()]
    latency = (done["end_at"] - done["sent_at"]) / pd.Timedelta(milliseconds=1)
    assert (done["e2e_latency_ms"].astype("float64") - latency).abs().max() < 1e-6
    assert (done["e2e_latency_ms"] >= done["duration_ms"] - 1).all()  # sending precedes the activation's start
    origin = pd.Timestamp(experiment.start_epoch_us * 1000, tz="UTC")
    assert ((runs["planned_at"] - origin) // pd.Timedelta(microseconds=1)).tolist() == runs["planned_offset_us"].tolist()

    assert set(params.columns) == {"run_id", "name", "value"}
    assert set(wide.columns) >= {"incont", "object", "outcont", "sleep_s"}
    assert wide.loc[runs.loc[0, "run_id"], "object"] == runs.loc[0, "input_object"].rsplit("/", 1)[-1]
    if results_experiments.monitored:
        assert len(usage) > 0 and (usage["peak_memory_bytes"] > 0).all() and str(samples["sampled_at"].dtype) == "datetime64[ns, UTC]"
        counts = samples.groupby("run_id").size()
        assert counts.to_dict() == usage.set_index("run_id")["samples"].to_dict()
        peaks = samples.groupby("run_id")["memory_bytes"].max()
        assert peaks.to_dict() == usage.set_index("run_id")["peak_memory_bytes"].to_dict()
        check_kernel_peaks(runs, samples, results_experiments.late_starts)
    lateness_ms = runs["lateness_us"].dropna().astype("float64") / 1000
    assert percentile(lateness_ms, 99) == summary_percentile(sorted(lateness_ms), 0.99)  # the summary's definition


def test_open_dataset_from_a_dsn_or_a_database_configuration(results_experiments):
    db = results_experiments.database
    dsn = f"host={db.host} port={db.port} user={db.user} dbname={db.database}"
    uri = f"postgresql://{db.user}@{quote(db.host, safe='')}:{db.port}/{db.database}"  # a socket directory: encoded
    for source in (dsn, uri, db):
        with open_dataset(source) as ds:
            assert len(ds.runs(results_experiments.names[1])) == results_experiments.planned
    with open_dataset(db) as ds, pytest.raises(NoSuchExperiment) as missing:
        ds.runs("nope")
    assert str(missing.value).startswith("no experiment named 'nope'; the latest are: ")


def test_open_dataset_refuses_what_holds_no_dataset(tmp_path):
    config = tmp_path / "loader.yml"
    config.write_text(yaml.safe_dump({"database": {"embedded_datadir": str(tmp_path / "nothing-here")}}))
    with pytest.raises(DatasetError) as empty:
        open_dataset(config)
    assert str(empty.value) == (f"no dataset in the embedded server's data directory {tmp_path / 'nothing-here'} "
                                "(database:embedded_datadir; database:dsn and database:host are null)")
    assert not (tmp_path / "nothing-here").exists()  # reading never creates a cluster
    with pytest.raises(DatasetError) as neither:
        open_dataset(tmp_path / "missing.yml")
    assert str(neither.value) == f"{tmp_path / 'missing.yml'}: neither a loader configuration file nor a PostgreSQL DSN"


def check_kernel_peaks(runs: pd.DataFrame, samples: pd.DataFrame, late_starts: frozenset[str]) -> None:
    """Every monitored run says where its kernel peak came from; on this host (cgroup v1, the monitor
    as root) the counter is reset per activation, unless the monitor handled the start notice too
    late (``late_starts``, logged: then never ``activation``), and no sample taken during the
    activation is above it (the counter is reset before the record's start and read after its end)."""
    from faasload.monitor_protocol import PeakSource
    from tests import cgroup_helpers

    monitored = runs[runs["resources_status"].notna()]
    assert set(monitored["kernel_peak_source"]) <= {s.value for s in PeakSource}
    assert runs[runs["resources_status"].isna()]["kernel_peak_source"].isna().all()
    ok = monitored[monitored["resources_status"] == "ok"]
    late = ok["activation_id"].isin(late_starts)
    assert (ok[late]["kernel_peak_source"] != PeakSource.ACTIVATION.value).all()
    if cgroup_helpers.version() == 1:
        on_time = ok[~late]["kernel_peak_source"]
        assert (on_time == PeakSource.ACTIVATION.value).all(), (on_time.value_counts(), sorted(late_starts))
    scoped = ok[ok["kernel_peak_source"] == PeakSource.ACTIVATION.value]
    for run in scoped.itertuples():
        inside = samples[(samples["run_id"] == run.run_id) & (samples["sampled_at"] >= run.start_at)
                         & (samples["sampled_at"] <= run.end_at)]
        if len(inside):
            assert inside["memory_bytes"].max() <= run.kernel_peak_memory_bytes, run

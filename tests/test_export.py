"""``python -m loader.export`` on a real experiment: every row and column of ``runs``, ``parameters``
and ``resources`` read back with pyarrow (Parquet) and pandas (CSV) equals the database."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from loader.dataset import EPOCH_COLUMNS
from tests.injector_support import ROOT

pytestmark = pytest.mark.timeout(600)

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
DERIVED_RUN_COLUMNS = ["planned_at", "sent_at", "e2e_latency_ms"]


def query(database, sql: str, params=()) -> tuple[list[str], list[tuple]]:
    conn = database.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return [d.name for d in cur.description], cur.fetchall()
    finally:
        conn.close()


def database_tables(experiments, name: str) -> dict[str, tuple[list[str], list[tuple]]]:
    (experiment_id, start_epoch_us), = query(experiments.database, "SELECT experiment_id, start_epoch_us "
                                             "FROM experiments WHERE name = %s", (name,))[1]
    db = experiments.database
    return {
        "runs": query(db, "SELECT * FROM runs WHERE experiment_id = %s ORDER BY trace_name, seq", (experiment_id,)),
        "parameters": query(db, "SELECT p.* FROM parameters p JOIN runs r USING (run_id) WHERE r.experiment_id = %s "
                                "ORDER BY p.run_id, p.name", (experiment_id,)),
        "resources": query(db, "SELECT s.* FROM resources s JOIN runs r USING (run_id) WHERE r.experiment_id = %s "
                               "ORDER BY s.run_id, s.sampled_at_us", (experiment_id,)),
        "experiments": query(db, "SELECT * FROM experiments WHERE experiment_id = %s", (experiment_id,)),
        "start_epoch_us": ([], [(start_epoch_us,)]),
    }


def export(experiments, name: str, fmt: str, out) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loader.export", name, "--format", fmt, "--out", str(out),
                           "--config", str(experiments.config_path)], check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def epoch_of(value, unit: str) -> int | None:
    """A datetime read back from a file as integer epoch ``ms``/``us`` (None for NULL)."""
    if value is None or pd.isna(value):
        return None
    delta = pd.Timestamp(value) - pd.Timestamp(EPOCH)
    return delta // pd.Timedelta(1, unit=unit)


def plain(value):
    """A value read back by pandas or pyarrow as a plain Python value (None for missing)."""
    if value is None or (not isinstance(value, (str, list, dict)) and pd.isna(value)):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def assert_table_equal(table: str, db: tuple[list[str], list[tuple]], file_rows: list[dict], *,
                       null_text_as_empty: bool = False) -> None:
    columns, rows = db
    assert len(file_rows) == len(rows), f"{table}: {len(file_rows)} rows in the file, {len(rows)} in the database"
    for index, (row, read) in enumerate(zip(rows, file_rows)):
        for column, expected in zip(columns, row):
            if column in EPOCH_COLUMNS:
                name, unit = EPOCH_COLUMNS[column]
                got = epoch_of(read[name], unit)
            else:
                got = plain(read[column])
                if null_text_as_empty and isinstance(got, str) and got == "" and expected is None:
                    got = None
            assert got == expected, f"{table} row {index} column {column}: file {got!r}, database {expected!r}"


def check_derived(runs_db, start_epoch_us: int, file_rows: list[dict]) -> None:
    columns, rows = runs_db
    for row, read in zip(rows, file_rows):
        values = dict(zip(columns, row))
        assert epoch_of(read["planned_at"], "us") == start_epoch_us + values["planned_offset_us"]
        if values["sent_offset_us"] is None:
            assert plain(read["sent_at"]) is None and plain(read["e2e_latency_ms"]) is None
            continue
        sent_us = start_epoch_us + values["sent_offset_us"]
        assert epoch_of(read["sent_at"], "us") == sent_us
        if values["end_ms"] is None:
            assert plain(read["e2e_latency_ms"]) is None
        else:
            assert plain(read["e2e_latency_ms"]) == pytest.approx((values["end_ms"] * 1000 - sent_us) / 1000, abs=1e-9)


def test_parquet_export_equals_the_database(results_experiments, tmp_path):
    name = results_experiments.names[0]
    result = export(results_experiments, name, "parquet", tmp_path)
    assert result.returncode == 0, result.stderr
    db = database_tables(results_experiments, name)
    assert len(db["runs"][1]) == results_experiments.planned
    assert db["parameters"][1], "the experiment has parameters"
    if results_experiments.monitored:
        assert db["resources"][1], "a monitored experiment has resource samples"
    read = {table: pq.read_table(tmp_path / f"{table}.parquet").to_pylist()
            for table in ("runs", "parameters", "resources", "experiments")}
    runs_schema = pq.read_schema(tmp_path / "runs.parquet")
    expected_columns = [EPOCH_COLUMNS.get(c, (c,))[0] for c in db["runs"][0]] + DERIVED_RUN_COLUMNS
    assert runs_schema.names == expected_columns
    assert str(runs_schema.field("start_at").type) == "timestamp[ns, tz=UTC]"
    assert str(runs_schema.field("duration_ms").type) == "int64" and str(runs_schema.field("cold_start").type) == "bool"
    for table in ("runs", "parameters", "resources"):
        assert_table_equal(table, db[table], read[table])
    check_derived(db["runs"], db["start_epoch_us"][1][0][0], read["runs"])
    experiment = dict(zip(db["experiments"][0], db["experiments"][1][0]))
    (row,) = read["experiments"]
    assert row["name"] == name and row["experiment_id"] == experiment["experiment_id"]
    assert json.loads(row["config"]) == experiment["config"] and json.loads(row["summary"]) == experiment["summary"]
    assert epoch_of(row["start_epoch_at"], "us") == experiment["start_epoch_us"]


def _csv_dtypes(columns: list[str], db_columns: list[str], db_rows: list[tuple]) -> tuple[dict, list[str], dict]:
    """pandas read_csv arguments: nullable dtypes from the database values, datetimes parsed,
    an empty field missing for everything but text."""
    dtypes, dates, na_values = {}, [], {}
    kinds = {}
    for index, column in enumerate(db_columns):
        sample = next((row[index] for row in db_rows if row[index] is not None), None)
        kinds[EPOCH_COLUMNS.get(column, (column,))[0]] = sample
    for column in columns:
        sample = kinds.get(column)
        if column.endswith("_at"):
            dates.append(column)
            na_values[column] = [""]
        elif isinstance(sample, bool):
            dtypes[column], na_values[column] = "boolean", [""]
        elif isinstance(sample, int):
            dtypes[column], na_values[column] = "Int64", [""]
        elif isinstance(sample, float) or column == "e2e_latency_ms":
            dtypes[column], na_values[column] = "Float64", [""]
        else:
            dtypes[column], na_values[column] = "string", []
    return dtypes, dates, na_values


def test_csv_export_equals_the_database(results_experiments, tmp_path):
    name = results_experiments.names[1]
    result = export(results_experiments, name, "csv", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == f"runs: {tmp_path / 'runs.csv'}"
    db = database_tables(results_experiments, name)
    for table in ("runs", "parameters", "resources"):
        path = tmp_path / f"{table}.csv"
        header = pd.read_csv(path, nrows=0).columns.tolist()
        dtypes, dates, na_values = _csv_dtypes(header, *db[table])
        frame = pd.read_csv(path, dtype=dtypes, parse_dates=dates, keep_default_na=False, na_values=na_values)
        # in a CSV file an empty text is "" and NULL an empty field, but pandas reads both as ''
        assert_table_equal(table, db[table], frame.to_dict("records"), null_text_as_empty=True)
        if table == "runs":
            check_derived(db["runs"], db["start_epoch_us"][1][0][0], frame.to_dict("records"))
    raw = (tmp_path / "runs.csv").read_text().splitlines()
    assert len(raw) == 1 + results_experiments.planned
    assert ',"throttled",' in "\n".join(raw)


def test_export_names_the_missing_experiment(results_experiments, tmp_path):
    result = export(results_experiments, "no-such-experiment", "csv", tmp_path)
    assert result.returncode == 2
    assert "loader.export: no experiment named 'no-such-experiment'; the latest are: " in result.stderr
    assert results_experiments.names[1] in result.stderr
    assert not list(tmp_path.iterdir())

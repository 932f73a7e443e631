"""The dataset as pandas DataFrames, for notebooks, exports and reports (docs/dataset.md)::

    from loader.dataset import open_dataset
    with open_dataset("config/loader.yml") as ds:      # or a DSN, a LoaderConfig, a DatabaseConfiguration
        ds.experiments()
        runs = ds.runs("injection-20260101T120000.000Z")  # by name, or by id

Column names keep their units (``duration_ms``, ``memory_bytes``); epoch times become
timezone-aware UTC datetimes named ``*_at`` (``start_ms`` → ``start_at``,
``sampled_at_us`` → ``sampled_at``, ``start_epoch_us`` → ``start_epoch_at``); nullable
integers, floats, booleans and texts use pandas' nullable dtypes, so that NULL ("not
measured") stays distinct from 0.  Reading never writes to the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import LoaderConfig
from .config import load as load_config
from .storage import queries
from .storage.database import (
    DatabaseConfiguration,
    OpenedDatabase,
    embedded_datadir,
    is_configured,
    open_database,
)
from .storage.queries import NoSuchExperiment

__all__ = ["EPOCH_COLUMNS", "Dataset", "DatasetError", "Experiment", "NoSuchExperiment", "open_dataset"]


class DatasetError(RuntimeError):
    """The dataset cannot be opened as asked; the message says what was tried."""


#: Epoch columns of the database and the datetime columns they become: (name, unit).
EPOCH_COLUMNS = {"start_ms": ("start_at", "ms"), "end_ms": ("end_at", "ms"),
                 "sampled_at_us": ("sampled_at", "us"), "start_epoch_us": ("start_epoch_at", "us"),
                 "first_sampled_at_us": ("first_sampled_at", "us"), "last_sampled_at_us": ("last_sampled_at", "us")}

#: PostgreSQL type OIDs and the pandas dtype of their columns.
_DTYPES = {16: "boolean", 20: "Int64", 21: "Int64", 23: "Int64", 25: "string", 1043: "string",
           700: "Float64", 701: "Float64", 1700: "Float64", 1114: "datetime", 1184: "datetime"}
_UTC_NS = "datetime64[ns, UTC]"


@dataclass(frozen=True)
class Experiment:
    """One row of ``experiments``."""

    experiment_id: int
    name: str
    mode: str
    description: str
    started_at: datetime
    start_epoch_us: int | None
    ended_at: datetime | None
    seed: int | None
    config: dict | None
    summary: dict | None


def frame(rows: queries.Rows) -> pd.DataFrame:
    """A query result as a DataFrame with nullable dtypes and epoch columns as UTC datetimes."""
    data: dict[str, Any] = {}
    for index, (name, oid) in enumerate(zip(rows.columns, rows.type_oids)):
        values = [row[index] for row in rows.rows]
        if name in EPOCH_COLUMNS:
            new_name, unit = EPOCH_COLUMNS[name]
            data[new_name] = epoch_to_datetime(pd.array(values, dtype="Int64"), unit)
            continue
        dtype = _DTYPES.get(oid)
        if dtype == "datetime":
            data[name] = pd.to_datetime(pd.Series(values, dtype=object), utc=True).astype(_UTC_NS)
        elif dtype is None:
            data[name] = pd.Series(values, dtype=object)
        else:
            data[name] = pd.Series(pd.array(values, dtype=dtype))
    return pd.DataFrame(data)


def epoch_to_datetime(values: Any, unit: str) -> pd.Series:
    """Integer epoch ``ms``/``us`` (nullable) as UTC datetimes (NaT for NULL), exactly."""
    per_ns = {"ms": 1_000_000, "us": 1_000}[unit]
    ints = pd.Series(values, dtype="Int64")
    ns = (ints * per_ns).to_numpy(dtype="int64", na_value=np.iinfo(np.int64).min)  # min is NaT
    return pd.Series(ns.view("datetime64[ns]")).dt.tz_localize("UTC")


def datetime_to_epoch(values: pd.Series, unit: str) -> pd.Series:
    """The inverse of :func:`epoch_to_datetime` (nullable Int64)."""
    per_ns = {"ms": 1_000_000, "us": 1_000}[unit]
    ns = values.dt.tz_convert("UTC").astype(_UTC_NS).dt.tz_localize(None).astype("int64", errors="ignore")
    out = pd.Series(pd.array(ns // per_ns, dtype="Int64"), index=values.index)
    out[values.isna()] = pd.NA
    return out


class Dataset:
    """Read access to a FaaSLoad dataset; close it (or use ``with``) to release the connection
    and stop the embedded server it may have started."""

    def __init__(self, database: DatabaseConfiguration, opened: OpenedDatabase | None = None):
        self.database = database
        self._opened = opened
        self._conn: Any = None   # a psycopg2 connection, opened on first use

    # ------------------------------------------------------------------ life cycle

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._opened is not None:
            self._opened.close()
            self._opened = None

    @property
    def conn(self):
        if self._conn is None or self._conn.closed:
            self._conn = self.database.connect()
            self._conn.set_session(readonly=True)
        return self._conn

    # ------------------------------------------------------------------ tables

    def experiments(self) -> pd.DataFrame:
        """Every experiment, oldest first; ``config`` and ``summary`` are dicts."""
        return frame(queries.experiments(self.conn))

    def experiment(self, ref: str | int | Experiment) -> Experiment:
        """One experiment by name or id; raises :class:`NoSuchExperiment`."""
        if isinstance(ref, Experiment):
            return ref
        return Experiment(**queries.find_experiment(self.conn, ref))

    def runs(self, ref: str | int | Experiment) -> pd.DataFrame:
        """Every column of ``runs`` (epoch times as datetimes), plus derived columns:

        ``planned_at`` and ``sent_at`` (the offsets from the experiment's start, as UTC
        datetimes; NaT in generator mode, whose offsets count from each session's start) and
        ``e2e_latency_ms`` (``end_at − sent_at``: from sending to the activation's end).
        """
        experiment = self.experiment(ref)
        runs = frame(queries.runs(self.conn, experiment.experiment_id))
        origin_us = experiment.start_epoch_us if experiment.mode == "injection" else None
        for offset, column in (("planned_offset_us", "planned_at"), ("sent_offset_us", "sent_at")):
            epoch = runs[offset] + origin_us if origin_us is not None else pd.Series(pd.NA, index=runs.index,
                                                                                     dtype="Int64")
            runs[column] = epoch_to_datetime(epoch, "us").set_axis(runs.index)
        latency = (runs["end_at"] - runs["sent_at"]) / pd.Timedelta(milliseconds=1)
        runs["e2e_latency_ms"] = pd.array(latency.to_numpy(dtype="float64", na_value=np.nan), dtype="Float64")
        return runs

    def parameters(self, ref: str | int | Experiment, *, wide: bool = False) -> pd.DataFrame:
        """``run_id, name, value`` per parameter; ``wide``: one row per run (index ``run_id``),
        one column per parameter name (missing parameters are NA)."""
        experiment = self.experiment(ref)
        params = frame(queries.parameters(self.conn, experiment.experiment_id))
        if not wide:
            return params
        table = params.pivot(index="run_id", columns="name", values="value")
        table.columns.name = None
        return table.astype("string")

    def resources(self, ref: str | int | Experiment, run_ids: list[int] | None = None) -> pd.DataFrame:
        """The monitor's samples (``run_id, sampled_at, memory_bytes, rss_mapped_bytes, cpu_ns``)."""
        experiment = self.experiment(ref)
        return frame(queries.resources(self.conn, experiment.experiment_id,
                                       None if run_ids is None else [int(r) for r in run_ids]))

    def iter_resources(self, ref: str | int | Experiment, chunk_rows: int = 200_000) -> Iterator[pd.DataFrame]:
        """The samples of :meth:`resources`, a chunk at a time (for experiments too big for memory)."""
        experiment = self.experiment(ref)
        for rows in queries.iter_resources(self.conn, experiment.experiment_id, chunk_rows):
            yield frame(rows)

    def resource_usage(self, ref: str | int | Experiment) -> pd.DataFrame:
        """Per run with samples: ``samples``, ``first_sampled_at``, ``last_sampled_at``,
        ``peak_memory_bytes``, ``peak_rss_mapped_bytes``, ``cpu_ns`` (CPU time over the samples)."""
        experiment = self.experiment(ref)
        return frame(queries.resource_usage(self.conn, experiment.experiment_id))


def open_dataset(source: str | Path | LoaderConfig | DatabaseConfiguration) -> Dataset:
    """The dataset of a loader configuration file (its ``database`` section), a
    :class:`~loader.config.LoaderConfig`, a :class:`~loader.storage.database.DatabaseConfiguration`,
    or a libpq DSN (``"host=... dbname=..."`` or ``"postgresql://..."``).

    With no server configured, the embedded server of ``database:embedded_datadir`` is
    started for reading (and stopped by :meth:`Dataset.close`); it must hold a dataset.
    """
    if isinstance(source, DatabaseConfiguration):
        return Dataset(source)
    if isinstance(source, (str, Path)):
        text = str(source)
        if text.startswith(("postgres://", "postgresql://")) or ("=" in text and not Path(text).exists()):
            return Dataset(DatabaseConfiguration(dsn=text))
        if not Path(text).is_file():
            raise DatasetError(f"{text}: neither a loader configuration file nor a PostgreSQL DSN")
        source = load_config(text)
    section = source.database
    if not is_configured(section):
        datadir = embedded_datadir(section)
        if not (datadir / "PG_VERSION").is_file():
            raise DatasetError(f"no dataset in the embedded server's data directory {datadir} "
                               f"(database:embedded_datadir; database:dsn and database:host are null)")
    opened = open_database(section)
    return Dataset(opened.config, opened)

"""Export one experiment to CSV or Parquet files, for pandas, R, spreadsheets (docs/dataset.md).

``python -m loader.export EXPERIMENT --format csv|parquet --out DIR [--config FILE | --dsn DSN]``
writes ``DIR/experiments.EXT`` (the experiment's row; ``config`` and ``summary`` as JSON
text), ``DIR/runs.EXT`` (every column of ``runs`` as :meth:`loader.dataset.Dataset.runs`
gives it), ``DIR/parameters.EXT`` (``run_id, name, value``) and ``DIR/resources.EXT``
(every sample, written a chunk at a time).  CSV: UTF-8, a header line, an empty field for
NULL, texts always quoted (an empty text is ``""``), datetimes as
``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``, floats as the shortest text that reads back exactly.
Parquet: one file per table, nullable integer, boolean and text columns, datetimes in ns UTC.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from faasload import cli

from .dataset import Dataset, DatasetError, Experiment, NoSuchExperiment, open_dataset

FORMATS = ("csv", "parquet")
TABLES = ("experiments", "runs", "parameters", "resources")


def experiment_frame(dataset: Dataset, experiment: Experiment) -> pd.DataFrame:
    """The experiment's row, with ``config`` and ``summary`` as JSON text (keys sorted)."""
    table = dataset.experiments()
    table = table[table["experiment_id"] == experiment.experiment_id].reset_index(drop=True)
    for column in ("config", "summary"):
        table[column] = pd.array([None if v is None else json.dumps(v, sort_keys=True) for v in table[column]],
                                 dtype="string")
    return table


def _chunks(dataset: Dataset, experiment: Experiment, table: str) -> Iterator[pd.DataFrame]:
    if table == "experiments":
        yield experiment_frame(dataset, experiment)
    elif table == "runs":
        yield dataset.runs(experiment)
    elif table == "parameters":
        yield dataset.parameters(experiment)
    else:
        empty = True
        for chunk in dataset.iter_resources(experiment):
            empty = False
            yield chunk
        if empty:
            yield dataset.resources(experiment)  # the columns, with no rows


#: Every datetime of the dataset is UTC with at most µs precision.
CSV_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+00:00"


def _csv_field(value: object) -> str:
    """NULL: an empty field; text: always quoted (so an empty text is ``""``); numbers: exact."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, str):
        return '"' + value.replace('"', '""') + '"'
    if isinstance(value, pd.Timestamp):
        return value.tz_convert("UTC").strftime(CSV_DATETIME_FORMAT)
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def _write_csv(chunks: Iterator[pd.DataFrame], path: Path) -> int:
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as stream:
        for index, chunk in enumerate(chunks):
            if index == 0:
                stream.write(",".join(_csv_field(str(c)) for c in chunk.columns) + "\n")
            if all(pd.api.types.is_numeric_dtype(t) or pd.api.types.is_datetime64_any_dtype(t) for t in chunk.dtypes):
                chunk.to_csv(stream, index=False, header=False, lineterminator="\n",  # no text: pandas is exact
                             date_format=CSV_DATETIME_FORMAT)
            else:
                stream.writelines(",".join(map(_csv_field, row)) + "\n"
                                  for row in chunk.itertuples(index=False, name=None))
            rows += len(chunk)
    return rows


def _write_parquet(chunks: Iterator[pd.DataFrame], path: Path) -> int:
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for chunk in chunks:
            table = pa.Table.from_pandas(chunk, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
            rows += len(chunk)
    finally:
        if writer is not None:
            writer.close()
    return rows


def export_experiment(dataset: Dataset, ref: str | int | Experiment, out_dir: Path, fmt: str) -> dict[str, Path]:
    """Write the experiment's tables as ``fmt`` files in ``out_dir``; return them by table name."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    experiment = dataset.experiment(ref)
    out_dir.mkdir(parents=True, exist_ok=True)
    write = _write_csv if fmt == "csv" else _write_parquet
    written = {}
    for table in TABLES:
        path = out_dir / f"{table}.{fmt}"
        tmp = path.with_name(path.name + ".part")
        write(_chunks(dataset, experiment, table), tmp)
        tmp.replace(path)  # a file is either complete or absent
        written[table] = path
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loader.export",
                                     description="Export an experiment's experiments/runs/parameters/resources "
                                                 "tables to CSV or Parquet files.")
    parser.add_argument("experiment", help="experiment name (or id)")
    parser.add_argument("--format", choices=FORMATS, default="parquet", help="file format (default: parquet)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory (created)")
    add_source_arguments(parser)
    return parser


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` / ``--dsn DSN``: where the dataset is (shared with ``loader.report``)."""
    from .config import DEFAULT_PATH
    source = parser.add_mutually_exclusive_group()
    source.add_argument("-c", "--config", type=Path, default=DEFAULT_PATH, metavar="FILE",
                        help=f"the loader's configuration, for its database section (default: {DEFAULT_PATH})")
    source.add_argument("--dsn", help="a libpq connection string or URI instead of a configuration")


def open_from_arguments(args: argparse.Namespace) -> Dataset:
    return open_dataset(args.dsn if args.dsn else args.config)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        try:
            with open_from_arguments(args) as dataset:
                written = export_experiment(dataset, args.experiment, args.out, args.format)
        except (NoSuchExperiment, DatasetError) as exc:
            print(f"loader.export: {exc}", file=sys.stderr)
            return cli.EXIT_CONFIG
        for table, path in written.items():
            print(f"{table}: {path}")
        return cli.EXIT_OK

    return cli.run_main(body, "loader.export")


if __name__ == "__main__":
    sys.exit(main())

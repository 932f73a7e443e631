"""The dataset schema, as versioned migrations applied idempotently.

Every table and column is documented in ``docs/dataset.md``.  A migration is applied
once and recorded in ``schema_migrations``; all the migrations a database lacks run in
one transaction, so a failure applies none of them.  Applying the list again does
nothing.  To change the schema, append a migration; never edit one that has shipped.

The statuses a ``runs`` row may hold come from :class:`~loader.storage.rows.RunStatus`,
the states of an experiment from :class:`~loader.storage.rows.ExperimentState`: adding a
member needs a migration that calls :func:`status_constraint_sql` (or
:func:`state_constraint_sql`) again (tests compare the database's constraints with the enums).
"""

from __future__ import annotations

import re

import psycopg2.extensions

from loader.storage.rows import ExperimentState, RunStatus

#: Terminal statuses of a run, as stored.
TERMINAL_STATUSES = tuple(status.value for status in RunStatus if status.terminal)
#: The name of the CHECK constraint on ``runs.status``.
STATUS_CONSTRAINT = "runs_status_check"


def status_constraint_sql() -> str:
    """(Re)create the CHECK constraint of ``runs.status`` from :class:`RunStatus`."""
    values = ", ".join(f"'{status.value}'" for status in RunStatus)
    return (f"ALTER TABLE runs DROP CONSTRAINT IF EXISTS {STATUS_CONSTRAINT};\n"
            f"ALTER TABLE runs ADD CONSTRAINT {STATUS_CONSTRAINT} CHECK (status IN ({values}));\n")


#: The name of the CHECK constraint on ``runs.kernel_peak_source`` (migration 6).
PEAK_SOURCE_CONSTRAINT = "runs_kernel_peak_source_check"
#: The name of the CHECK constraint on ``experiments.state``.
STATE_CONSTRAINT = "experiments_state_check"


def state_constraint_sql() -> str:
    """(Re)create the CHECK constraint of ``experiments.state`` from :class:`ExperimentState`."""
    values = ", ".join(f"'{state.value}'" for state in ExperimentState)
    return (f"ALTER TABLE experiments DROP CONSTRAINT IF EXISTS {STATE_CONSTRAINT};\n"
            f"ALTER TABLE experiments ADD CONSTRAINT {STATE_CONSTRAINT} CHECK (state IN ({values}));\n")


MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "initial dataset schema", """
CREATE TABLE functions (
    function_id      serial PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    package          text,
    runtime          text,
    image            text,
    code_path        text,
    main             text,
    memory_mb        integer,
    timeout_ms       integer,
    log_size_mb      integer,
    concurrency      integer,
    input_kind       text CHECK (input_kind IN ('image', 'audio', 'video')),
    parameter_specs  jsonb NOT NULL DEFAULT '[]'::jsonb,
    manifest_path    text,
    registered_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE experiments (
    experiment_id    serial PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    mode             text NOT NULL CHECK (mode IN ('injection', 'generation')),
    description      text NOT NULL DEFAULT '',
    started_at       timestamptz NOT NULL DEFAULT now(),
    start_epoch_us   bigint,
    ended_at         timestamptz,
    seed             bigint,
    config           jsonb,
    summary          jsonb
);

CREATE TABLE runs (
    run_id               bigserial PRIMARY KEY,
    experiment_id        integer NOT NULL REFERENCES experiments ON DELETE CASCADE,
    trace_name           text NOT NULL,
    seq                  integer NOT NULL CHECK (seq >= 0),
    user_name            text NOT NULL,
    action_name          text NOT NULL,
    input_object         text,
    planned_offset_us    bigint NOT NULL,
    sent_offset_us       bigint,
    lateness_us          bigint,
    status               text NOT NULL CHECK (status IN ('planned', 'sent', 'success', 'application_error',
                             'developer_error', 'internal_error', 'throttled', 'http_error',
                             'connection_error', 'lost', 'cancelled')),
    status_reason        text,
    invoke_http_status   integer,
    invoke_attempts      integer,
    activation_id        text,
    start_ms             bigint,
    end_ms               bigint,
    duration_ms          integer,
    wait_time_ms         integer,
    init_time_ms         integer,
    cold_start           boolean,
    kind                 text,
    memory_limit_mb      integer,
    response_size_bytes  integer,
    output_size_bytes    bigint,
    extract_ms           double precision,
    transform_ms         double precision,
    load_ms              double precision,
    result_error         text,
    resources_status     text,
    UNIQUE (experiment_id, trace_name, seq)
);
CREATE INDEX runs_activation_id ON runs (activation_id);
CREATE INDEX runs_experiment_action ON runs (experiment_id, action_name);

CREATE TABLE parameters (
    run_id   bigint NOT NULL REFERENCES runs ON DELETE CASCADE,
    name     text NOT NULL,
    value    text NOT NULL,
    PRIMARY KEY (run_id, name)
);

CREATE TABLE resources (
    run_id            bigint NOT NULL REFERENCES runs ON DELETE CASCADE,
    sampled_at_us     bigint NOT NULL,
    memory_bytes      bigint,
    rss_mapped_bytes  bigint,
    cpu_ns            bigint,
    PRIMARY KEY (run_id, sampled_at_us)
);
"""),
    (2, "runs.resources_reason: why an activation has no or partial resources", """
ALTER TABLE runs ADD COLUMN resources_reason text;
"""),
    (3, "runs.status: the CHECK constraint derived from RunStatus", status_constraint_sql()),
    (4, "scale-out: the shards of an experiment; runs.invoker from the user event's source", """
CREATE TABLE shards (
    experiment_id      integer NOT NULL REFERENCES experiments ON DELETE CASCADE,
    shard              integer NOT NULL CHECK (shard >= 1),
    shards             integer NOT NULL CHECK (shards >= shard),
    host               text NOT NULL,
    pid                integer,
    state              text NOT NULL CHECK (state IN ('joined', 'running', 'finished', 'stopped', 'failed', 'dead')),
    reason             text,
    planned            integer,
    issued             integer NOT NULL DEFAULT 0,
    completed          integer NOT NULL DEFAULT 0,
    clock_offset_us    bigint,
    clock_rtt_us       bigint,
    start_at_us        bigint,
    started_epoch_us   bigint,
    joined_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    heartbeat_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at           timestamptz,
    summary            jsonb,
    PRIMARY KEY (experiment_id, shard)
);
ALTER TABLE runs ADD COLUMN invoker text;
"""),
    (5, "experiments.state (ExperimentState); runs.status store_error", """
ALTER TABLE experiments ADD COLUMN state text NOT NULL DEFAULT 'running';
UPDATE experiments SET state = CASE WHEN ended_at IS NULL THEN 'running'
                                    WHEN summary->>'stopped' = 'true' THEN 'stopped' ELSE 'finished' END;
""" + state_constraint_sql() + status_constraint_sql()),
    # the sources are faasload.monitor_protocol.PeakSource (tests/test_store.py compares them)
    (6, "runs.kernel_peak_memory_bytes and kernel_peak_source: the kernel's own peak of the activation", """
ALTER TABLE runs ADD COLUMN kernel_peak_memory_bytes bigint;
ALTER TABLE runs ADD COLUMN kernel_peak_source text CONSTRAINT runs_kernel_peak_source_check
    CHECK (kernel_peak_source IN ('activation', 'since_creation', 'unavailable'));
"""),
    (7, "functions.inputs: the action's default parameters (wskdeploy inputs)", """
ALTER TABLE functions ADD COLUMN inputs jsonb NOT NULL DEFAULT '{}'::jsonb;
"""),
    # Every run is written at least twice (sent, then its end): with half of each page left free,
    # most ends update their row in place (a HOT update: no new entry in the four indexes of runs).
    # A completion then costs PostgreSQL ~10% less CPU (62.0 against 68.8 µs), for ~25% more pages
    # of runs (bench/store_writes.py).
    # Pages written before the migration keep their layout.
    (8, "runs fillfactor 50: a run's later updates stay on its page", """
ALTER TABLE runs SET (fillfactor = 50);
"""),
    # A run's samples in one row, each measure an array in time order: a row, an index entry and a
    # foreign-key check per run instead of per sample.  PostgreSQL's CPU per completion of 3 samples
    # fell from 42-48 to 28-32 µs, of 100 samples (a 1 s activation) from 860-915 to 120-125 µs, and
    # a sample of 100 takes 21 bytes on disk instead of 123 (bench/store_writes.py,
    # docs/performance.md).  ``resources`` stays, as a view of one row per sample with the table's
    # former columns, so every query written against it still runs.
    (9, "run_samples: a run's samples as arrays in one row; resources a view of them, one row per sample", """
CREATE TABLE run_samples (
    run_id            bigint PRIMARY KEY REFERENCES runs ON DELETE CASCADE,
    sampled_at_us     bigint[] NOT NULL,
    memory_bytes      bigint[] NOT NULL,
    rss_mapped_bytes  bigint[] NOT NULL,
    cpu_ns            bigint[] NOT NULL,
    CONSTRAINT run_samples_aligned CHECK (
        cardinality(memory_bytes) = cardinality(sampled_at_us)
        AND cardinality(rss_mapped_bytes) = cardinality(sampled_at_us)
        AND cardinality(cpu_ns) = cardinality(sampled_at_us))
);
INSERT INTO run_samples (run_id, sampled_at_us, memory_bytes, rss_mapped_bytes, cpu_ns)
    SELECT run_id, array_agg(sampled_at_us ORDER BY sampled_at_us), array_agg(memory_bytes ORDER BY sampled_at_us),
           array_agg(rss_mapped_bytes ORDER BY sampled_at_us), array_agg(cpu_ns ORDER BY sampled_at_us)
    FROM resources GROUP BY run_id;
DROP TABLE resources;
CREATE VIEW resources (run_id, sampled_at_us, memory_bytes, rss_mapped_bytes, cpu_ns) AS
    SELECT s.run_id, u.sampled_at_us, u.memory_bytes, u.rss_mapped_bytes, u.cpu_ns
    FROM run_samples s
    CROSS JOIN LATERAL unnest(s.sampled_at_us, s.memory_bytes, s.rss_mapped_bytes, s.cpu_ns)
        AS u(sampled_at_us, memory_bytes, rss_mapped_bytes, cpu_ns);
"""),
]

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version      integer PRIMARY KEY,
    description  text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now()
)"""


def migrate(conn: psycopg2.extensions.connection) -> list[int]:
    """Apply the migrations not yet applied; return their versions.

    Safe against concurrent loaders: an advisory lock serialises them.
    """
    applied_now = []
    with conn:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(726353)")
            cur.execute(_BOOKKEEPING)
            cur.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in cur.fetchall()}
            for version, description, sql in MIGRATIONS:
                if version in done:
                    continue
                cur.execute(sql)
                cur.execute("INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                            (version, description))
                applied_now.append(version)
    return applied_now


def status_constraint_values(conn: psycopg2.extensions.connection) -> set[str]:
    """The statuses the database's ``runs.status`` constraint allows (read back from the catalog)."""
    return _constraint_values(conn, "runs", STATUS_CONSTRAINT)


def state_constraint_values(conn: psycopg2.extensions.connection) -> set[str]:
    """The states the database's ``experiments.state`` constraint allows (read back from the catalog)."""
    return _constraint_values(conn, "experiments", STATE_CONSTRAINT)


def peak_source_constraint_values(conn: psycopg2.extensions.connection) -> set[str]:
    """The sources the database's ``runs.kernel_peak_source`` constraint allows."""
    return _constraint_values(conn, "runs", PEAK_SOURCE_CONSTRAINT)


def _constraint_values(conn: psycopg2.extensions.connection, table: str, constraint: str) -> set[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
                    "AND contype = 'c' AND conname = %s", (table, constraint))
        row = cur.fetchone()
    conn.commit()
    if row is None:
        return set()
    return set(re.findall(r"'([a-z_]+)'::text", row[0]))


def current_version(conn: psycopg2.extensions.connection) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
        row = cur.fetchone()
        assert row is not None, "an aggregate without GROUP BY returns one row"
        return row[0]

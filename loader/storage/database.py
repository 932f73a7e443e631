"""Where the dataset lives: :class:`DatabaseConfiguration`, connections, the embedded server."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import psycopg2.extensions

from faasload import embedded_pg
from faasload.errors import Failure
from loader.config import DatabaseSection
from loader.storage.dsn import mask_dsn, scrub

__all__ = ["DatabaseConfiguration", "DatabaseError", "OpenedDatabase", "StoreError", "StoreUnavailable",
           "create_database", "is_configured", "mask_dsn", "open_database"]

log = logging.getLogger(__name__)


class StoreError(Failure):
    """The store failed in a way retrying cannot fix, or could not finish writing."""


class DatabaseError(Failure):
    """The database cannot be reached or used; the message says which server."""


class StoreUnavailable(Failure):
    """The server cannot be used right now (connection refused or lost): worth retrying."""


@dataclass(frozen=True)
class DatabaseConfiguration:
    """How to reach PostgreSQL, as in the original FaaSLoad README::

        DatabaseConfiguration(user='faasload', password='secret', database='faasload')

    ``dsn`` (a libpq connection string or URI) overrides the other fields.  The password,
    alone or inside the DSN, never shows: not in ``repr``, :meth:`describe` or errors.
    """

    user: str = "faasload"
    password: str | None = field(default=None, repr=False)
    database: str = "faasload"
    host: str | None = None
    port: int = 5432
    dsn: str | None = field(default=None, repr=False)

    @classmethod
    def from_section(cls, section: DatabaseSection) -> DatabaseConfiguration:
        return cls(user=section.user, password=section.password, database=section.database,
                   host=section.host, port=section.port, dsn=section.dsn)

    def connect_kwargs(self) -> dict:
        if self.dsn:
            return {"dsn": self.dsn}
        kwargs = {"user": self.user, "dbname": self.database, "port": self.port}
        if self.host:
            kwargs["host"] = self.host
        if self.password is not None:
            kwargs["password"] = self.password
        return kwargs

    def describe(self) -> str:
        """Where the server is, without the password."""
        if self.dsn:
            return "dsn " + mask_dsn(self.dsn)
        return f"{self.user}@{self.host or 'localhost'}:{self.port}/{self.database}"

    def connect(self, *, timeout_s: float = 10.0) -> psycopg2.extensions.connection:
        """A new connection; raises :class:`DatabaseError` naming the server (never its password)."""
        try:
            return psycopg2.connect(connect_timeout=max(1, int(timeout_s)), **self.connect_kwargs())
        except (psycopg2.OperationalError, psycopg2.ProgrammingError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            for secret in (self.dsn, self.password):
                if secret:
                    reason = scrub(reason, self.dsn) if secret is self.dsn else reason.replace(secret, "***")
            raise DatabaseError(f"cannot connect to PostgreSQL ({self.describe()}): {reason}") from None


def embedded_datadir(section: DatabaseSection) -> Path:
    """The embedded server's data directory: ``database:embedded_datadir``, else the default."""
    return Path(section.embedded_datadir or embedded_pg.default_datadir()).resolve()


def is_configured(section: DatabaseSection) -> bool:
    """A server is configured when a DSN or a host is given; otherwise the loader embeds one."""
    return bool(section.dsn or section.host)


@dataclass
class OpenedDatabase:
    """The database to use, and the embedded server to stop afterwards (if we started one)."""

    config: DatabaseConfiguration
    embedded: embedded_pg.EmbeddedPostgres | None = None

    def close(self) -> None:
        if self.embedded is not None:
            log.info("stopping the embedded PostgreSQL server in %s", self.embedded.datadir)
            self.embedded.stop()
            self.embedded = None


def open_database(section: DatabaseSection) -> OpenedDatabase:
    """The configured server, or an embedded one started in ``embedded_datadir``.

    The embedded server gets the configured database created if missing.
    """
    if is_configured(section):
        return OpenedDatabase(DatabaseConfiguration.from_section(section))
    datadir = embedded_datadir(section)  # the server runs in it
    log.info("no database configured: starting an embedded PostgreSQL server in %s", datadir)
    server = embedded_pg.start_cluster(datadir)
    create_database(DatabaseConfiguration(user=server.user, host=server.host, port=server.port,
                                          database="postgres"), section.database)
    config = DatabaseConfiguration(user=server.user, host=server.host, port=server.port,
                                   database=section.database)
    return OpenedDatabase(config, server)


def create_database(admin: DatabaseConfiguration, name: str) -> None:
    """``CREATE DATABASE name`` unless it exists (``admin`` points at a maintenance database)."""
    conn = admin.connect()
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()

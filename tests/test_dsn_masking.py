"""A password inside a database DSN or URI never shows (issue 16, item 16): not in describe(),
not in error messages, not in the loader's log at INFO, not in ``experiments.config``.

The end-to-end tests run ``python -m loader`` against localwhisk, the broker and the test
PostgreSQL, whose local socket trusts its user, so a DSN may carry any password.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid

import pytest

from loader.storage import database as storage_database
from loader.storage.database import DatabaseConfiguration, DatabaseError
from tests.injector_support import ECHO_ACTION, Setup

SECRET = "Sup3r-s3cret_pw"


@pytest.mark.parametrize("dsn, shown", [
    (f"host=db port=5432 user=u password={SECRET} dbname=d", "host=db port=5432 user=u password=*** dbname=d"),
    (f"password = '{SECRET} with spaces' host=db", "password = *** host=db"),
    (f"host=db password='it\\'s {SECRET}' dbname=d", "host=db password=*** dbname=d"),
    (f"postgresql://u:{SECRET}@db:5432/d?sslmode=require", "postgresql://u:***@db:5432/d?sslmode=require"),
    (f"postgres://u:{urllib.parse.quote(SECRET + '@/:', safe='')}@db/d", "postgres://u:***@db/d"),
    (f"postgresql://u@db/d?password={SECRET}&sslmode=require", "postgresql://u@db/d?password=***&sslmode=require"),
    (f"postgresql://:{SECRET}@/d?host=/run/pg", "postgresql://:***@/d?host=/run/pg"),
    ("host=db user=u dbname=d", "host=db user=u dbname=d"),
])
def test_mask_dsn(dsn, shown):
    assert storage_database.mask_dsn(dsn) == shown
    assert SECRET not in DatabaseConfiguration(dsn=dsn).describe()


def test_configuration_repr_hides_the_password_and_dsn():
    text = repr(DatabaseConfiguration(password=SECRET)) + repr(DatabaseConfiguration(dsn=f"password={SECRET}"))
    assert SECRET not in text


@pytest.mark.parametrize("dsn", [
    f"host=/nonexistent-{uuid.uuid4().hex} port=5432 user=u password={SECRET} dbname=d",
    f"postgresql://u:{SECRET}@/d?host=/nonexistent-{uuid.uuid4().hex}",
    f"host=db password={SECRET} this-is-not-key-value",
    f"postgresql://u:{SECRET}@[::1:bad/d",
])
def test_connection_errors_never_show_the_password(dsn):
    with pytest.raises(DatabaseError) as caught:
        DatabaseConfiguration(dsn=dsn).connect(timeout_s=2)
    assert SECRET not in str(caught.value)
    assert "***" in str(caught.value) or "password" not in str(caught.value)


@pytest.fixture
def setup(tmp_path, localwhisk, kafka_broker, database):
    return Setup(tmp_path, localwhisk, database, kafka_broker.bootstrap)


def _uri(database) -> str:
    return (f"postgresql://{database.user}:{SECRET}@/{database.database}"
            f"?host={urllib.parse.quote(database.host, safe='')}&port={database.port}")


@pytest.mark.parametrize("form", ["uri", "key-value"])
def test_loader_run_logs_and_stores_no_password(setup, form):
    user = f"dsn{uuid.uuid4().hex[:8]}"
    setup.user(user, {"echo": ECHO_ACTION})
    setup.trace(f"{user}-echo", ["0.05\t1.jpg"])
    db = setup.database
    dsn = (_uri(db) if form == "uri" else
           f"host={db.host} port={db.port} user={db.user} password='{SECRET}' dbname={db.database}")
    setup.write_config(database={"dsn": dsn}, logging={"root": {"level": "INFO"}})
    result = setup.run_loader()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "invocations: 1 issued of 1 planned" in result.stdout
    assert SECRET not in result.stdout and SECRET not in result.stderr
    assert "***" in result.stderr  # the server is still named, with its password masked
    (config,) = setup.query("SELECT config FROM experiments")[0]
    assert SECRET not in json.dumps(config)
    assert "***" in config["database"]["dsn"]


def test_loader_failing_to_connect_shows_no_password(setup):
    user = f"dsn{uuid.uuid4().hex[:8]}"
    setup.user(user, {"echo": ECHO_ACTION})
    setup.trace(f"{user}-echo", ["0.05\t1.jpg"])
    setup.write_config(database={"dsn": f"postgresql://u:{SECRET}@/d?host=/nonexistent-{uuid.uuid4().hex}"})
    result = setup.run_loader()
    assert result.returncode != 0
    assert "cannot connect to PostgreSQL" in result.stderr
    assert SECRET not in result.stdout and SECRET not in result.stderr

"""Every SQL example of docs/ runs against the dataset schema as it is (a real PostgreSQL).

A migration that renames a table or a column fails here, not in a researcher's notebook.
"""

import re
import textwrap
from pathlib import Path

import pytest

from loader.storage import experiments
from loader.storage import writer as store
from loader.storage.rows import (
    ResourceSample,
    ResourceSamples,
    RunKey,
    RunParameters,
    RunResources,
    RunStatus,
    RunUpdate,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"
_BLOCK = re.compile(r"^([ \t]*)```sql\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def _examples() -> list[tuple[str, str]]:
    found = []
    for path in sorted(DOCS.glob("*.md")):
        text = path.read_text()
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{path.name}:{line}", textwrap.dedent(match.group(2))))
    return found


EXAMPLES = _examples()


def test_the_docs_have_sql_examples():
    assert len(EXAMPLES) >= 5, [where for where, _ in EXAMPLES]


@pytest.fixture
def dataset(database):
    """Experiment 1 with two successful runs (one parameter each, samples for one), as the loader writes them."""
    conn = experiments.open_store(database)
    experiment_id = experiments.ensure_experiment(conn, name="my-generation", mode="generation")
    items: list = []
    for seq in range(2):
        key = RunKey(experiment_id, "image_resize", seq)
        items += [RunUpdate(key, "u", "image_resize", seq * 1000, RunStatus.SUCCESS, duration_ms=20 + seq,
                            wait_time_ms=3, cold_start=False, lateness_us=40, status_reason=None),
                  RunParameters(key, (("duration_ms", "20"),))]
    items.append(RunResources(RunKey(experiment_id, "image_resize", 0),
                              ResourceSamples.of((ResourceSample(1_000, 5 << 20, 0), ResourceSample(11_000, 7 << 20, 900)))))
    store.write_batch(conn, items)
    yield conn, experiment_id
    conn.close()


@pytest.mark.parametrize("where, sql", EXAMPLES, ids=[where for where, _ in EXAMPLES])
def test_a_docs_sql_example_runs(dataset, where, sql):
    conn, _ = dataset
    with conn, conn.cursor() as cur:
        cur.execute(sql)
        assert cur.description is not None, f"{where}: the example's last statement returns no rows"


def test_the_arrays_example_gives_the_peak_the_view_gives(dataset):
    conn, experiment_id = dataset
    with conn.cursor() as cur:
        cur.execute("SELECT r.run_id, (SELECT max(m) FROM unnest(s.memory_bytes) m) FROM runs r "
                    "JOIN run_samples s USING (run_id) WHERE r.experiment_id = %s", (experiment_id,))
        from_arrays = cur.fetchall()
        cur.execute("SELECT run_id, max(memory_bytes) FROM resources GROUP BY run_id")
        assert from_arrays == cur.fetchall() and from_arrays[0][1] == 7 << 20

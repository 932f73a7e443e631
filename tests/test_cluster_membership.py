"""Shards of one experiment against a real PostgreSQL: joining, the agreed start, refusals, dead shards,
the aggregate written once by the last shard."""

from __future__ import annotations

import threading
import time

import pytest

from faasload.clock import RealClock
from loader.cluster import clock_offset
from loader.cluster.membership import ClusterError, ClusterSettings, Membership
from loader.cluster.shard import Shard, shard_of
from loader.storage import experiments, shards
from loader.storage import writer as store
from loader.storage.rows import RunKey, RunStatus, RunUpdate


def _settings(index: int, count: int, **overrides) -> ClusterSettings:
    values = dict(shard=Shard(index, count), host=f"host{index}", start_delay_s=1.0, join_timeout_s=20.0,
                  heartbeat_interval_s=0.2, dead_after_s=1.0, max_clock_offset_us=50_000)
    values.update(overrides)
    return ClusterSettings(**values)


@pytest.fixture
def experiment(database):
    conn = experiments.open_store(database)
    try:
        yield experiments.ensure_experiment(conn, name="sharded", mode="injection")
    finally:
        conn.close()


class SkewedClock(RealClock):
    """A host whose wall clock is ``skew_s`` ahead."""

    def __init__(self, skew_s: float):
        super().__init__(spin_s=0.0)
        self.skew_s = skew_s

    def epoch_s(self) -> float:
        return super().epoch_s() + self.skew_s


def _join_all(database, experiment_id, count, clocks=None, **overrides):
    joined: dict[int, Membership] = {}
    errors: list[BaseException] = []

    def join(index: int) -> None:
        try:
            clock = (clocks or {}).get(index) or RealClock(spin_s=0.0)
            joined[index] = Membership.join(database, experiment_id, _settings(index, count, **overrides),
                                            planned=10 * index, clock=clock)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=join, args=(i,)) for i in range(1, count + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return joined, errors


def test_concurrent_shards_agree_on_one_start_a_few_seconds_ahead(database, experiment):
    joined, errors = _join_all(database, experiment, 3)
    assert not errors and len(joined) == 3
    try:
        starts = {i: m.wait_for_start() for i, m in joined.items()}
        agreed = {m.start_at_us for m in joined.values()}
        assert len(agreed) == 1
        # one instant on every shard's monotonic clock (one host here: the conversions agree within ms)
        assert max(starts.values()) - min(starts.values()) < 0.005
        assert 0.0 < min(starts.values()) - time.monotonic() < 1.0   # start_delay_s 1.0 after the last join
        conn = database.connect()
        rows = shards.read_shards(conn, experiment, 1.0)
        conn.close()
        assert [(r.shard, r.shards, r.host, r.state, r.planned) for r in rows] == [
            (1, 3, "host1", "joined", 10), (2, 3, "host2", "joined", 20), (3, 3, "host3", "joined", 30)]
        assert all(abs(r.clock_offset_us) < 5_000 and r.clock_rtt_us >= 0 for r in rows)  # one clock here
    finally:
        for membership in joined.values():
            membership.close()


def test_a_shard_joins_once_and_counts_must_agree(database, experiment):
    first = Membership.join(database, experiment, _settings(1, 3), planned=1, clock=RealClock())
    try:
        with pytest.raises(ClusterError, match=r"shard 1/3 already joined it \(from host1\)"):
            Membership.join(database, experiment, _settings(1, 3), planned=1, clock=RealClock())
        with pytest.raises(ClusterError, match=r"its shards are 3 \(shard 1 on host1 said so\), not 2"):
            Membership.join(database, experiment, _settings(2, 2), planned=1, clock=RealClock())
    finally:
        first.close()


def test_an_experiment_of_a_single_loader_cannot_be_joined(database, experiment):
    store.write_batch(database.connect(), [RunUpdate(RunKey(experiment, "u-a", 0), "u", "a", 0, RunStatus.SUCCESS)])
    with pytest.raises(ClusterError, match="already holds 1 runs of a loader that was not a shard"):
        Membership.join(database, experiment, _settings(1, 2), planned=1, clock=RealClock())


def test_a_skewed_clock_is_refused_and_the_other_shards_stop_waiting(database, experiment):
    waiting = Membership.join(database, experiment, _settings(1, 2), planned=1, clock=RealClock())
    try:
        with pytest.raises(ClusterError, match=r"clock is 10000\.\d ms ahead of the database server's .* "
                                               r"cluster:max_clock_offset_ms \(50 ms\)"):
            Membership.join(database, experiment, _settings(2, 2), planned=1, clock=SkewedClock(10.0))
        started_s = time.monotonic()
        with pytest.raises(ClusterError, match=r"shard 2/2 on host2 is failed before the start: this host's clock"):
            waiting.wait_for_start()
        assert time.monotonic() - started_s < 5.0
    finally:
        waiting.close()


def test_clock_offset_keeps_the_shortest_round_trip():
    reads = iter([0.0, 0.010, 100.0, 100.002])   # 10 ms then 2 ms round trips
    servers = iter([5_000_000 + 5_000, 105_000_000 + 1_000])
    offset = clock_offset.measure(lambda: next(servers), lambda: next(reads), probes=2)
    assert offset == clock_offset.ClockOffset(offset_us=5_000_000, rtt_us=2_000)
    assert offset.to_local_epoch_s(105_000_000) == 100.0
    assert offset.exceeds(4_000_000) and not offset.exceeds(5_000_000)


def test_join_timeout_names_the_missing_shards(database, experiment):
    alone = Membership.join(database, experiment, _settings(2, 3, join_timeout_s=0.5), planned=1, clock=RealClock())
    try:
        with pytest.raises(ClusterError, match=r"only 1 of 3 shards joined within cluster:join_timeout_s \(0.5 s\); "
                                               r"missing: 1, 3"):
            alone.wait_for_start()
    finally:
        alone.close()


def _user_of(index: int, count: int, taken: set[str] = frozenset()) -> str:
    return next(f"user{n}" for n in range(1000) if shard_of(f"user{n}", count) == index and f"user{n}" not in taken)


def test_a_dead_shard_is_reaped_and_the_last_live_shard_writes_the_aggregate(database, experiment):
    joined, errors = _join_all(database, experiment, 2)
    assert not errors
    alive, dying = joined[1], joined[2]
    user1, user2 = _user_of(1, 2), _user_of(2, 2)
    conn = database.connect()
    try:
        for membership in (alive, dying):
            membership.wait_for_start()
            membership.track(lambda: (2, 1, time.time()))
        store.write_batch(conn, [
            RunUpdate(RunKey(experiment, f"{user1}-a", 0), user1, "a", 0, RunStatus.SUCCESS, lateness_us=100,
                      sent_offset_us=100, activation_id="a" * 32, start_ms=1, end_ms=2, duration_ms=1),
            RunUpdate(RunKey(experiment, f"{user2}-a", 0), user2, "a", 0, RunStatus.SUCCESS, lateness_us=300,
                      sent_offset_us=300, activation_id="b" * 32, start_ms=1, end_ms=2, duration_ms=1),
            RunUpdate(RunKey(experiment, f"{user2}-a", 1), user2, "a", 1000, RunStatus.SENT, lateness_us=200,
                      sent_offset_us=1200, activation_id="c" * 32)])
        dying._stop_heartbeat()   # killed: no more heartbeats, no end
        started_s = time.monotonic()
        summary = alive.finish({"stopped": False, "late_threshold_ms": 10.0}, late_threshold_us=10_000)
        assert time.monotonic() - started_s >= 0.5    # it waited for the heartbeat to go stale
        assert summary["issued"] == 3 and summary["planned"] == 30
        assert summary["statuses"] == {"lost": 1, "success": 2}
        by_shard = {s["shard"]: s for s in summary["shards"]}
        assert by_shard[1]["state"] == "finished" and by_shard[1]["rows"] == 1 and by_shard[1]["not_recorded"] == 9
        assert by_shard[2]["state"] == "dead" and by_shard[2]["rows"] == 2 and by_shard[2]["not_recorded"] == 18
        assert by_shard[2]["lateness_ms"]["max"] == 0.3
        assert summary["not_recorded"] == 27 and summary["start_spread_ms"] is not None
        with conn.cursor() as cur:
            cur.execute("SELECT status, status_reason FROM runs WHERE trace_name = %s AND seq = 1", (f"{user2}-a",))
            status, reason = cur.fetchone()
            cur.execute("SELECT summary->'statuses', ended_at IS NOT NULL FROM experiments WHERE experiment_id = %s",
                        (experiment,))
            stored, ended = cur.fetchone()
        conn.commit()
        assert status == "lost" and reason.startswith("shard 2/2 on host2 stopped heartbeating (dead)")
        assert stored == {"lost": 1, "success": 2} and ended
        # the dead shard, coming back, learns that it was declared dead; the aggregate is not written twice
        assert dying.end("finished") == "dead"
    finally:
        conn.close()
        for membership in joined.values():
            membership.close()


def test_shards_ending_together_return_the_same_aggregate_computed_once(database, experiment):
    joined, errors = _join_all(database, experiment, 2)
    assert not errors
    for membership in joined.values():
        membership.wait_for_start()
        membership.track(lambda: (0, 0, time.time()))
    results: dict[int, dict] = {}

    def finish(index: int) -> None:
        results[index] = joined[index].finish({"stopped": False}, late_threshold_us=10_000)

    threads = [threading.Thread(target=finish, args=(i,)) for i in joined]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert results[1] == results[2] and [s["state"] for s in results[1]["shards"]] == ["finished", "finished"]
        assert results[1]["planned"] == 30 and results[1]["issued"] == 0
    finally:
        for membership in joined.values():
            membership.close()

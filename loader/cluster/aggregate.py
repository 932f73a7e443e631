"""The summary of a sharded experiment, computed from every shard's runs in the database.

The aggregate is computed on read from the ``runs`` rows (one pass, streamed), with the same
:class:`~loader.storage.summary.RunStats` that a single loader fills as it goes, so its fields
mean the same as a single loader's summary; the shard that ends last stores it in
``experiments.summary`` (``python -m loader.cluster status`` recomputes it at any time).  Each
run is counted for its shard too (by the split's hash of its user), so a dead shard's figures
come from what it wrote before it died.  Added to the single-loader fields:

* ``shards``: per shard its host, effective state (``dead`` when its heartbeat is stale) and
  reason, planned / issued / rows, statuses, lateness, clock offset to the database server and
  start lag (when its scheduler started, on the server's clock, minus the agreed start);
* ``not_recorded``: planned invocations without any row (a shard that died or failed before
  sending them);
* ``start_spread_ms``: the largest difference between the shards' start lags;
* ``clock_uncertainty_ms``: the largest half round trip of the clock-offset measurements.
"""

from __future__ import annotations

from loader.cluster.shard import shard_of
from loader.storage.rows import RunStatus
from loader.storage.shards import ShardRow, iter_run_facts
from loader.storage.summary import RunStats


def aggregate(conn, experiment_id: int, rows: list[ShardRow], late_threshold_us: int) -> dict:
    """The experiment's summary over every shard's runs (see the module doc)."""
    count = rows[0].shards if rows else 1
    planned = [r.planned for r in rows if r.planned is not None]
    total = RunStats(late_threshold_us, sum(planned) if planned else None)
    per_shard = {r.shard: RunStats(late_threshold_us, r.planned) for r in rows}
    for user, action, status, lateness_us, duration_ms, wait_time_ms, cold_start, has_record, resources_status, \
            peak_memory_bytes in iter_run_facts(conn, experiment_id):
        targets = [total]
        shard_stats = per_shard.get(shard_of(user, count))
        if shard_stats is not None:
            targets.append(shard_stats)
        for stats in targets:
            if lateness_us is not None:
                stats.record_sent(lateness_us)
            stats.record_terminal(action, RunStatus(status), duration_ms=duration_ms, wait_time_ms=wait_time_ms,
                                  cold_start=cold_start, peak_memory_bytes=peak_memory_bytes, has_record=has_record,
                                  resources_status=resources_status)
    summary = total.summary()
    shard_summaries = [_shard_summary(r, per_shard[r.shard]) for r in rows]
    missing = sorted(set(range(1, count + 1)) - {r.shard for r in rows})
    summary["shards"] = shard_summaries
    summary["shards_missing"] = missing
    summary["not_recorded"] = sum(s["not_recorded"] or 0 for s in shard_summaries)
    lags = [s["start_lag_ms"] for s in shard_summaries if s["start_lag_ms"] is not None]
    summary["start_spread_ms"] = round(max(lags) - min(lags), 3) if lags else None
    rtts = [r.clock_rtt_us for r in rows if r.clock_rtt_us is not None]
    summary["clock_uncertainty_ms"] = round(max(rtts) / 2000, 3) if rtts else None
    summary["stopped"] = any(r.state == "stopped" for r in rows)
    return summary


def _shard_summary(row: ShardRow, stats: RunStats) -> dict:
    own = stats.summary()
    recorded = sum(own["statuses"].values())
    lag_us = row.start_lag_us
    entry = {
        "shard": row.shard, "host": row.host, "state": row.state, "reason": row.reason,
        "planned": row.planned, "issued": own["issued"], "rows": recorded,
        "not_recorded": None if row.planned is None else row.planned - recorded,
        "statuses": own["statuses"], "late": own["late"], "lateness_ms": own["lateness_ms"],
        "clock_offset_ms": None if row.clock_offset_us is None else round(row.clock_offset_us / 1000, 3),
        "clock_rtt_ms": None if row.clock_rtt_us is None else round(row.clock_rtt_us / 1000, 3),
        "start_lag_ms": None if lag_us is None else round(lag_us / 1000, 3),
        "heartbeat_age_s": round(row.heartbeat_age_s, 1),
    }
    if row.summary and row.summary.get("user_events"):
        entry["user_events"] = row.summary["user_events"]
    return entry


def format_shards(summary: dict) -> str:
    """The per-shard lines of an aggregate, for people."""
    lines = []
    for s in summary.get("shards", []):
        lateness = s["lateness_ms"]
        late_text = f"lateness p50 {lateness['p50']:g} ms, p99 {lateness['p99']:g} ms" if lateness else "nothing sent"
        lag = "n/a" if s["start_lag_ms"] is None else f"{s['start_lag_ms']:+.3f} ms"
        offset = "n/a" if s["clock_offset_ms"] is None else f"{s['clock_offset_ms']:+.3f} ms"
        unrecorded = f", {s['not_recorded']} never recorded" if s["not_recorded"] else ""
        lines.append(f"  shard {s['shard']} on {s['host']}: {s['state']}, {s['issued']} issued of {s['planned']} "
                     f"planned{unrecorded}; {late_text}; start lag {lag}; clock offset {offset}"
                     + (f" ({s['reason']})" if s["reason"] and s["state"] != "finished" else ""))
    for number in summary.get("shards_missing", []):
        lines.append(f"  shard {number}: never joined")
    spread = summary.get("start_spread_ms")
    if spread is not None:
        lines.append(f"  start spread between shards: {spread:g} ms (clock offsets known within "
                     f"± {summary.get('clock_uncertainty_ms')} ms)")
    return "\n".join(lines)

"""Generator mode, unit level: random streams, fake traces, checkpoints and resume with a fake sink,
and the reconciliation with a real PostgreSQL."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from loader.generation import checkpoint as genstate
from loader.generation.session import Generation, GenerationError, GenerationSettings
from loader.generation.traces import as_text, below, draw, stream_seed
from loader.manifest import ParameterSpec, SpecKind
from loader.storage import experiments
from loader.storage import writer as store
from loader.storage.rows import FunctionRow, RunKey, RunParameters, RunStatus, RunUpdate

ROOT = Path(__file__).resolve().parent.parent

FUNCTIONS = [
    FunctionRow("resize", input_kind="image", parameter_specs=(
        {"name": "width", "range_int": [8, 128]}, {"name": "mode", "ensemble": ["nearest", "bilinear"]})),
    FunctionRow("gain", package="media", input_kind="audio", parameter_specs=(
        {"name": "gain_db", "range_float": [-12.0, 12.0]}, {"name": "flag", "ensemble": [True, False, 3, 2.5]})),
    FunctionRow("filter", input_kind="video", parameter_specs=({"name": "step", "range_int": [1, 3]},)),
]
NBINPUTS = {"image": 7, "audio": 5, "video": 6}


def settings(tmp_path: Path, **changes) -> GenerationSettings:
    values = dict(seed=42, nbinputs=dict(NBINPUTS), interinvocationtime_s=0.5, incont="in", outcont="out",
                  statedir=tmp_path / "state", checkpoint_interval_s=3600.0)
    values.update(changes)
    return GenerationSettings(**values)


def planned_keys(invocations) -> list[tuple]:
    return [(i.trace_name, i.seq, i.user, i.action, i.input_object, i.parameters) for i in invocations]


def drain(source) -> list:
    out = []
    while (invocation := source.next_invocation()) is not None:
        out.append(invocation)
    return out


def run_all(generation: Generation) -> list:
    return sorted(planned_keys(i for t in generation.traces for i in drain(t)))


# --------------------------------------------------------------------------- streams


def test_stream_seed_is_stable_and_independent_of_python_hash():
    # SHA-256 of the text: the same in every process (PYTHONHASHSEED does not matter).
    code = "from loader.generation.traces import stream_seed; print(stream_seed(42, 'resize'))"
    outputs = {subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                              env={"PYTHONHASHSEED": str(n), "PATH": "/usr/bin:/bin"}).stdout for n in (1, 2)}
    assert outputs == {f"{stream_seed(42, 'resize')}\n"}
    assert stream_seed(42, "resize") != stream_seed(42, "gain") != stream_seed(43, "gain")


def test_draws_stay_in_range_and_cover_it():
    rng = random.Random(1)
    ints = [draw(rng, ParameterSpec("w", SpecKind.RANGE_INT, (3, 6))) for _ in range(400)]
    assert set(ints) == {3, 4, 5, 6}
    floats = [draw(rng, ParameterSpec("g", SpecKind.RANGE_FLOAT, (-1.0, 1.0))) for _ in range(400)]
    assert all(-1.0 <= f < 1.0 for f in floats) and min(floats) < -0.9 and max(floats) > 0.9
    assert all(float(as_text(f)) == f for f in floats)
    choices = [draw(rng, ParameterSpec("m", SpecKind.ENSEMBLE, ("a", True, 2))) for _ in range(100)]
    assert {as_text(c) for c in choices} == {"a", "true", "2"}
    assert draw(rng, ParameterSpec("one", SpecKind.RANGE_INT, (5, 5))) == 5
    assert {below(rng, 1) for _ in range(10)} == {0}


def test_same_seed_same_sequence_different_functions_different_streams(tmp_path):
    first = run_all(Generation(settings(tmp_path / "a"), FUNCTIONS))
    again = run_all(Generation(settings(tmp_path / "b"), list(reversed(FUNCTIONS))))
    assert first == again
    other_seed = run_all(Generation(settings(tmp_path / "c", seed=43), FUNCTIONS))
    assert [k[:5] for k in other_seed] == [k[:5] for k in first] and other_seed != first
    # A function's stream does not depend on the others: drop one, the rest is unchanged.
    alone = run_all(Generation(settings(tmp_path / "d"), FUNCTIONS[:1]))
    assert alone == [k for k in first if k[0] == "resize"]
    # Two functions with identical specs still get different parameter streams.
    twin = FunctionRow("resize2", input_kind="image", parameter_specs=FUNCTIONS[0].parameter_specs)
    both = run_all(Generation(settings(tmp_path / "e"), [FUNCTIONS[0], twin]))
    assert [k[5] for k in both if k[0] == "resize"] != [k[5] for k in both if k[0] == "resize2"]


def test_trace_shape(tmp_path):
    generation = Generation(settings(tmp_path), FUNCTIONS)
    assert [t.name for t in generation.traces] == ["filter", "gain", "resize"]     # ordered by name
    gain = drain(generation.traces[1])
    assert [i.seq for i in gain] == [0, 1, 2, 3, 4]
    assert [i.input_object for i in gain] == ["1.wav", "2.wav", "3.wav", "4.wav", "5.wav"]
    assert [i.planned_offset_us for i in gain] == [0, 500_000, 1_000_000, 1_500_000, 2_000_000]
    assert {(i.user, i.action) for i in gain} == {("user-gain", "media/gain")}
    assert [name for name, _ in gain[0].parameters] == ["incont", "object", "outcont", "gain_db", "flag"]
    assert gain[2].parameters[:3] == (("incont", "in"), ("object", "3.wav"), ("outcont", "out"))
    assert generation.planned == 18 and generation.experiment.startswith("generation-seed42-")


def test_function_without_input_kind_is_refused(tmp_path):
    bad = FunctionRow("burn", manifest_path="/x/manifest.yml")
    with pytest.raises(GenerationError, match=r"function 'burn' has no input_kind \(annotation input_kind: "
                                              r"image\|audio\|video in /x/manifest.yml\)"):
        Generation(settings(tmp_path), FUNCTIONS + [bad])
    with pytest.raises(GenerationError, match="the functions table is empty"):
        Generation(settings(tmp_path), [])


# --------------------------------------------------------------------------- checkpoints with a fake sink


class FakeSink:
    """Records invocations as a store would, confirms a chosen subset, like the pipeline's on_stored."""

    def __init__(self):
        self.rows: dict[tuple, tuple] = {}

    def record(self, generation: Generation, invocation, confirmed: bool) -> None:
        key = (invocation.trace_name, invocation.seq)
        self.rows[key] = planned_keys([invocation])[0]          # upsert on the natural key
        if confirmed:
            generation.on_stored(invocation, RunStatus.SUCCESS)


def interrupted_session(generation: Generation, sink: FakeSink, budget: int, rng: random.Random) -> None:
    """Send up to ``budget`` invocations round-robin; leave some of the last ones unconfirmed (in flight)."""
    sent = 0
    live = list(generation.traces)
    while live and sent < budget:
        for trace in list(live):
            invocation = trace.next_invocation()
            if invocation is None:
                live.remove(trace)
                continue
            sent += 1
            sink.record(generation, invocation, confirmed=rng.random() < 0.7 or sent < budget - 4)


@pytest.mark.parametrize("budgets", [[0], [1], [5, 3], [4, 4, 4], [17]])
def test_stop_and_resume_equals_uninterrupted(tmp_path, budgets):
    expected = run_all(Generation(settings(tmp_path / "ref"), FUNCTIONS))
    sink, rng = FakeSink(), random.Random(sum(budgets))
    for budget in budgets:
        generation = Generation(settings(tmp_path), FUNCTIONS)
        interrupted_session(generation, sink, budget, rng)
        generation.checkpoint("sigterm")
    final = Generation(settings(tmp_path), FUNCTIONS)
    assert final.previous is not None and final.previous.reason == "sigterm"
    for trace in final.traces:
        for invocation in drain(trace):
            sink.record(final, invocation, confirmed=True)
    final.checkpoint("end")
    assert sorted(sink.rows.values()) == expected        # same keys and parameters: no gap
    assert len(sink.rows) == len(expected)               # natural keys: no duplicate row
    assert genstate.newest(tmp_path / "state").complete
    assert Generation(settings(tmp_path), FUNCTIONS).complete


def test_out_of_order_confirmations_advance_only_the_contiguous_prefix(tmp_path):
    generation = Generation(settings(tmp_path), FUNCTIONS)
    resize = generation.traces[2]
    invocations = drain(resize)
    for seq in (1, 2, 4):
        generation.on_stored(invocations[seq], RunStatus.SUCCESS)
    generation.on_stored(invocations[0], RunStatus.LOST)          # lost: re-run on resume
    generation.on_stored(invocations[3], RunStatus.CANCELLED)
    assert resize.position == 0
    generation.on_stored(invocations[0], RunStatus.DEVELOPER_ERROR)  # a final outcome of the action
    assert resize.position == 3
    state = resize.state()
    # The random state at the position replays exactly the rest of the trace.
    generation.checkpoint("sigint")
    resumed = Generation(settings(tmp_path), FUNCTIONS)
    assert resumed.traces[2].position == 3 and resumed.traces[2].state().rng_state == state.rng_state
    assert planned_keys(drain(resumed.traces[2])) == planned_keys(invocations[3:])


def test_periodic_checkpoints_only_when_positions_moved(tmp_path):
    clock = [0.0]
    generation = Generation(settings(tmp_path, checkpoint_interval_s=5.0), FUNCTIONS, monotonic_s=lambda: clock[0])
    first = drain(generation.traces[0])
    generation.on_stored(first[0], RunStatus.SUCCESS)
    assert genstate.newest(tmp_path / "state") is None            # interval not elapsed
    clock[0] = 6.0
    generation.on_stored(first[1], RunStatus.SUCCESS)
    written = genstate.newest(tmp_path / "state")
    assert written.reason == "periodic" and written.traces[0].position == 2 and written.number == 1
    clock[0] = 12.0
    generation.on_stored(first[4], RunStatus.SUCCESS)             # position unchanged: nothing written
    assert genstate.newest(tmp_path / "state").number == 1


# --------------------------------------------------------------------------- state files


def test_state_files_are_atomic_numbered_and_pruned(tmp_path):
    generation = Generation(settings(tmp_path), FUNCTIONS)
    paths = [generation.checkpoint(f"r{n}") for n in range(8)]
    names = sorted(p.name for p in (tmp_path / "state").iterdir())
    assert names == [p.name for p in paths[-genstate.KEEP:]]      # no temporary file left, old ones pruned
    newest = genstate.newest(tmp_path / "state")
    assert newest.number == 8 and newest.reason == "r7" and newest.experiment == generation.experiment
    document = json.loads(paths[-1].read_text())
    assert document["complete"] is False and len(document["traces"][0]["rng_state"][1]) == 625 * 8


def test_corrupt_newest_checkpoint_is_reported(tmp_path):
    Generation(settings(tmp_path), FUNCTIONS).checkpoint("start")
    path = tmp_path / "state" / "gen-00000002.genstate"
    path.write_text("{not json")
    with pytest.raises(genstate.GenStateError, match=rf"{path}: not a valid checkpoint: JSONDecodeError"):
        Generation(settings(tmp_path), FUNCTIONS)


@pytest.mark.parametrize("change,message", [
    ({"seed": 7}, r"the seed changed since the checkpoint \(42 there, 7 now\): resuming would not give the same "
                  r"dataset; to start from scratch, delete .*/state"),
    ({"nbinputs": {"image": 8, "audio": 5, "video": 6}}, r"the nbinputs changed since the checkpoint"),
    ({"outcont": "elsewhere"}, r"the functions or storage parameters changed since the checkpoint"),
    ({"experiment": "other"}, r"continues experiment 'generation-seed42-.*', but experiment:name is 'other'"),
])
def test_resuming_a_different_generation_is_refused(tmp_path, change, message):
    Generation(settings(tmp_path), FUNCTIONS).checkpoint("start")
    with pytest.raises(GenerationError, match=r"gen-00000001\.genstate.*" + message):
        Generation(settings(tmp_path, **change), FUNCTIONS)


def test_changed_functions_are_refused(tmp_path):
    Generation(settings(tmp_path), FUNCTIONS).checkpoint("start")
    with pytest.raises(GenerationError, match="functions or storage parameters changed"):
        Generation(settings(tmp_path), FUNCTIONS[:2])


# --------------------------------------------------------------------------- reconciliation (real PostgreSQL)


def store_runs(conn, experiment_id: int, invocations, statuses) -> None:
    items = []
    for invocation, status in zip(invocations, statuses):
        key = RunKey(experiment_id, invocation.trace_name, invocation.seq)
        items.append(RunUpdate(key, invocation.user, invocation.action, invocation.planned_offset_us, status,
                               input_object=invocation.input_object))
        items.append(RunParameters(key, invocation.parameters))
    store.write_batch(conn, items)


def test_reconcile_drops_unfinished_and_skips_recorded(tmp_path, database):
    conn = experiments.open_store(database)
    try:
        generation = Generation(settings(tmp_path), FUNCTIONS)
        experiment_id = experiments.ensure_experiment(conn, name=generation.experiment, mode="generation")
        resize = drain(generation.traces[2])
        S, L, C, P = RunStatus.SUCCESS, RunStatus.LOST, RunStatus.CANCELLED, RunStatus.SENT
        store_runs(conn, experiment_id, resize, [S, S, L, S, C, P, S])
        for invocation in resize[:2]:
            generation.on_stored(invocation, S)
        generation.checkpoint("killed")                           # position 2; seq 3 and 6 recorded after it
        resumed = Generation(settings(tmp_path), FUNCTIONS)
        report = resumed.reconcile(conn, experiment_id)
        assert report == {"deleted": 3, "recorded_after_checkpoint": 2}
        replanned = drain(resumed.traces[2])
        assert [i.seq for i in replanned] == [2, 4, 5]
        assert planned_keys(replanned) == planned_keys([resize[2], resize[4], resize[5]])
        assert [i.planned_offset_us for i in replanned] == [0, 500_000, 1_000_000]   # from this session's start
        with conn.cursor() as cur:
            cur.execute("SELECT seq, status FROM runs WHERE experiment_id = %s ORDER BY seq", (experiment_id,))
            assert cur.fetchall() == [(0, "success"), (1, "success"), (3, "success"), (6, "success")]
        conn.commit()
        for invocation in replanned:
            resumed.on_stored(invocation, S)
        assert resumed.traces[2].position == 7
        # A database that lacks runs the checkpoint counts as recorded is refused.
        resumed.checkpoint("end")
        with conn, conn.cursor() as cur:
            cur.execute("DELETE FROM runs WHERE experiment_id = %s AND seq = 1", (experiment_id,))
        with pytest.raises(GenerationError, match=r"the checkpoint says the first 7 runs of 'resize' are recorded "
                                                  r"in experiment .*, the database has 3 \(1 traces differ\)"):
            Generation(settings(tmp_path), FUNCTIONS).reconcile(conn, experiment_id)
    finally:
        conn.close()


def test_streams_follow_the_documented_algorithm(tmp_path):
    """docs/generation_traces.md, re-implemented from its text: same values as the loader's traces."""
    import hashlib

    def documented(seed: int, function: str, specs: list[dict], length: int) -> list[list[str]]:
        rng = random.Random(int.from_bytes(hashlib.sha256(
            b"faasload-generation\0" + str(seed).encode() + b"\0" + function.encode()).digest(), "big"))

        def below_(n):
            while (v := rng.getrandbits(n.bit_length())) >= n:
                pass
            return v
        out = []
        for _ in range(length):
            values = []
            for spec in specs:
                if "range_int" in spec:
                    a, b = spec["range_int"]
                    values.append(str(a + below_(b - a + 1)))
                elif "range_float" in spec:
                    a, b = spec["range_float"]
                    values.append(repr(a + (b - a) * rng.getrandbits(53) / 2 ** 53))
                else:
                    v = spec["ensemble"][below_(len(spec["ensemble"]))]
                    values.append(("true" if v else "false") if isinstance(v, bool) else str(v))
            out.append(values)
        return out

    generation = Generation(settings(tmp_path), FUNCTIONS)
    for trace in generation.traces:
        drawn = [[value for _, value in i.parameters[3:]] for i in drain(trace)]
        assert drawn == documented(42, trace.name, list(trace.function.parameter_specs), trace.length)

"""monitor/handlers.py: an activation query waits for the sample after the activation's end, and
no longer than it takes (a FakeClock; the handlers' sleeps move it, and the sampler ticks when a
sampling deadline passes, as its thread would)."""

import math
import shutil
from pathlib import Path

import pytest

from faasload.clock import FakeClock
from faasload.monitor_protocol import (
    ActivationAnswer,
    ActivationNotice,
    ActivationQuery,
    BatchAnswer,
    BatchQuery,
    Boundary,
    ContainerNotice,
    ErrorAnswer,
    Lifecycle,
    encode_query,
    parse_answer,
)
from monitor.cgroups import CgroupV2Reader
from monitor.discovery import Discovery
from monitor.handlers import TRAILING_SAMPLE_LONGEST_WAIT_RESOLUTIONS, TRAILING_SAMPLE_WAIT_RESOLUTIONS, Handlers
from monitor.registry import Registry
from monitor.sampler import Sampler
from monitor.servers import ReadOutcome

V2 = Path(__file__).parent / "fixtures_data" / "cgroup_v2"
DOCKER = "4f1c3a9e0b7d2c8e5a6f1b3d9c0e7a2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a3c"
ACT = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"
RES_S = 0.01


class World:
    """A registry over the v2 fixture tree, its sampler, and handlers whose sleeps advance the
    clock, ticking the sampler at its deadlines (none before ``stalled_until_s``: a sampler late
    on a loaded machine)."""

    def __init__(self, root: Path):
        self.clock = FakeClock(start_s=100.0, epoch_offset_s=1_700_000_000.0)
        reader = CgroupV2Reader(root)
        self.registry = Registry(reader, Discovery(reader), self.clock, resolution_s=RES_S, maxage_s=60.0,
                                 retention_s=30.0)
        self.sampler = Sampler(self.registry, self.clock, RES_S)
        self.stalled_until_s = -math.inf
        self.slept_s: list[float] = []
        self.handlers = Handlers(self.registry, RES_S, self.clock.epoch_s, monotonic_s=self.clock.monotonic_s,
                                 sleep=self.sleep)
        self.registry.apply(ContainerNotice(Lifecycle.RUN, DOCKER))
        self.due_s = self.sampler.tick()

    def sleep(self, duration_s: float) -> None:
        self.slept_s.append(duration_s)
        until_s = self.clock.monotonic_s() + duration_s
        while max(self.due_s, self.stalled_until_s) <= until_s:
            self.clock.sleep_until(max(self.due_s, self.stalled_until_s))
            self.due_s = self.sampler.tick()
        self.clock.sleep_until(until_s)

    def run_activation(self, activation: str, duration_s: float) -> float:
        """Sample through an activation that ends now + duration_s, between two samples; its end's date."""
        self.registry.apply(ActivationNotice(Boundary.START, DOCKER, activation, self.clock.epoch_s()))
        self.sleep(duration_s)
        end_s = self.clock.epoch_s()
        self.registry.apply(ActivationNotice(Boundary.END, DOCKER, activation, end_s))
        self.slept_s.clear()
        return end_s

    def ask(self, query):
        return parse_answer(self.handlers.query(encode_query(query), ReadOutcome.COMPLETE))


@pytest.fixture
def world(tmp_path):
    root = tmp_path / "cg"
    shutil.copytree(V2, root)
    return World(root)


def test_answered_once_the_sample_after_the_end_is_taken(world):
    end_s = world.run_activation(ACT, 0.0523)   # ends 2.3 ms after a sample: the next is 7.7 ms later
    answer = world.ask(ActivationQuery(ACT))
    assert isinstance(answer, ActivationAnswer)
    assert answer.samples[-1].date_s >= end_s and answer.samples[-2].date_s < end_s
    waited_s = sum(world.slept_s)
    # polled every quarter period: answered within a quarter period of the sample, not at the bound
    assert answer.samples[-1].date_s - end_s <= waited_s + 1e-9 < answer.samples[-1].date_s - end_s + RES_S / 4
    assert waited_s < TRAILING_SAMPLE_WAIT_RESOLUTIONS * RES_S / 2


def test_no_wait_when_the_sample_after_the_end_exists(world):
    end_s = world.run_activation(ACT, 0.05)
    world.sleep(0.015)
    world.slept_s.clear()
    answer = world.ask(ActivationQuery(ACT))
    assert isinstance(answer, ActivationAnswer) and answer.samples[-1].date_s >= end_s
    assert world.slept_s == []


def test_a_late_sampler_is_waited_for_up_to_the_bound(world):
    end_s = world.run_activation(ACT, 0.0523)
    world.stalled_until_s = math.inf       # no sample after the end comes
    answer = world.ask(ActivationQuery(ACT))
    assert isinstance(answer, ActivationAnswer) and answer.samples[-1].date_s < end_s
    assert sum(world.slept_s) == pytest.approx(TRAILING_SAMPLE_LONGEST_WAIT_RESOLUTIONS * RES_S, abs=1e-6)


def test_a_sampler_late_by_five_periods_still_gives_the_sample_after_the_end(world):
    end_s = world.run_activation(ACT, 0.0523)
    world.stalled_until_s = world.clock.monotonic_s() + 5 * RES_S
    answer = world.ask(ActivationQuery(ACT))
    assert isinstance(answer, ActivationAnswer) and answer.samples[-1].date_s >= end_s + 4 * RES_S
    assert sum(world.slept_s) < 5.5 * RES_S


def test_a_paused_container_is_not_waited_for(world):
    world.run_activation(ACT, 0.0523)
    world.registry.apply(ContainerNotice(Lifecycle.PAUSE, DOCKER))
    answer = world.ask(ActivationQuery(ACT))
    assert isinstance(answer, ActivationAnswer) and world.slept_s == []


def test_an_activation_no_notice_bound_waits_for_its_attribution(world):
    end_ms = int(world.clock.epoch_s() * 1000)
    expected_s = (end_ms + 1) / 1000 + TRAILING_SAMPLE_WAIT_RESOLUTIONS * RES_S - world.clock.epoch_s()
    answer = world.ask(ActivationQuery(OTHER, "guest", "hello", end_ms - 50, end_ms))
    assert isinstance(answer, ErrorAnswer)   # nothing to attribute it to on this fixture
    assert world.slept_s == [pytest.approx(expected_s)]


def test_a_batch_waits_for_every_activation_then_answers_all(world):
    first_end_s = world.run_activation(ACT, 0.0523)
    world.registry.apply(ActivationNotice(Boundary.START, DOCKER, OTHER, world.clock.epoch_s()))
    world.sleep(0.004)       # the second ends 6.3 ms after the first, still before the next sample
    second_end_s = world.clock.epoch_s()
    world.registry.apply(ActivationNotice(Boundary.END, DOCKER, OTHER, second_end_s))
    world.slept_s.clear()
    answer = world.ask(BatchQuery((ActivationQuery(ACT), ActivationQuery(OTHER))))
    assert isinstance(answer, BatchAnswer)
    for activation, end_s in zip(answer.answers, (first_end_s, second_end_s)):
        assert isinstance(activation, ActivationAnswer) and activation.samples[-1].date_s >= end_s
    assert sum(world.slept_s) < TRAILING_SAMPLE_WAIT_RESOLUTIONS * RES_S - (second_end_s - first_end_s)

"""The rescheduling of invocations that provably did not reach the platform (loader/sending/retries.py)."""

from __future__ import annotations

import random
import threading

from faasload.clock import FakeClock
from faasload.retry import Backoff
from loader.plan import PlannedInvocation
from loader.platform.client import InvokeOutcome, InvokeStatus
from loader.scheduler import Dispatch
from loader.sending.retries import Retries, RetryPolicy

INVOCATION = PlannedInvocation("u-a", 0, "u", "a", 0, "x.jpg", ())
THROTTLED = InvokeOutcome(InvokeStatus.THROTTLED, 1, http_status=429, reason="HTTP 429", not_processed=True)
BUSY = InvokeOutcome(InvokeStatus.HTTP_ERROR, 1, http_status=503, reason="HTTP 503", not_processed=True,
                     retry_after_s=3.0)
GATEWAY = InvokeOutcome(InvokeStatus.HTTP_ERROR, 1, http_status=502, reason="HTTP 502")


def _retries(max_retries=3, first_s=1.0):
    clock, resent, given_up, stopping = FakeClock(start_s=0.0), [], [], threading.Event()
    policy = RetryPolicy(max_retries, Backoff(first_s, first_s * 32, full_jitter=True, rng=random.Random(7)))
    retries = Retries(policy, resent.append, given_up.append, clock=clock, stopping=stopping)
    return retries, clock, resent, given_up, stopping


def test_only_what_provably_did_not_reach_the_platform_is_rescheduled():
    retries, clock, resent, _, _ = _retries()
    item = Dispatch(INVOCATION, 10)
    assert not retries.offer(item, GATEWAY, sent_s=0.0)         # a 5xx after the body was sent: never again
    assert retries.offer(item, BUSY, sent_s=0.0)
    assert retries.tick() == 3.0 and resent == []               # Retry-After: due in 3 s, nothing slept on
    clock.now_s = 3.0
    assert retries.tick() is None
    (again,) = resent
    assert (again.invocation, again.attempt, again.first_sent_s, again.previous.attempts) == (INVOCATION, 2, 0.0, 1)
    assert again.dispatched_offset_us == 10


def test_backoff_is_capped_full_jitter_and_retries_end_at_the_limit():
    retries, clock, resent, _, _ = _retries(max_retries=2, first_s=1.0)
    item = Dispatch(INVOCATION, 0)
    assert retries.offer(item, THROTTLED, sent_s=0.0)
    first_due = retries.tick()
    assert 0.0 <= first_due <= 1.0                              # uniform in [0, first_s]
    clock.now_s = first_due
    retries.tick()
    second = resent[-1]
    assert retries.offer(second, THROTTLED, sent_s=clock.now_s)
    assert 0.0 <= retries.tick() - clock.now_s <= 2.0           # the bound doubles
    clock.now_s += 2.0
    retries.tick()
    assert not retries.offer(resent[-1], THROTTLED, sent_s=clock.now_s)   # attempt 3 = 2 retries: the end


def test_a_stop_gives_up_what_waits_with_its_last_answer():
    retries, clock, resent, given_up, stopping = _retries()
    assert retries.offer(Dispatch(INVOCATION, 0), BUSY, sent_s=0.0)
    stopping.set()
    assert not retries.offer(Dispatch(INVOCATION, 0), THROTTLED, sent_s=0.0)   # stopping: record it now
    assert retries.flush() == 1 and resent == []
    (item,) = given_up
    assert (item.attempt, item.previous.http_status, item.previous.attempts) == (2, 503, 1)

"""faasload/monitor_protocol.py: every message shape, and the errors bad messages get."""

import json

import pytest

from faasload.monitor_protocol import (
    ActivationAnswer,
    ActivationNotice,
    ActivationQuery,
    Boundary,
    ContainerNotice,
    ErrorAnswer,
    ErrorCode,
    Lifecycle,
    ProtocolError,
    Sample,
    Samples,
    WindowQuery,
    encode_activation,
    encode_error,
    encode_notice,
    encode_query,
    encode_samples,
    parse_answer,
    parse_notification,
    parse_query,
)

ACT = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("action", ["run", "rm", "pause", "resume"])
def test_lifecycle_notices_as_the_original_wrappers_send_them(action):
    notice = parse_notification(json.dumps({"action": action, "container": "abc123"}).encode())
    assert notice == ContainerNotice(Lifecycle(action), "abc123", None)


def test_cgroup_hint_string_and_mapping():
    notice = parse_notification(b'{"action": "run", "container": "c-12", "cgroup": "/process_api/abc/localwhisk/c-12"}\n')
    assert notice.cgroup == (("", "/process_api/abc/localwhisk/c-12"),)
    notice = parse_notification(b'{"action": "run", "container": "c-1", "cgroup": {"memory": "/a/c-1", "cpuacct": "/c-1"}}')
    assert dict(notice.cgroup) == {"memory": "/a/c-1", "cpuacct": "/c-1"}
    for notice in (ContainerNotice(Lifecycle.RUN, "c", (("", "/x/c"),)),
                   ContainerNotice(Lifecycle.RUN, "c", (("cpuacct", "/c"), ("memory", "/m/c")))):
        assert parse_notification(encode_notice(notice)) == notice


def test_activation_notices_round_trip():
    for boundary in Boundary:
        notice = ActivationNotice(boundary, "c-3", ACT, 1700000000.25)
        assert parse_notification(encode_notice(notice)) == notice


@pytest.mark.parametrize("raw, message", [
    (b"", "empty message"),
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'{"action": "explode", "container": "c"}', "'action' must be one of run, rm, pause, resume"),
    (b'{"action": "run"}', "'container' must be a string, got null"),
    (b'{"action": "run", "container": "a/b"}', "'container' is not a valid container id"),
    (b'{"action": "run", "container": "c", "cgroup": "relative"}', "'cgroup' must be an absolute path"),
    (b'{"action": "run", "container": "c", "extra": 1}', "unknown key(s) 'extra'"),
    (b'{"action": "activation_start", "container": "c", "activation": "xyz", "date": 1}',
     "'activation' is not a valid activation id"),
    (b'{"action": "activation_end", "container": "c", "activation": "' + ACT.encode() + b'", "date": "now"}',
     "'date' must be a number (epoch seconds), got \"now\""),
    (b"\xff\xfe", "not valid JSON"),
])
def test_bad_notifications_say_what_is_wrong(raw, message):
    with pytest.raises(ProtocolError) as info:
        parse_notification(raw)
    assert message in str(info.value)
    assert info.value.code is ErrorCode.BAD_REQUEST


def test_queries_round_trip_and_errors():
    assert parse_query(b'{"container": "c", "start": 1.5, "end": 2}\n') == WindowQuery("c", 1.5, 2.0)
    query = ActivationQuery(ACT, "guest", "hello", 1000, 2000, "python:3.11")
    assert parse_query(encode_query(query)) == query
    assert parse_query(encode_query(ActivationQuery(ACT))) == ActivationQuery(ACT)
    with pytest.raises(ProtocolError, match=r"'end' \(1.0\) is before 'start' \(2.0\)"):
        parse_query(b'{"container": "c", "start": 2, "end": 1}')
    with pytest.raises(ProtocolError, match="a query needs 'activation', or 'container'"):
        parse_query(b'{"foo": 1}')
    with pytest.raises(ProtocolError, match="'start_ms' must be an integer"):
        parse_query(b'{"activation": "' + ACT.encode() + b'", "start_ms": "x"}')


def test_answers_round_trip():
    samples = Samples.of((Sample(1.0, 100, 0, 50), Sample(1.01, None, 10, None)))
    assert parse_answer(encode_samples(samples)) == samples
    assert json.loads(encode_samples(samples))[0] == {"date": 1.0, "memory": 100, "cpu": 0, "rss_mapped": 50}
    answer = ActivationAnswer(ACT, "c", 1.0, 2.0, samples)
    assert parse_answer(encode_activation(answer)) == answer
    assert parse_answer(encode_error(ErrorCode.AMBIGUOUS, "two")) == ErrorAnswer(ErrorCode.AMBIGUOUS, "two")
    with pytest.raises(ProtocolError, match="unknown error code"):
        parse_answer(b'{"error": "x", "code": "weird"}')
    with pytest.raises(ProtocolError, match="sample 'memory' must be an integer or null"):
        parse_answer(b'[{"date": 1, "memory": 1.5, "cpu": 0, "rss_mapped": null}]')

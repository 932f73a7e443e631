"""The injection trace reader: exact offsets, parameters, streaming, every problem with file:line."""

import tracemalloc

import pytest

from loader.injection.traces import (
    FileTraceSource,
    TraceError,
    list_traces,
    parse_line,
    parse_name,
    parse_wait_us,
    scan_trace,
)


def _trace(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def _all(source):
    out = []
    while (inv := source.next_invocation()) is not None:
        out.append(inv)
    return out


def test_name_gives_user_action_and_metadata(tmp_path):
    name = parse_name(tmp_path / "alice-resize-256-1200-30")
    assert (name.user, name.action, name.metadata) == ("alice", "resize", ("256", "1200", "30"))
    with pytest.raises(TraceError, match="file name is not USER-ACTION"):
        parse_name(tmp_path / "nodash")


@pytest.mark.parametrize("text,expected", [("0", 0), ("1", 1_000_000), ("0.25", 250_000), (".5", 500_000),
                                           ("2.", 2_000_000), ("0.0000015", 2), ("0.0000025", 2),
                                           ("123456.000001", 123_456_000_001)])
def test_wait_is_converted_exactly_to_microseconds(text, expected):
    assert parse_wait_us(text) == expected


def test_fractional_waits_accumulate_without_drift(tmp_path):
    # 0.1 s ten thousand times: exactly 1000 s, where summed floats would drift.
    path = _trace(tmp_path, "u-a", "".join("0.1\tin.jpg\n" for _ in range(10_000)))
    invocations = _all(FileTraceSource(path, incont="i", outcont="o"))
    assert len(invocations) == 10_000
    assert invocations[-1].planned_offset_us == 1_000_000_000
    assert [inv.seq for inv in invocations[:3]] == [0, 1, 2]


def test_parameters_split_at_first_colon_and_storage_parameters_added(tmp_path):
    path = _trace(tmp_path, "bob-blur-128", "1.5\tdir/sub/3.jpg\tsigma:2.5\turl:http://x:80/y\tempty:\n")
    (inv,) = _all(FileTraceSource(path, incont="inputs", outcont="outputs"))
    assert (inv.user, inv.action, inv.trace_name, inv.input_object) == ("bob", "blur", "bob-blur-128", "dir/sub/3.jpg")
    assert inv.planned_offset_us == 1_500_000
    assert inv.parameters == (("incont", "inputs"), ("object", "3.jpg"), ("outcont", "outputs"),
                              ("sigma", "2.5"), ("url", "http://x:80/y"), ("empty", ""))


def test_blank_comment_and_crlf_lines(tmp_path):
    path = _trace(tmp_path, "u-a", "# header\n\n0.5\ta.jpg\r\n  \n1\tb.jpg\tk:v\r\n")
    invocations = _all(FileTraceSource(path, incont="i", outcont="o"))
    assert [(i.planned_offset_us, i.input_object) for i in invocations] == [(500_000, "a.jpg"), (1_500_000, "b.jpg")]
    assert invocations[1].parameters[-1] == ("k", "v")


@pytest.mark.parametrize("line,message", [
    ("-1\ta.jpg", "WAIT '-1' is not a non-negative number of seconds"),
    ("abc\ta.jpg", "WAIT 'abc' is not a non-negative number of seconds"),
    ("1 a.jpg k:v", "expected WAIT<TAB>INPUT"),
    ("1\t", "INPUT (second field) is empty"),
    ("1\ta.jpg\tnocolon", "field 3 'nocolon' is not PARAM:VALUE"),
    ("1\ta.jpg\t:v", "field 3 ':v' is not PARAM:VALUE"),
    ("1\ta.jpg\tobject:x", "parameter 'object' is set by the loader"),
    ("1\ta.jpg\tk:1\tk:2", "parameter 'k' given twice"),
])
def test_malformed_lines_are_explained(line, message):
    with pytest.raises(ValueError) as info:
        parse_line(line)
    assert message in str(info.value)


def test_scan_reports_every_problem_with_file_and_line(tmp_path):
    path = _trace(tmp_path, "u-a", "1\ta.jpg\nbad\n2\tb.jpg\n3\tc.jpg\tx\n")
    scan = scan_trace(path)
    assert scan.invocations == 2 and scan.last_offset_us == 3_000_000
    assert [str(p) for p in scan.problems] == [
        f"{path}:2: expected WAIT<TAB>INPUT[<TAB>PARAM:VALUE]... (fields are separated by tabs)",
        f"{path}:4: field 3 'x' is not PARAM:VALUE"]


def test_invalid_utf8_is_reported(tmp_path):
    path = tmp_path / "u-a"
    path.write_bytes(b"1\ta.jpg\n1\t\xff.jpg\n")
    assert [str(p) for p in scan_trace(path).problems] == [f"{path}:2: not valid UTF-8"]


def test_source_raises_file_line_when_file_changed_after_check(tmp_path):
    path = _trace(tmp_path, "u-a", "1\ta.jpg\nzzz\ta.jpg\n")
    source = FileTraceSource(path, incont="i", outcont="o")
    assert source.next_invocation().seq == 0
    with pytest.raises(TraceError, match=rf"{path}:2: WAIT 'zzz'"):
        source.next_invocation()
    assert source.next_invocation() is None


def test_list_traces_skips_hidden_and_reports_bad_names(tmp_path):
    _trace(tmp_path, "b-x", "")
    _trace(tmp_path, "a-y-1", "")
    _trace(tmp_path, ".hidden", "")
    _trace(tmp_path, "readme", "")
    (tmp_path / "sub-dir").mkdir()
    paths, problems = list_traces(tmp_path)
    assert [p.name for p in paths] == ["a-y-1", "b-x"]
    assert sorted(str(p) for p in problems) == [
        f"{tmp_path / 'readme'}: file name is not USER-ACTION[-...] (user and action separated by '-')",
        f"{tmp_path / 'sub-dir'}: not a regular file (a trace directory holds only trace files)"]


def test_reading_streams_and_holds_no_file_open(tmp_path):
    path = _trace(tmp_path, "u-a", "".join(f"0.001\t{n}.jpg\tp:{'x' * 50}\n" for n in range(100_000)))
    source = FileTraceSource(path, incont="i", outcont="o")
    source.next_invocation()
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    for _ in range(50_000):
        source.next_invocation()
    grown = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()
    assert grown < 200_000, f"memory grew by {grown} bytes while reading 50,000 lines"
    import os
    assert not [fd for fd in os.listdir("/proc/self/fd") if os.path.realpath(f"/proc/self/fd/{fd}") == str(path)]

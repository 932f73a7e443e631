"""The injection trace reader: exact offsets, parameters, streaming, every problem with file:line."""

import os
import tracemalloc

import pytest

from loader.injection.traces import (
    FileTraceSource,
    TraceError,
    list_traces,
    parse_line,
    parse_name,
    parse_wait_us,
    read_ahead_bytes,
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
                                           ("123456.000001", 123_456_000_001), ("007.000100", 7_000_100),
                                           ("0.9999995", 1_000_000), ("31622400", 31_622_400_000_000)])
def test_wait_is_converted_exactly_to_microseconds(text, expected):
    assert parse_wait_us(text) == expected


@pytest.mark.parametrize("text", [".", "", "1.2.3", "+1", "-1", "1e3", "\u0661", "1.\u0661", "1 .5", "31622400.000001"])
def test_a_wait_that_is_not_a_plain_number_of_seconds_is_refused(text):
    with pytest.raises(ValueError, match="WAIT"):
        parse_wait_us(text)


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


def test_source_reports_a_file_replaced_deleted_or_truncated_since_the_check(tmp_path):
    """Issue 16 items 1-2: the line that could not be read, and how many planned invocations are lost."""
    text = "".join(f"1\t{n}.jpg\n" for n in range(5))

    def checked(name):
        path = _trace(tmp_path, name, text)
        return path, FileTraceSource.of_scan(scan_trace(path), incont="i", outcont="o")

    path, source = checked("u-replaced")
    assert source.next_invocation().seq == 0
    path.rename(tmp_path / "elsewhere")
    path.write_text(text)
    with pytest.raises(TraceError, match=rf"^{path}:2: the file was replaced since it was checked$") as caught:
        source.next_invocation()
    assert caught.value.lost == 4 and caught.value.report()["line"] == 2
    assert source.next_invocation() is None

    path, source = checked("u-deleted")
    path.unlink()
    with pytest.raises(TraceError, match=rf"^{path}:1: cannot read any further: No such file") as caught:
        source.next_invocation()
    assert caught.value.lost == 5

    path, source = checked("u-shortened")
    for _ in range(3):
        source.next_invocation()
    os.truncate(path, 6)
    with pytest.raises(TraceError, match=rf"^{path}:4: the file is shorter \(6 bytes\) than the 24 bytes") as caught:
        source.next_invocation()
    assert caught.value.lost == 2

    path, source = checked("u-cut")
    os.truncate(path, 16)
    assert [source.next_invocation().seq for _ in range(2)] == [0, 1]
    with pytest.raises(TraceError, match=rf"^{path}:3: the file ended after 2 of the 5 invocations") as caught:
        source.next_invocation()
    assert caught.value.lost == 3


def test_read_ahead_still_notices_a_change_at_the_next_line(tmp_path):
    """Issue 17 item 2: lines are read in chunks (one open per chunk, none held between reads), and a
    change since the check is still noticed at the line that follows it, read ahead or not."""
    lines = [f"0.5\t{n}.jpg\tk:{'v' * (n % 7)}\n" for n in range(300)]
    size_of = [len("".join(lines[:n]).encode()) for n in range(301)]

    def checked(name):
        path = _trace(tmp_path, name, "".join(lines))
        source = FileTraceSource.of_scan(scan_trace(path), incont="i", outcont="o", read_ahead_bytes=1024)
        first = source.next_invocation()
        assert (first.seq, first.planned_offset_us, first.parameters[-1]) == (0, 500_000, ("k", ""))
        assert 1 < len(source._buffer.split(b"\n")) - 1 < 300   # read ahead: more than one line, not all
        return path, source

    path, source = checked("u-replaced")
    path.rename(tmp_path / "elsewhere")
    path.write_text("".join(lines))
    with pytest.raises(TraceError, match=rf"^{path}:2: the file was replaced since it was checked$") as caught:
        source.next_invocation()
    assert caught.value.lost == 299

    path, source = checked("u-cut")
    assert [source.next_invocation().seq for _ in range(4)] == [1, 2, 3, 4]
    os.truncate(path, size_of[10] - 3)   # the 10th line, read ahead, is no longer whole in the file
    assert [source.next_invocation().seq for _ in range(4)] == [5, 6, 7, 8]
    with pytest.raises(TraceError, match=rf"^{path}:10: the file ended after 9 of the 300 invocations") as caught:
        source.next_invocation()
    assert caught.value.lost == 291

    path, source = checked("u-deleted")
    path.unlink()
    with pytest.raises(TraceError, match=rf"^{path}:2: cannot read any further: No such file") as caught:
        source.next_invocation()
    assert caught.value.lost == 299


def test_read_ahead_reads_lines_longer_than_the_chunk_and_a_last_line_without_newline(tmp_path):
    long_value = "x" * 5000
    path = _trace(tmp_path, "u-long", f"1\ta.jpg\tk:{long_value}\n\n# comment\n2\tb.jpg")
    for read_ahead in (1, 7, 512, 4096, 65536):
        source = FileTraceSource.of_scan(scan_trace(path), incont="i", outcont="o", read_ahead_bytes=read_ahead)
        got = _all(source)
        assert [(i.seq, i.planned_offset_us, i.input_object) for i in got] == [(0, 1_000_000, "a.jpg"),
                                                                                 (1, 3_000_000, "b.jpg")]
        assert got[0].parameters[-1] == ("k", long_value)


def test_read_ahead_is_shared_out_within_bounds():
    assert read_ahead_bytes(1) == 65536 and read_ahead_bytes(1000) == 4194
    assert read_ahead_bytes(1_000_000) == 512


def test_a_nul_byte_is_refused_at_validation_with_file_and_line(tmp_path):
    """Issue 16 item 3: PostgreSQL text cannot hold NUL; the check says where it is, before anything runs."""
    path = _trace(tmp_path, "u-a", "1\ta.jpg\n1\tb\x00.jpg\n1\tc.jpg\tk:v\x00w\n1\td.jpg\tk\x00:v\n")
    assert [str(p) for p in scan_trace(path).problems] == [
        f"{path}:2: field 2 (INPUT) holds a NUL byte (\\x00), which the database cannot store",
        f"{path}:3: field 3 holds a NUL byte (\\x00), which the database cannot store",
        f"{path}:4: field 3 holds a NUL byte (\\x00), which the database cannot store"]


def test_a_trace_longer_than_the_loader_replays_is_refused_with_file_and_line(tmp_path):
    """Issue 16 item 7: a WAIT of 1e10 s (or waits adding up beyond 366 days) would overflow the sleeps."""
    path = _trace(tmp_path, "u-a", "10000000000\ta.jpg\n1\tb.jpg\n20000000\tc.jpg\n20000000\td.jpg\n")
    assert [str(p) for p in scan_trace(path).problems] == [
        f"{path}:1: WAIT 10000000000 s is beyond the longest trace the loader replays (31622400 s, 366 days)",
        f"{path}:4: the trace reaches 40000001 s after the start, beyond the longest trace the loader replays "
        "(31622400 s, 366 days)"]

"""Attribution of an activation to a container without notices (monitor/attribution.py)."""

from monitor.attribution import Candidate, Verdict, attribute, ran_over

A = "a" * 64
B = "b" * 64
C = "c" * 64


def test_ran_over_needs_one_stretch_containing_the_window():
    stretches = [(10.0, 11.0), (12.0, None)]
    assert ran_over(stretches, 10.2, 10.9, 0.0)
    assert ran_over(stretches, 100.0, 200.0, 0.0)          # still running
    assert not ran_over(stretches, 10.5, 12.5, 0.0)        # paused in between
    assert not ran_over(stretches, 9.999, 10.5, 0.0)
    assert ran_over(stretches, 9.999, 10.5, 0.002)         # millisecond truncation


def test_two_warm_containers_of_one_action_each_get_their_activations():
    warm = [Candidate(A, "wsk0_1_guest_hello", ((10.0, 11.0), (14.0, 15.0))),
            Candidate(B, "wsk0_2_guest_hello", ((12.0, 13.0),))]
    assert attribute(warm, "guest", "hello", 10.1, 10.9).container == A
    assert attribute(warm, "guest", "hello", 12.1, 12.9).container == B
    assert attribute(warm, "guest", "hello", 14.0, 14.5).container == A


def test_ambiguous_when_two_candidates_ran_over_the_window():
    both = [Candidate(A, "wsk0_1_guest_hello", ((10.0, 20.0),)),
            Candidate(B, "wsk0_2_guest_hello", ((11.0, None),))]
    got = attribute(both, "guest", "hello", 12.0, 13.0)
    assert got.verdict is Verdict.AMBIGUOUS and got.container is None
    assert "2 containers that could run guest/hello were running over [12.000, 13.000]" in got.reason
    assert "wsk0_1_guest_hello (aaaaaaaaaaaa)" in got.reason


def test_missing_container_or_window_is_said_so():
    only = [Candidate(A, "wsk0_1_guest_hello", ((10.0, 11.0),)),
            Candidate(B, "wsk0_2_other_hello", ((10.0, 11.0),))]
    got = attribute(only, "guest", "bye", 10.1, 10.2)
    assert got.verdict is Verdict.MISSING
    assert got.reason == "no container named for guest/bye (suffix '_guest_bye') is known to the monitor"
    got = attribute(only, "guest", "hello", 10.5, 11.5)
    assert got.verdict is Verdict.MISSING
    assert "none of the 1 container(s) named for guest/hello ran without pause over [10.500, 11.500]" == got.reason


def test_names_are_matched_after_openwhisk_sanitising():
    named = [Candidate(A, "wsk0_7_whisksystem_myaction", ((0.0, None),))]
    assert attribute(named, "whisk.system", "my-action", 1.0, 2.0).container == A
    assert attribute(named, "whisk.system", "my_action", 1.0, 2.0).verdict is Verdict.MISSING


def test_stem_cells_are_candidates_so_a_warm_container_is_never_wrongly_chosen():
    # the activation ran in a stem cell; a warm container of the same action was also running
    cells = [Candidate(A, "wsk0_1_guest_hello", ((10.0, 20.0),)),
             Candidate(C, "wsk0_3_prewarm_python3", ((0.0, None),))]
    assert attribute(cells, "guest", "hello", 12.0, 13.0).verdict is Verdict.AMBIGUOUS
    # only the stem cell ran over the window: it is the container
    assert attribute(cells, "guest", "hello", 25.0, 26.0).container == C
    # with the runtime kind, stem cells of other kinds are left out
    assert attribute(cells, "guest", "hello", 12.0, 13.0, kind="nodejs:20").container == A
    assert attribute(cells, "guest", "hello", 12.0, 13.0, kind="python:3").verdict is Verdict.AMBIGUOUS

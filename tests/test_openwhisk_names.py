"""OpenWhisk's container naming rule (faasload/openwhisk_names.py), as localwhisk names and the monitor reads."""

import re

import pytest

from faasload import openwhisk_names as names


@pytest.mark.parametrize("raw, expected", [
    ("guest", "guest"),
    ("whisk.system", "whisksystem"),
    ("my-ns_1", "myns_1"),
    ("a b@c", "abc"),
    ("café", "café"),          # Java letters include non-ASCII letters of the BMP
    ("x\U0001d400y", "xy"),    # a supplementary-plane letter is two surrogates: dropped
    ("½", ""),                 # numeric but not a decimal digit
])
def test_sanitize_drops_what_openwhisk_drops(raw, expected):
    assert names.sanitize(raw) == expected


def test_prefix_keeps_dots_and_dashes():
    assert names.container_prefix(0) == "wsk0"
    assert names.container_prefix(0, "owdev-invoker-0") == "wskowdev-invoker-00"
    assert names.container_prefix(3, "inv/x y") == "wskinvxy3"


def test_container_name_and_default_pattern():
    name = names.container_name("wsk0", 12, "whisk.system", "my-action")
    assert name == "wsk0_12_whisksystem_myaction"
    assert re.match(names.DEFAULT_NAME_PATTERN, name)
    assert re.match(names.DEFAULT_NAME_PATTERN, "wskowdev-invoker-00_7_guest_hello")
    for other in ("faasload-demo", "wsk0_guest_hello", "web_1_a_b", "wsk0_x_a_b"):
        assert not re.match(names.DEFAULT_NAME_PATTERN, other), other


def test_matching_by_suffix_never_by_splitting():
    # ns "a_b" + action "c" and ns "a" + action "b_c" give the same name: both match it
    name = names.container_name("wsk0", 1, "a_b", "c")
    assert names.is_container_of(name, "a_b", "c")
    assert names.is_container_of(name, "a", "b_c")
    assert not names.is_container_of(name, "b", "c")
    assert not names.is_container_of(name, "a_b", "xc")
    # the count must stand between the prefix and the suffix
    assert not names.is_container_of("wsk0_guest_hello", "guest", "hello")
    assert names.is_container_of("wsk0_4_guest_my_action", "guest", "my_action")
    assert not names.is_container_of("wsk0_4_guest_my_action", "guest", "action")


def test_stem_cells():
    cell = names.container_name("wsk0", 2, names.PREWARM_NAMESPACE, "nodejs:20")
    assert cell == "wsk0_2_prewarm_nodejs20"
    assert names.is_stem_cell(cell)
    assert names.is_stem_cell(cell, "nodejs:20")
    assert not names.is_stem_cell(cell, "python:3")
    assert not names.is_stem_cell("wsk0_2_guest_prewarmer")
    assert not names.is_stem_cell("wsk0_2_guest_hello")


@pytest.mark.parametrize("namespace, action", [("guest", "hello"), ("whisk.system", "my-action"),
                                                ("user_1", "a_b"), ("ns@x", "act.v2")])
def test_localwhisk_names_containers_as_openwhisk_does(namespace, action):
    from localwhisk.platform import container_name as localwhisk_name
    expected = names.container_name(names.container_prefix(7), 3, namespace, action)
    assert localwhisk_name(7, 3, namespace, action) == expected
    assert names.is_container_of(expected, namespace, action)


#: (namespace, action) pairs as OpenWhisk allows them: ASCII, non-ASCII letters, long names.
INVOKER_NAMES = [
    ("guest", "hello"),
    ("whisk.system", "my-action"),
    ("café", "résumé"),
    ("用户", "动作"),
    ("x\U0001d400y", "a½b"),
    ("a_b", "c"),
    ("n" * 256, "a" * 256),
    ("user-im.age", "re_size-v2"),
]


@pytest.mark.parametrize("namespace, action", INVOKER_NAMES)
@pytest.mark.parametrize("instance", [0, 13])
def test_localwhisk_names_are_recognised_by_the_monitor(instance, namespace, action):
    from localwhisk.platform import container_name
    from monitor.attribution import Candidate, named_for
    from monitor.config import MonitorConfig

    name = container_name(instance, 7, namespace, action)
    assert re.search(MonitorConfig().docker.name_pattern, name), name
    candidate = Candidate(container="c", name=name, intervals=((0.0, None),))
    assert named_for(candidate, namespace, action, None)
    assert not named_for(candidate, namespace + "x", action, None)

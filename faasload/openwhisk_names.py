"""How Apache OpenWhisk's invoker names action containers, and how to recognise them.

From the OpenWhisk sources (``ContainerProxy.containerName`` and
``ContainerFactory.containerNamePrefix``), a container is named::

    {prefix}_{count}_{namespace}_{action}

* ``prefix`` = ``"wsk" + instance.uniqueName.getOrElse("") + instance.toInt``, keeping only
  letters, digits, ``_``, ``.`` and ``-`` (``wsk0``, ``wskowdev-invoker-00``);
* ``count`` = a per-invoker counter;
* ``namespace`` = the namespace of the user who INVOKED the action (the activation record's
  ``namespace``), ``action`` = the action's name without its package (the record's ``name``),
  each keeping only letters, digits and ``_``: other characters are DROPPED, not escaped
  (``whisk.system`` becomes ``whisksystem``).

Since ``_`` may appear inside every part, a name cannot be split back into namespace and
action.  A container is matched to a candidate (namespace, action) by computing the suffix that
pair would produce, :func:`action_suffix`, never by splitting.

Stem cells (prewarmed containers) are named with namespace ``prewarm`` and the runtime kind as
action (``wsk0_3_prewarm_nodejs20``), and keep that name when the invoker later hands them an
action: they are candidates for any action of that kind (:func:`prewarm_suffix`).
"""

from __future__ import annotations

import re

#: Action containers as the invoker names them (``docker:name_pattern`` overrides it).  ``\w`` is
#: Unicode-aware: namespaces and actions keep their non-ASCII letters (``café`` stays ``café``).
DEFAULT_NAME_PATTERN = r"^wsk[\w.\-]*_[0-9]+_\w+_\w+$"
#: The namespace part of a stem cell's name.
PREWARM_NAMESPACE = "prewarm"


def _letter_or_digit(char: str) -> bool:
    """Java's ``Character.isLetterOrDigit`` on one UTF-16 unit: letters and decimal digits of
    the Basic Multilingual Plane (a character beyond it is two surrogates, neither of which is
    a letter)."""
    return ord(char) <= 0xFFFF and (char.isalpha() or char.isdecimal())


def sanitize(part: str) -> str:
    """A namespace or action name as it appears in a container name."""
    return "".join(c for c in part if _letter_or_digit(c) or c == "_")


def container_prefix(instance: int, unique_name: str = "") -> str:
    """The invoker's prefix (``ContainerFactory.containerNamePrefix``)."""
    return "".join(c for c in f"wsk{unique_name}{instance}" if _letter_or_digit(c) or c in "_.-")


def container_name(prefix: str, count: int, namespace: str, action: str) -> str:
    """The name the invoker gives the ``count``-th container it creates."""
    return f"{prefix}_{count}_{sanitize(namespace)}_{sanitize(action)}"


def action_suffix(namespace: str, action: str) -> str:
    """How the name of a container of (namespace, action) ends."""
    return f"_{sanitize(namespace)}_{sanitize(action)}"


def prewarm_suffix(kind: str) -> str:
    """How the name of a stem cell of runtime ``kind`` (``nodejs:20``) ends."""
    return action_suffix(PREWARM_NAMESPACE, kind)


_HEAD = re.compile(r"\Awsk[\w.\-]*_[0-9]+\Z")


def _ends_with(name: str, suffix: str) -> bool:
    return name.endswith(suffix) and _HEAD.match(name[: -len(suffix)]) is not None


def is_container_of(name: str, namespace: str, action: str) -> bool:
    """Whether ``name`` is a name the invoker gives containers of (namespace, action)."""
    return _ends_with(name, action_suffix(namespace, action))


def is_stem_cell(name: str, kind: str | None = None) -> bool:
    """Whether ``name`` is a stem cell's (of runtime ``kind``, or of any kind when None)."""
    if kind is not None:
        return _ends_with(name, prewarm_suffix(kind))
    marker = f"_{PREWARM_NAMESPACE}_"
    head, found, tail = name.rpartition(marker)
    while found:
        if tail and _HEAD.match(head) and sanitize(tail) == tail:
            return True
        head, found, tail = head.rpartition(marker)
    return False

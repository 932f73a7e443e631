"""Generator mode's fake traces: one reproducible random stream per function.

For one function, the trace invokes it on inputs ``1..length`` (``N.jpg``/``N.wav``/
``N.avi`` after its input kind), with parameters drawn from its specs.  The stream is
``random.Random`` seeded with SHA-256 of (seed, function name), never Python's salted
``hash()``, and it is read only through ``getrandbits`` with the algorithms below, so
the values do not depend on the Python version nor on the other functions.

A :class:`GeneratedTrace` is a :class:`loader.plan.TraceSource`.  It also tracks which
of its invocations are durably recorded (:meth:`GeneratedTrace.confirm`): its
*position* is the count of its first invocations all recorded, and it keeps the random
state before every drawn invocation not yet recorded, so a checkpoint can hold the
state at the position.
"""

from __future__ import annotations

import hashlib
import random
import struct

from loader.generation import checkpoint as genstate
from loader.manifest import ParameterSpec, SpecKind
from loader.plan import PlannedInvocation
from loader.storage.rows import FunctionRow

EXTENSIONS = {"image": "jpg", "audio": "wav", "video": "avi"}
_TWO_POW_53 = 9007199254740992.0


def stream_seed(seed: int, function: str) -> int:
    """The seed of one function's stream: SHA-256 of (seed, name)."""
    digest = hashlib.sha256(f"faasload-generation\0{seed}\0{function}".encode()).digest()
    return int.from_bytes(digest, "big")


def new_stream(seed: int, function: str) -> random.Random:
    return random.Random(stream_seed(seed, function))


def below(rng: random.Random, count: int) -> int:
    """Uniform integer in [0, count) by rejection on ``getrandbits``."""
    bits = count.bit_length()
    while True:
        value = rng.getrandbits(bits)
        if value < count:
            return value


def draw(rng: random.Random, spec: ParameterSpec):
    """One value of ``spec``: an int in [min, max], a float in [min, max), or one of the ensemble's values."""
    if spec.kind is SpecKind.RANGE_INT:
        low, high = spec.values
        return low + below(rng, high - low + 1)
    if spec.kind is SpecKind.RANGE_FLOAT:
        low, high = spec.values
        return low + (high - low) * (rng.getrandbits(53) / _TWO_POW_53)
    return spec.values[below(rng, len(spec.values))]


def as_text(value) -> str:
    """A drawn value as sent and stored (``parameters.value`` is text); floats round-trip exactly."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def rng_to_json(rng: random.Random) -> list:
    """``[version, hex of the 625 state words (little-endian uint32), gauss_next]``."""
    version, internal, gauss_next = rng.getstate()
    return [version, struct.pack(f"<{len(internal)}I", *internal).hex(), gauss_next]


def rng_from_json(state: list) -> random.Random:
    raw = bytes.fromhex(state[1])
    rng = random.Random()
    rng.setstate((state[0], struct.unpack(f"<{len(raw) // 4}I", raw), state[2]))
    return rng


class GeneratedTrace:
    """One function's fake trace, resumable at ``position`` with the random state there.

    Planned offsets count from this session's start: the first invocation it emits is
    due at once, the next ``interval_us`` later, and so on.  Sequence numbers given to
    :meth:`skip` (recorded after the checkpoint) are drawn but not emitted.
    """

    def __init__(self, function: FunctionRow, specs: tuple[ParameterSpec, ...], *, length: int, interval_us: int,
                 incont: str, outcont: str, rng: random.Random, position: int = 0):
        self.function = function
        self.name = function.name
        self.user = f"user-{function.name}"
        self.action = function.name if not function.package else f"{function.package}/{function.name}"
        self.specs = specs
        self.length = length
        self.interval_us = interval_us
        self.incont, self.outcont = incont, outcont
        self.extension = EXTENSIONS[function.input_kind]
        self.position = position              # first invocation not known to be recorded
        self._rng = rng
        self._next_seq = position              # next invocation to draw
        self._emitted = 0
        self._done: set[int] = set()           # recorded, at or beyond the position
        self._states: dict[int, list] = {}     # seq -> random state before drawing it (seq >= position)

    @property
    def emitted(self) -> int:
        return self._emitted

    @property
    def remaining(self) -> int:
        """Invocations still to send: not recorded at the position, nor recorded (skipped) beyond it."""
        return self.length - self.position - len(self._done)

    def parameters_of(self, seq: int, rng: random.Random) -> tuple[tuple[str, str], ...]:
        """Storage parameters, then one drawn value per spec, in spec order (advances ``rng``)."""
        drawn = tuple((spec.name, as_text(draw(rng, spec))) for spec in self.specs)
        return (("incont", self.incont), ("object", f"{seq + 1}.{self.extension}"), ("outcont", self.outcont)) + drawn

    def skip(self, seqs) -> None:
        """Invocations already recorded: not emitted again."""
        self._done |= {s for s in seqs if s >= self._next_seq}
        self._advance()

    def next_invocation(self) -> PlannedInvocation | None:
        while self._next_seq < self.length:
            seq = self._next_seq
            recorded = seq < self.position or seq in self._done
            if not recorded:
                self._states[seq] = rng_to_json(self._rng)
            parameters = self.parameters_of(seq, self._rng)
            self._next_seq += 1
            if recorded:
                continue
            offset_us = self._emitted * self.interval_us
            self._emitted += 1
            return PlannedInvocation(trace_name=self.name, seq=seq, user=self.user, action=self.action,
                                     planned_offset_us=offset_us, input_object=parameters[1][1],
                                     parameters=parameters)
        return None

    def confirm(self, seq: int) -> None:
        """Invocation ``seq`` is durably recorded with a final status."""
        if seq >= self.position:
            self._done.add(seq)
            self._advance()

    def _advance(self) -> None:
        while self.position < self.length and self.position in self._done:
            self._done.discard(self.position)
            self._states.pop(self.position, None)
            self.position += 1

    def state(self) -> genstate.TraceState:
        """Position and the random state there, for a checkpoint."""
        if self.position in self._states:
            rng_state = self._states[self.position]
        elif self.position == self._next_seq:
            rng_state = rng_to_json(self._rng)
        else:  # skipped beyond what was drawn: replay the draws on a copy
            rng = rng_from_json(rng_to_json(self._rng))
            for seq in range(self._next_seq, self.position):
                self.parameters_of(seq, rng)
            rng_state = rng_to_json(rng)
        return genstate.TraceState(self.name, self.position, rng_state, self.length)

"""Generation checkpoints: ``*.genstate`` files in ``generation:statedir`` (docs/generator.md).

A checkpoint is a JSON document: the generation's identity (experiment name, seed,
inputs per kind, a fingerprint of the functions and storage parameters) and, for
every trace, its *position* (how many of its first invocations are durably recorded
with a final status) and the state of its random generator at that position.  Files
are written atomically (temporary file, fsync, rename, fsync of the directory) and
numbered; the newest (highest number) is the one resumed; older ones are pruned.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

FORMAT_VERSION = 1
SUFFIX = ".genstate"
_NAME = re.compile(r"gen-(\d{8,})\.genstate")
#: Checkpoints kept in the state directory (the newest and a few before it).
KEEP = 5


class GenStateError(RuntimeError):
    """A checkpoint cannot be read or does not match this generation; the message names the file."""


@dataclass(frozen=True, slots=True)
class TraceState:
    """One function's trace: invocations ``0 .. position-1`` are durably recorded."""

    function: str
    position: int
    rng_state: list          # random.Random.getstate(): [version, hex of 625 uint32 (little-endian), gauss_next]
    length: int              # invocations in the trace (nbinputs of its kind)


@dataclass(frozen=True, slots=True)
class GenerationState:
    experiment: str
    seed: int
    nbinputs: dict
    fingerprint: str         # functions (names, kinds, specs, actions) and storage parameters
    interinvocationtime_s: float
    traces: tuple[TraceState, ...]
    reason: str              # start, periodic, end, sigterm, sigint, stop
    written_at_epoch_s: float
    number: int = 0          # position in the sequence of checkpoints of this state directory
    format_version: int = FORMAT_VERSION

    @property
    def complete(self) -> bool:
        return all(t.position >= t.length for t in self.traces)

    @property
    def recorded(self) -> int:
        return sum(t.position for t in self.traces)

    def to_json(self) -> str:
        document = asdict(self)
        document["traces"] = [asdict(t) for t in self.traces]
        document["complete"] = self.complete
        return json.dumps(document, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, source: str) -> GenerationState:
        try:
            document = json.loads(text)
            if document.get("format_version") != FORMAT_VERSION:
                raise GenStateError(f"{source}: format_version {document.get('format_version')!r} "
                                    f"is not {FORMAT_VERSION}")
            document.pop("complete", None)
            traces = tuple(TraceState(**t) for t in document.pop("traces"))
            return cls(traces=traces, **document)
        except GenStateError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise GenStateError(f"{source}: not a valid checkpoint: {type(exc).__name__}: {exc}") from None


def _numbered(statedir: Path) -> list[tuple[int, Path]]:
    if not statedir.is_dir():
        return []
    found = []
    for path in statedir.iterdir():
        match = _NAME.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def newest(statedir: Path) -> GenerationState | None:
    """The newest checkpoint of ``statedir``, or None when there is none."""
    found = _numbered(Path(statedir))
    if not found:
        return None
    number, path = found[-1]
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GenStateError(f"{path}: cannot read: {exc.strerror or exc}") from None
    state = GenerationState.from_json(text, str(path))
    if state.number != number:
        raise GenStateError(f"{path}: holds checkpoint number {state.number}, its name says {number}")
    return state


def write(statedir: Path, state: GenerationState) -> Path:
    """Write ``state`` atomically as the next numbered checkpoint; return its path (``state.number`` is ignored)."""
    statedir = Path(statedir)
    statedir.mkdir(parents=True, exist_ok=True)
    existing = _numbered(statedir)
    number = existing[-1][0] + 1 if existing else 1
    state = GenerationState(**{**{f: getattr(state, f) for f in state.__dataclass_fields__}, "number": number})
    path = statedir / f"gen-{number:08d}{SUFFIX}"
    tmp = statedir / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as stream:
        stream.write(state.to_json())
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(tmp, path)
    fd = os.open(statedir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for _, old in existing[:max(0, len(existing) + 1 - KEEP)]:
        try:
            old.unlink()
        except OSError:
            pass
    return path

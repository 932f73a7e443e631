"""Whether a run reproduced its trace: fidelity figures, thresholds, and the verdict.

:class:`Fidelity` holds what the verdict looks at: the share of planned invocations that
were issued, the lateness p99 and maximum, and the shares of planned invocations that
were throttled, failed or lost.  :func:`judge` compares it with :class:`Thresholds`
(``injection:fail_on`` in the configuration, docs/configuration.md); every threshold
breached is named.  The loader stores the verdict in ``experiments.summary`` and exits
with ``faasload.cli.EXIT_BREACHED`` (3) when one is breached; ``loader.report`` shows it first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from loader.config import FailOnConfig
from loader.storage.rows import RunStatus

#: Statuses counted in the error share: the activation failed, or its invoke did (429 and lost
#: have their own shares).
ERROR_STATUSES = tuple(s.value for s in RunStatus if s.error and s not in (RunStatus.THROTTLED, RunStatus.LOST))


@dataclass(frozen=True)
class Fidelity:
    """How faithfully the trace was replayed; shares are of the planned invocations."""

    planned: int
    issued: int
    lateness_p99_ms: float | None
    lateness_max_ms: float | None
    throttled: int
    errors: int
    lost: int

    @property
    def issued_share(self) -> float | None:
        return self.issued / self.planned if self.planned else None

    def share(self, count: int) -> float | None:
        return count / self.planned if self.planned else None

    @property
    def throttled_share(self) -> float | None:
        return self.share(self.throttled)

    @property
    def error_share(self) -> float | None:
        return self.share(self.errors)

    @property
    def lost_share(self) -> float | None:
        return self.share(self.lost)

    def as_dict(self) -> dict:
        return {**asdict(self), "issued_share": _round(self.issued_share), "throttled_share": _round(self.throttled_share),
                "error_share": _round(self.error_share), "lost_share": _round(self.lost_share)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def fidelity_from_summary(summary: dict) -> Fidelity:
    """Fidelity from the loader's end-of-run summary (:mod:`loader.storage.summary`)."""
    lateness = summary.get("lateness_ms") or {}
    planned = summary.get("planned")
    statuses = summary.get("statuses") or {}
    return fidelity_from_counts(planned=sum(statuses.values()) if planned is None else planned,
                                issued=summary.get("issued", 0), statuses=statuses,
                                lateness_p99_ms=lateness.get("p99"), lateness_max_ms=lateness.get("max"))


def fidelity_from_counts(*, planned: int, issued: int, statuses: dict[str, int], lateness_p99_ms: float | None,
                         lateness_max_ms: float | None) -> Fidelity:
    """Fidelity from status counts (``status -> runs``) and lateness figures."""
    return Fidelity(planned=planned, issued=issued, lateness_p99_ms=lateness_p99_ms, lateness_max_ms=lateness_max_ms,
                    throttled=statuses.get("throttled", 0), errors=sum(statuses.get(s, 0) for s in ERROR_STATUSES),
                    lost=statuses.get("lost", 0))


@dataclass(frozen=True)
class Thresholds:
    """Limits a faithful run stays within (None: not checked)."""

    issued_share: float | None = None        # at least
    lateness_p99_ms: float | None = None     # at most
    lateness_max_ms: float | None = None     # at most
    throttled_share: float | None = None     # at most
    error_share: float | None = None         # at most
    lost_share: float | None = None          # at most

    @classmethod
    def of_config(cls, section: FailOnConfig) -> Thresholds:
        return cls(**{f.name: getattr(section, f.name) for f in fields(cls)})

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Breach:
    key: str
    value: float | None
    threshold: float

    @property
    def text(self) -> str:
        shown = "not measured" if self.value is None else f"{self.value:g}"
        bound = "at least" if self.key == "issued_share" else "at most"
        return f"{self.key} {shown} (fail_on: {bound} {self.threshold:g})"


@dataclass(frozen=True)
class Verdict:
    fidelity: Fidelity
    thresholds: Thresholds
    breaches: tuple[Breach, ...]

    @property
    def reproduced(self) -> bool:
        return not self.breaches

    def as_dict(self) -> dict:
        return {"reproduced": self.reproduced, "fidelity": self.fidelity.as_dict(),
                "thresholds": self.thresholds.as_dict(),
                "breaches": [{"key": b.key, "value": b.value, "threshold": b.threshold, "text": b.text}
                             for b in self.breaches]}

    def text(self) -> str:
        return describe(self.as_dict())


def breached(verdict: dict) -> bool:
    """Whether a verdict (as stored in ``experiments.summary``) names a breached threshold."""
    return bool(verdict.get("thresholds")) and not verdict.get("reproduced")


def describe(verdict: dict) -> str:
    """A verdict (as stored in ``experiments.summary``) in one line."""
    if not verdict.get("thresholds"):
        return "verdict: no thresholds (injection:fail_on) to judge against"
    if verdict.get("reproduced"):
        return "verdict: reproduced the trace within injection:fail_on"
    return "verdict: did NOT reproduce the trace: " + "; ".join(b["text"] for b in verdict.get("breaches", []))


def judge(fidelity: Fidelity, thresholds: Thresholds) -> Verdict:
    """Compare every figure with its threshold.  A share of nothing planned breaches nothing;
    an issued share or a lateness that cannot be measured although invocations were planned
    breaches its threshold (nothing was sent)."""
    measured = {"issued_share": fidelity.issued_share, "lateness_p99_ms": fidelity.lateness_p99_ms,
                "lateness_max_ms": fidelity.lateness_max_ms, "throttled_share": fidelity.throttled_share,
                "error_share": fidelity.error_share, "lost_share": fidelity.lost_share}
    breaches = []
    for key, value in measured.items():
        threshold = getattr(thresholds, key)
        if threshold is None:
            continue
        if value is None:
            breached = fidelity.planned > 0 and key in ("issued_share", "lateness_p99_ms", "lateness_max_ms")
        elif key == "issued_share":
            breached = value < threshold
        else:
            breached = value > threshold
        if breached:
            breaches.append(Breach(key, None if value is None else round(value, 6), threshold))
    return Verdict(fidelity, thresholds, tuple(breaches))

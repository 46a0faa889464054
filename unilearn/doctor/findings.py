"""A doctor's finding: what is wrong (or fine), how bad, and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass, field

ERROR, WARNING, OK = "error", "warning", "ok"


@dataclass(frozen=True)
class Finding:
    """`error` findings mean the data would not reproduce the paper's protocol (exit status 1)."""

    severity: str  # error | warning | ok
    code: str  # stable identifier, e.g. `missing_clips`, `time_normalised_variant`
    message: str  # one sentence naming what differs
    fix: str = ""  # what to do
    details: tuple[str, ...] = field(default_factory=tuple)  # every clip, per-class delta, ...
    headline: str = ""  # the problem in a few words, for the verdict line (default: message)

    @property
    def in_words(self) -> str:
        return self.headline or self.message

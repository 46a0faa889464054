"""`unilearn doctor`: tells a user, before any training, whether their copy of a dataset is the one
the paper used: the split files against the official split statistics (`official.py`), the media
on a sample (`media.py`), a verdict first and a Markdown report (`diagnose.py`; `cli.py` is the command).

A finding (`Finding`): what is wrong (or fine), how bad, and what to do about it; every check
returns a list of them.
"""

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
